package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func query(raw string) url.Values {
	q, err := url.ParseQuery(raw)
	if err != nil {
		panic(err)
	}
	return q
}

func yes() *bool { b := true; return &b }
func no() *bool  { b := false; return &b }

const apply = "/apis/apps/v1/namespaces/ft/deployments/go-app"

func TestMatch(t *testing.T) {
	cases := []struct {
		name   string
		match  Match
		method string
		path   string
		query  string
		want   bool
	}{
		{"empty matches all", Match{}, "GET", "/api/v1/pods", "", true},
		{"method any case", Match{Method: "patch"}, "PATCH", apply, "", true},
		{"other method", Match{Method: "PATCH"}, "GET", apply, "", false},
		{"glob one segment", Match{Path: "/apis/apps/v1/namespaces/*/deployments/go-app"}, "PATCH", apply, "", true},
		{"glob does not cross /", Match{Path: "/apis/*/deployments/go-app"}, "PATCH", apply, "", false},
		{"other name", Match{Path: "/apis/apps/v1/namespaces/*/deployments/node-app"}, "PATCH", apply, "", false},
		{"prefix", Match{Path: "/apis/apps/v1/namespaces/ft/**"}, "GET", apply, "", true},
		{"prefix itself", Match{Path: "/apis/apps/v1/namespaces/ft/**"}, "GET", "/apis/apps/v1/namespaces/ft", "", true},
		{"prefix is per segment", Match{Path: "/apis/apps/v1/namespaces/f/**"}, "GET", apply, "", false},
		{"watch=1", Match{Watch: yes()}, "GET", "/api/v1/namespaces/ft/pods", "watch=1&labelSelector=a", true},
		{"watch=true", Match{Watch: yes()}, "GET", "/api/v1/namespaces/ft/pods", "watch=true", true},
		{"watch=false is no watch", Match{Watch: yes()}, "GET", "/api/v1/namespaces/ft/pods", "watch=false", false},
		{"list is no watch", Match{Watch: no()}, "GET", "/api/v1/namespaces/ft/pods", "labelSelector=a", true},
		{"a watch is excluded", Match{Watch: no()}, "GET", "/api/v1/namespaces/ft/pods", "watch=1", false},
		{"dry run excluded", Match{Method: "PATCH", DryRun: no()}, "PATCH", apply, "fieldManager=d&dryRun=All", false},
		{"real apply", Match{Method: "PATCH", DryRun: no()}, "PATCH", apply, "fieldManager=d&force=true", true},
		{"only dry runs", Match{DryRun: yes()}, "PATCH", apply, "dryRun=All", true},
	}
	for _, c := range cases {
		if got := c.match.matches(c.method, c.path, query(c.query)); got != c.want {
			t.Errorf("%s: %+v on %s %s?%s = %v, want %v", c.name, c.match, c.method, c.path, c.query, got, c.want)
		}
	}
}

func TestPickCountsTimesAndKeepsOrder(t *testing.T) {
	s := newState()
	s.replace(Faults{Rules: []*Rule{
		{Match: Match{Method: "GET", Watch: yes()}, Action: "status", Status: 410, Times: 2},
		{Match: Match{Method: "GET"}, Action: "latency", DelayMs: 5},
	}})
	watch := query("watch=1")
	for i, want := range []string{"status 410", "status 410", "latency 5ms"} {
		if got := s.pick("GET", "/api/v1/pods", watch); got == nil || got.String() != want {
			t.Fatalf("watch %d: got %v, want %s", i, got, want)
		}
	}
	if got := s.pick("PATCH", apply, nil); got != nil {
		t.Fatalf("PATCH matched %v", got)
	}
	// Replacing the faults starts the counts again.
	s.replace(Faults{Rules: []*Rule{{Action: "stall", Times: 1}}})
	if s.pick("GET", "/", nil) == nil || s.pick("GET", "/", nil) != nil {
		t.Fatal("times 1 must match exactly once")
	}
}

func TestTriggerFiresOnceOnTheRealApply(t *testing.T) {
	s := newState()
	s.replace(Faults{Trigger: &Trigger{Match: Match{Method: "PATCH", Path: apply, DryRun: no()},
		Then: Faults{Rules: []*Rule{{Action: "stall"}}}}})
	if s.claim("PATCH", apply, query("dryRun=All")) != nil {
		t.Fatal("a dry run fired the trigger")
	}
	if s.claim("GET", apply, nil) != nil {
		t.Fatal("a GET fired the trigger")
	}
	tr := s.claim("PATCH", apply, query("fieldManager=x"))
	if tr == nil {
		t.Fatal("the apply did not fire the trigger")
	}
	if s.claim("PATCH", apply, nil) != nil {
		t.Fatal("the trigger fired twice")
	}
	if s.pick("GET", "/", nil) != nil {
		t.Fatal("Then was in force before the trigger fired")
	}
	s.add(tr.Then)
	if r := s.pick("GET", "/", nil); r == nil || r.Action != "stall" {
		t.Fatalf("after firing: %v", r)
	}
}

func TestValidate(t *testing.T) {
	bad := []Faults{
		{Handshake: "slow"},
		{Watches: "drop"},
		{Rules: []*Rule{{Action: "explode"}}},
		{Rules: []*Rule{{Action: "status", Status: 200}}},
		{Trigger: &Trigger{Signal: "HUP", PID: 1234}},
		{Trigger: &Trigger{Signal: "INT"}},
		{Trigger: &Trigger{Then: Faults{Rules: []*Rule{{Action: "status"}}}}},
	}
	for _, f := range bad {
		if f.validate() == nil {
			body, _ := json.Marshal(f)
			t.Errorf("accepted %s", body)
		}
	}
	good := Faults{Handshake: "stall", Watches: "cut", Rules: []*Rule{{Action: "status", Status: 503}},
		Trigger: &Trigger{Signal: "INT", PID: 4321, Then: Faults{Watches: "silence"}}}
	if err := good.validate(); err != nil {
		t.Errorf("rejected: %v", err)
	}
}

// A fake apiserver: GET /watch?watch=1 sends a line every 20 ms; anything else answers "ok".
func fakeUpstream(t *testing.T) *httptest.Server {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isWatch(r.URL.Query()) {
			fmt.Fprintln(w, "ok")
			return
		}
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, "event %d\n", i); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}))
	t.Cleanup(upstream.Close)
	return upstream
}

func startProxy(t *testing.T) (*Proxy, string) {
	upstream, _ := url.Parse(fakeUpstream(t).URL)
	p := newProxy(upstream, http.DefaultTransport)
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)
	return p, front.URL
}

func TestStatusStallAndRelease(t *testing.T) {
	p, base := startProxy(t)
	p.set(Faults{Rules: []*Rule{{Match: Match{Method: "POST"}, Action: "status", Status: 503}, {Action: "stall"}}})
	res, err := http.Post(base+"/x", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 503 || !strings.Contains(string(body), `"reason":"ServiceUnavailable"`) {
		t.Fatalf("got %d %s", res.StatusCode, body)
	}
	done := make(chan string, 1)
	go func() {
		res, err := http.Get(base + "/y")
		if err != nil {
			done <- err.Error()
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		done <- strings.TrimSpace(string(b))
	}()
	select {
	case got := <-done:
		t.Fatalf("a stalled request answered: %s", got)
	case <-time.After(200 * time.Millisecond):
	}
	p.set(Faults{}) // replacing the faults lets it through
	select {
	case got := <-done:
		if got != "ok" {
			t.Fatalf("released request: %s", got)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the stalled request was not released")
	}
}

// Reads watch lines until none comes for quiet; returns how many came and how the stream ended.
func readWatch(t *testing.T, body io.Reader, quiet time.Duration) (int, string) {
	lines := make(chan error)
	go func() {
		scanner := bufio.NewScanner(body)
		for scanner.Scan() {
			lines <- nil
		}
		lines <- fmt.Errorf("ended: %v", scanner.Err())
	}()
	n := 0
	giveUp := time.After(3 * time.Second)
	for {
		select {
		case <-giveUp:
			return n, "still streaming"
		case err := <-lines:
			if err != nil {
				return n, err.Error()
			}
			n++
		case <-time.After(quiet):
			return n, "silent"
		}
	}
}

func TestOpenWatchesSilencedThenCut(t *testing.T) {
	p, base := startProxy(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/watch?watch=1", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	time.AfterFunc(150*time.Millisecond, func() { p.set(Faults{Watches: "silence"}) })
	if n, how := readWatch(t, res.Body, 300*time.Millisecond); n < 3 || how != "silent" {
		t.Fatalf("silenced watch: %d events, then %s", n, how)
	}
	// A watch opened now is not silenced; cutting it ends it without a proper end.
	res2, err := http.Get(base + "/watch?watch=1")
	if err != nil {
		t.Fatal(err)
	}
	defer res2.Body.Close()
	time.AfterFunc(150*time.Millisecond, func() { p.set(Faults{Watches: "cut"}) })
	if n, how := readWatch(t, res2.Body, 2*time.Second); n < 3 || !strings.Contains(how, "unexpected EOF") {
		t.Fatalf("cut watch: %d events, then %s", n, how)
	}
}

func TestTriggerAddsFaultsAfterTheResponse(t *testing.T) {
	p, base := startProxy(t)
	p.set(Faults{Trigger: &Trigger{Match: Match{Method: "PATCH"}, AfterMs: 100,
		Then: Faults{Rules: []*Rule{{Action: "status", Status: 500}}}}})
	patch, _ := http.NewRequest("PATCH", base+"/deployments/go-app", nil)
	res, err := http.DefaultClient.Do(patch)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("the PATCH itself: %v %v", res, err)
	}
	res.Body.Close()
	if res, _ := http.Get(base + "/a"); res.StatusCode != 200 {
		t.Fatalf("before the delay: %d", res.StatusCode)
	}
	time.Sleep(300 * time.Millisecond)
	if res, _ := http.Get(base + "/b"); res.StatusCode != 500 {
		t.Fatalf("after the delay: %d", res.StatusCode)
	}
}
