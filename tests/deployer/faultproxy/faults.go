package main

import (
	"fmt"
	"net/url"
	"path"
	"strings"
	"sync"
)

// Match selects requests; an empty field matches anything.
type Match struct {
	Method string `json:"method,omitempty"` // e.g. "PATCH" (any case)
	Path   string `json:"path,omitempty"`   // path.Match pattern; a trailing "/**" matches any rest
	Watch  *bool  `json:"watch,omitempty"`  // true: only watches (?watch=1), false: no watches
	DryRun *bool  `json:"dryRun,omitempty"` // true: only ?dryRun=All, false: only real changes
}

// Rule is a fault for the requests it matches.
type Rule struct {
	Match
	// status: answer Status with a Kubernetes Status body, never forwarding.
	// stall: hold the request, answering nothing, until the client leaves or the faults are
	//        replaced (then it is forwarded).
	// latency: wait DelayMs, then forward.
	// silence, cut: forward a watch, then after DelayMs stop sending it anything while keeping
	//        it open (silence), or close its connection without ending the response (cut).
	Action  string `json:"action"`
	Status  int    `json:"status,omitempty"`
	DelayMs int    `json:"delayMs,omitempty"`
	Times   int    `json:"times,omitempty"` // how many requests it applies to; 0: every one
	used    int
}

// Faults is what POST /faults sets, replacing what was in force.
type Faults struct {
	Handshake string   `json:"handshake,omitempty"` // "stall": accept TCP, never answer TLS
	Rules     []*Rule  `json:"rules,omitempty"`     // the first matching rule with uses left wins
	Watches   string   `json:"watches,omitempty"`   // done once to every open watch: silence, cut
	Trigger   *Trigger `json:"trigger,omitempty"`
}

// Trigger fires on the first request it matches, AfterMs after that request's response was
// sent: it sends Signal to PID, then adds Then to the faults in force.
type Trigger struct {
	Match
	AfterMs int    `json:"afterMs,omitempty"`
	Signal  string `json:"signal,omitempty"` // INT, TERM, KILL or CONT
	PID     int    `json:"pid,omitempty"`
	Then    Faults `json:"then"`
}

var statusReasons = map[int]string{
	403: "Forbidden", 404: "NotFound", 409: "Conflict", 410: "Expired", 429: "TooManyRequests",
	500: "InternalError", 502: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
}

func (f *Faults) validate() error {
	if f.Handshake != "" && f.Handshake != "stall" {
		return fmt.Errorf("handshake %q: want \"stall\" or nothing", f.Handshake)
	}
	if f.Watches != "" && f.Watches != "silence" && f.Watches != "cut" {
		return fmt.Errorf("watches %q: want silence, cut or nothing", f.Watches)
	}
	for i, r := range f.Rules {
		switch r.Action {
		case "stall", "latency", "silence", "cut":
		case "status":
			if _, ok := statusReasons[r.Status]; !ok {
				return fmt.Errorf("rule %d: status %d is not one of 403 404 409 410 429 5xx", i, r.Status)
			}
		default:
			return fmt.Errorf("rule %d: unknown action %q", i, r.Action)
		}
	}
	if t := f.Trigger; t != nil {
		if _, ok := signals[t.Signal]; t.Signal != "" && (!ok || t.PID <= 1) {
			return fmt.Errorf("trigger: signal %q to pid %d: want INT, TERM, KILL or CONT and a pid", t.Signal, t.PID)
		}
		return t.Then.validate()
	}
	return nil
}

func isWatch(q url.Values) bool {
	w := q.Get("watch")
	return w == "1" || w == "true"
}

func (m *Match) matches(method, urlPath string, q url.Values) bool {
	if m.Method != "" && !strings.EqualFold(m.Method, method) {
		return false
	}
	if m.Watch != nil && *m.Watch != isWatch(q) {
		return false
	}
	if m.DryRun != nil && *m.DryRun != (q.Get("dryRun") != "") {
		return false
	}
	if m.Path == "" {
		return true
	}
	if prefix, ok := strings.CutSuffix(m.Path, "/**"); ok {
		return urlPath == prefix || strings.HasPrefix(urlPath, prefix+"/")
	}
	ok, err := path.Match(m.Path, urlPath)
	return err == nil && ok
}

func (r *Rule) String() string {
	s := r.Action
	switch r.Action {
	case "status":
		s += fmt.Sprint(" ", r.Status)
	case "latency", "silence", "cut":
		s += fmt.Sprintf(" %dms", r.DelayMs)
	}
	return s
}

// state is the faults in force. Its methods that take no network part are what the unit test
// checks.
type state struct {
	mu        sync.Mutex
	handshake string
	rules     []*Rule
	trigger   *Trigger
	release   chan struct{} // closed when the faults are replaced: stalled requests go on
}

func newState() *state { return &state{release: make(chan struct{})} }

// replace puts f in force instead of everything before it.
func (s *state) replace(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.release)
	s.release = make(chan struct{})
	s.handshake, s.rules, s.trigger = "", nil, nil
	s.addLocked(f)
}

// add puts f in force beside what already is (a trigger's Then).
func (s *state) add(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addLocked(f)
}

func (s *state) addLocked(f Faults) {
	if f.Handshake != "" {
		s.handshake = f.Handshake
	}
	for _, r := range f.Rules {
		copied := *r
		copied.used = 0
		s.rules = append(s.rules, &copied)
	}
	if f.Trigger != nil {
		s.trigger = f.Trigger
	}
}

// pick returns the rule for a request (nil: forward it), counting the use.
func (s *state) pick(method, urlPath string, q url.Values) *Rule {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rules {
		if (r.Times == 0 || r.used < r.Times) && r.matches(method, urlPath, q) {
			r.used++
			return r
		}
	}
	return nil
}

// claim returns the trigger when this request fires it; it fires once.
func (s *state) claim(method, urlPath string, q url.Values) *Trigger {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.trigger
	if t == nil || !t.matches(method, urlPath, q) {
		return nil
	}
	s.trigger = nil
	return t
}

func (s *state) handshakeStalled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handshake == "stall"
}

func (s *state) released() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.release
}

func (s *state) snapshot() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Faults{Handshake: s.handshake, Rules: s.rules, Trigger: s.trigger}
}
