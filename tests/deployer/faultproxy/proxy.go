package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// CONT resumes a cluster component the test paused (SIGSTOP) before the trigger's request.
var signals = map[string]syscall.Signal{"INT": syscall.SIGINT, "TERM": syscall.SIGTERM, "KILL": syscall.SIGKILL,
	"CONT": syscall.SIGCONT}

// Proxy forwards to the apiserver, doing the faults in force. It asks nothing of its clients:
// every request goes upstream with the proxy's own (admin) credentials, and a client's
// Authorization header is dropped. Only a test's kubeconfig points at it.
type Proxy struct {
	st      *state
	forward *httputil.ReverseProxy

	mu      sync.Mutex
	streams map[*stream]struct{} // open watches
	held    []net.Conn           // connections taken while the handshake stalls
	lines   []string             // the log, for GET /log
}

// stream is one open watch, which a fault can silence or cut.
type stream struct {
	cancel   context.CancelFunc // cuts it: the proxy then aborts the response
	silenced atomic.Bool
	gone     <-chan struct{} // the client left
}

func (s *stream) do(action string) {
	if action == "cut" {
		s.cancel()
	} else {
		s.silenced.Store(true)
	}
}

func newProxy(upstream *url.URL, transport http.RoundTripper) *Proxy {
	p := &Proxy{st: newState(), streams: map[*stream]struct{}{}}
	p.forward = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(upstream)
			r.Out.Header.Del("Authorization")
		},
		Transport:     transport,
		FlushInterval: -1, // watch events go out as they come
		ErrorLog:      log.New(logWriter{p}, "", 0),
	}
	return p
}

type logWriter struct{ p *Proxy }

func (w logWriter) Write(b []byte) (int, error) {
	w.p.logf("%s", strings.TrimSpace(string(b)))
	return len(b), nil
}

func (p *Proxy) logf(format string, args ...any) { p.logAt(time.Now(), format, args...) }

// logAt logs a line stamped with a given time (a request's start).
func (p *Proxy) logAt(t time.Time, format string, args ...any) {
	line := t.UTC().Format("15:04:05.000 ") + fmt.Sprintf(format, args...)
	p.mu.Lock()
	p.lines = append(p.lines, line)
	p.mu.Unlock()
	fmt.Fprintln(os.Stderr, line)
}

// set replaces the faults in force (POST /faults).
func (p *Proxy) set(f Faults) {
	p.st.replace(f)
	p.applyNow(f)
}

// applyNow does what a Faults does at once: release held connections, act on open watches.
func (p *Proxy) applyNow(f Faults) {
	stalled := p.st.handshakeStalled()
	p.mu.Lock()
	if !stalled {
		for _, c := range p.held {
			c.Close()
		}
		p.held = nil
	}
	if f.Watches != "" {
		for s := range p.streams {
			s.do(f.Watches)
		}
	}
	open := len(p.streams)
	p.mu.Unlock()
	if f.Watches != "" {
		p.logf("%s: %d open watches", f.Watches, open)
	}
}

// stallListener holds each TCP connection it accepts while the handshake stalls: the client
// connects and sends its TLS hello, and never hears back.
type stallListener struct {
	net.Listener
	p *Proxy
}

func (l stallListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || !l.p.st.handshakeStalled() {
			return c, err
		}
		l.p.logf("handshake stalled for %s", c.RemoteAddr())
		l.p.mu.Lock()
		l.p.held = append(l.p.held, c)
		l.p.mu.Unlock()
	}
}

// recorder remembers the status written.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Flush() { _ = http.NewResponseController(r.ResponseWriter).Flush() }

// streamWriter passes a watch through until it is silenced; then it blocks until the client
// leaves, so nothing more reaches it and the response never ends.
type streamWriter struct {
	*recorder
	s *stream
}

func (w streamWriter) Write(b []byte) (int, error) {
	if w.s.silenced.Load() {
		<-w.s.gone
		return 0, errors.New("silenced watch: the client left")
	}
	return w.recorder.Write(b)
}

func (w streamWriter) Flush() {
	if !w.s.silenced.Load() {
		w.recorder.Flush()
	}
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	q := r.URL.Query()
	rule := p.st.pick(r.Method, r.URL.Path, q)
	trigger := p.st.claim(r.Method, r.URL.Path, q)
	rec := &recorder{ResponseWriter: w}
	fault := ""
	if rule != nil {
		fault = " [" + rule.String() + "]"
	}
	client := ""
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		client = " cert:" + r.TLS.PeerCertificates[0].Subject.CommonName
	}
	defer func() {
		p.logAt(start, "%s %s %d %dms%s%s", r.Method, r.URL.RequestURI(), rec.status,
			time.Since(start).Milliseconds(), fault, client)
	}()
	action := ""
	if rule != nil {
		action = rule.Action
	}
	switch action {
	case "status":
		writeStatus(rec, rule.Status)
	case "stall":
		select {
		case <-r.Context().Done():
			return
		case <-p.st.released():
			p.serve(rec, r, nil)
		}
	case "latency":
		select {
		case <-r.Context().Done():
			return
		case <-time.After(time.Duration(rule.DelayMs) * time.Millisecond):
			p.serve(rec, r, nil)
		}
	default: // forward; silence and cut act on the forwarded watch
		p.serve(rec, r, rule)
	}
	if trigger != nil {
		rec.Flush() // the response is out before the trigger's clock starts
		p.logf("trigger: %s %s answered %d; firing in %dms", r.Method, r.URL.Path, rec.status, trigger.AfterMs)
		go p.fire(trigger)
	}
}

// serve forwards a request; a watch is tracked so that faults can act on it.
func (p *Proxy) serve(rec *recorder, r *http.Request, rule *Rule) {
	if !isWatch(r.URL.Query()) {
		p.forward.ServeHTTP(rec, r)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	s := &stream{cancel: cancel, gone: r.Context().Done()}
	p.mu.Lock()
	p.streams[s] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.streams, s)
		p.mu.Unlock()
	}()
	if rule != nil && (rule.Action == "silence" || rule.Action == "cut") {
		timer := time.AfterFunc(time.Duration(rule.DelayMs)*time.Millisecond, func() { s.do(rule.Action) })
		defer timer.Stop()
	}
	p.forward.ServeHTTP(streamWriter{rec, s}, r.WithContext(ctx))
	if s.silenced.Load() {
		<-s.gone // a silent watch does not end: the upstream one did, the client hears nothing
	}
}

func (p *Proxy) fire(t *Trigger) {
	time.Sleep(time.Duration(t.AfterMs) * time.Millisecond)
	if t.Signal != "" {
		err := syscall.Kill(t.PID, signals[t.Signal])
		p.logf("trigger: SIG%s to pid %d (error: %v)", t.Signal, t.PID, err)
	}
	p.st.add(t.Then)
	p.applyNow(t.Then)
	p.logf("trigger: fired, %d rules added", len(t.Then.Rules))
}

// writeStatus answers like the apiserver does when it fails a request.
func writeStatus(w http.ResponseWriter, code int) {
	body, _ := json.Marshal(map[string]any{
		"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{}, "status": "Failure",
		"message": fmt.Sprintf("faultproxy: injected %d", code), "reason": statusReasons[code], "code": code,
	})
	w.Header().Set("Content-Type", "application/json")
	if code == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// control is the loopback endpoint the test drives: POST /faults (JSON Faults, replacing those
// in force), GET /faults, GET /log.
func (p *Proxy) control() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /faults", func(w http.ResponseWriter, r *http.Request) {
		var f Faults
		decoder := json.NewDecoder(r.Body)
		decoder.DisallowUnknownFields()
		if err := decoder.Decode(&f); err != nil && err != io.EOF {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := f.validate(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p.set(f)
		body, _ := json.Marshal(f)
		p.logf("faults set: %s", body)
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /faults", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(p.st.snapshot())
	})
	mux.HandleFunc("GET /log", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		text := strings.Join(p.lines, "\n")
		p.mu.Unlock()
		fmt.Fprintln(w, text)
	})
	return mux
}
