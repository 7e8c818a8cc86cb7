package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// drainAsync runs Drain in the background and returns its result channel.
func drainAsync(app *testApp, timeout, delay time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		done <- app.Drain(ctx, delay)
	}()
	return done
}

// waitInflight waits until n requests are inside their handlers: a fixed sleep is too short on a
// loaded machine, and a drain begun before the request arrived would refuse it.
func waitInflight(t *testing.T, app *testApp, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for app.inflightCount() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests in flight after 10 s, want %d", app.inflightCount(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitDrain(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("drain did not finish")
		return nil
	}
}

func TestDrainServesDuringTheDelayAskingKeptAliveClientsToLeaveThenStopsAccepting(t *testing.T) {
	app := startApp(t, testConfig())
	done := drainAsync(app, 10*time.Second, 2*time.Second)
	time.Sleep(100 * time.Millisecond)
	// A new connection is still served; its response tells the client to reconnect elsewhere,
	// so a client pinned to this pod (kube-proxy keeps a connection on one pod) leaves it now.
	resp, body, err := dialRaw(t, app.addr).roundTrip(http.MethodGet, "/?sleep=0")
	if err != nil || resp.StatusCode != 200 || body != "Hi!" || !resp.Close {
		t.Fatalf("during the delay: %v %q close=%v, want 200 Hi! with Connection: close", err, body, resp != nil && resp.Close)
	}
	if resp, _ := app.do(t, http.MethodGet, "/readyz", nil, nil); resp.StatusCode != 503 {
		t.Fatalf("readyz during the delay: %d, want 503", resp.StatusCode)
	}
	if err := waitDrain(t, done); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", app.addr); err == nil {
		c.Close()
		t.Fatal("new connections are still accepted after the drain")
	}
}

func TestDrainFinishesAcceptedRequestsWithConnectionClose(t *testing.T) {
	app := startApp(t, testConfig())
	conn := dialRaw(t, app.addr)
	type result struct {
		resp *http.Response
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, body, err := conn.roundTrip(http.MethodGet, "/?sleep=800")
		got <- result{resp, body, err}
	}()
	waitInflight(t, app, 1)
	done := drainAsync(app, 10*time.Second, 0)
	r := <-got
	if r.err != nil || r.resp.StatusCode != 200 || r.body != "Hi!" {
		t.Fatalf("accepted request: %v %v %q", r.err, r.resp, r.body)
	}
	if !r.resp.Close {
		t.Fatal("response finished during the drain lacks Connection: close")
	}
	if !conn.closedByPeer(3 * time.Second) {
		t.Fatal("server kept the connection open after Connection: close")
	}
	if err := waitDrain(t, done); err != nil {
		t.Fatal(err)
	}
}

func TestDrainWaitsForStreams(t *testing.T) {
	app := startApp(t, testConfig())
	body := make(chan string, 1)
	// The stream cannot start before launch, and it ticks for 2 s, so a drain that waited for it
	// returns no earlier than launch+2s. Timing the drain, not racing the client that delivers the
	// body, keeps this test deterministic on a loaded machine.
	launch := time.Now()
	go func() {
		_, b := app.do(t, http.MethodGet, "/stream?seconds=2", nil, nil)
		body <- b
	}()
	waitInflight(t, app, 1)
	if err := waitDrain(t, drainAsync(app, 10*time.Second, 0)); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(launch); waited < 2*time.Second {
		t.Fatalf("drain returned %v after the stream began, before its 2 s were over", waited)
	}
	select {
	case b := <-body:
		if b != "line 1 of 2\nline 2 of 2\n" {
			t.Fatalf("stream body %q", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream's body never reached the client")
	}
}

func TestDrainGivesIdleConnectionsAGraceBeforeClosingThem(t *testing.T) {
	app := startApp(t, testConfig())
	reused, idle := dialRaw(t, app.addr), dialRaw(t, app.addr)
	for _, c := range []*rawConn{reused, idle} {
		if resp, _, err := c.roundTrip(http.MethodGet, "/?sleep=0"); err != nil || resp.Close {
			t.Fatalf("warm-up: %v", err)
		}
	}
	idleSince := time.Now()
	done := drainAsync(app, 10*time.Second, 0)
	time.Sleep(idleCloseAfter / 3)
	// A client reusing its idle connection soon after the drain began gets an answer, not EOF.
	resp, body, err := reused.roundTrip(http.MethodPost, "/?sleep=0")
	if err != nil {
		t.Fatalf("request on a recently idle connection failed: %v", err)
	}
	if resp.StatusCode != 200 || body != "Hi!" || !resp.Close {
		t.Fatalf("got %d %q close=%v, want 200 Hi! with Connection: close", resp.StatusCode, body, resp.Close)
	}
	// A connection that stays idle is closed by the server, but not before the grace.
	// The grace counts from the connection's last response; on a loaded machine little may be left.
	if left := idleCloseAfter - time.Since(idleSince) - 100*time.Millisecond; left > 0 && idle.closedByPeer(left) {
		t.Fatal("idle connection closed before the idle grace")
	}
	if !idle.closedByPeer(5 * time.Second) {
		t.Fatal("idle connection was not closed")
	}
	if err := waitDrain(t, done); err != nil {
		t.Fatal(err)
	}
}

func TestDrainTimeoutCutsAndLogsRequests(t *testing.T) {
	app := startApp(t, testConfig())
	conn := dialRaw(t, app.addr)
	errs := make(chan error, 1)
	go func() {
		_, _, err := conn.roundTrip(http.MethodGet, "/?sleep=5000")
		errs <- err
	}()
	waitInflight(t, app, 1)
	if err := waitDrain(t, drainAsync(app, 300*time.Millisecond, 0)); !errors.Is(err, ErrDrainTimeout) {
		t.Fatalf("drain: %v, want ErrDrainTimeout", err)
	}
	if err := <-errs; err == nil {
		t.Fatal("the cut request still got a response")
	}
	found := false
	for _, line := range app.logs.lines(t) {
		if line["msg"] == "shutdown timeout: cutting request" && line["path"] == "/" && line["method"] == "GET" {
			found = true
		}
	}
	if !found {
		t.Fatal("the cut request was not logged")
	}
}

func TestPendingInputSeesUnreadBytes(t *testing.T) {
	if _, err := os.Stat("/proc/self"); err != nil {
		t.Skip("needs Linux")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	if pendingInput(server) {
		t.Fatal("pending input on a silent connection")
	}
	if _, err := client.Write([]byte("GET")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !pendingInput(server) {
		if time.Now().After(deadline) {
			t.Fatal("unread bytes not seen")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDrainRefusesRequestsLongerThanItsBudgetAndServesShorterOnes(t *testing.T) {
	app := startApp(t, testConfig())
	// 6 s until the shutdown timeout, the first 4 s of it serving normally (the delay), so new
	// connections are still accepted while the budget shrinks.
	done := drainAsync(app, 6*time.Second, 4*time.Second)
	time.Sleep(100 * time.Millisecond)
	for _, tc := range []struct {
		path   string
		refuse bool
	}{
		{"/stream?seconds=30", true},
		{"/?sleep=30000", true},
		{"/stream?seconds=1", false},
		{"/?sleep=500", false},
	} {
		resp, body, err := dialRaw(t, app.addr).roundTrip(http.MethodGet, tc.path)
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		if tc.refuse {
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !resp.Close ||
				!strings.Contains(body, "shutting down") {
				t.Fatalf("%s during the drain: %d Retry-After=%q close=%v %q, want a clean 503", tc.path,
					resp.StatusCode, resp.Header.Get("Retry-After"), resp.Close, body)
			}
		} else if resp.StatusCode != 200 || !(body == "Hi!" || strings.HasPrefix(body, "line 1 of 1")) {
			t.Fatalf("%s fits the budget: %d %q, want it served in full", tc.path, resp.StatusCode, body)
		}
	}
	if err := waitDrain(t, done); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, line := range app.logs.lines(t) {
		found = found || line["msg"] == "shutdown timeout: cutting request"
	}
	if found {
		t.Fatal("a request was cut: the drain should have refused it up front")
	}
}

func TestRequestsBeforeADrainAreNeverRefused(t *testing.T) {
	app := startApp(t, testConfig())
	resp, body := app.do(t, http.MethodGet, "/stream?seconds=1", nil, nil)
	if resp.StatusCode != 200 || body != "line 1 of 1\n" {
		t.Fatalf("no drain: %d %q", resp.StatusCode, body)
	}
}

// The drained line says when the last request other than a probe ended: the deployer's drain-race
// timeline reads it from the pod's log.
func TestDrainedLineReportsTheLastResponseButNotProbes(t *testing.T) {
	app := startApp(t, testConfig())
	before := time.Now()
	if resp, _ := app.do(t, http.MethodGet, "/?sleep=0", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("GET /: %d", resp.StatusCode)
	}
	after := time.Now()
	time.Sleep(50 * time.Millisecond)
	if resp, _ := app.do(t, http.MethodGet, "/readyz", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("GET /readyz: %d", resp.StatusCode)
	}
	if err := waitDrain(t, drainAsync(app, 10*time.Second, 0)); err != nil {
		t.Fatal(err)
	}
	for _, line := range app.logs.lines(t) {
		if line["msg"] != "shutdown: drained" {
			continue
		}
		text, _ := line["last_response_at"].(string)
		at, err := time.Parse(time.RFC3339Nano, text)
		if err != nil || at.Before(before) || at.After(after) {
			t.Fatalf("last_response_at %q (%v), want the GET / between %v and %v (not the later /readyz)",
				text, err, before, after)
		}
		return
	}
	t.Fatal("no 'shutdown: drained' line")
}
