package main

// Process tests: build the real binary, run it, and signal it, as Kubernetes would.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var binary string

// Persistent connections sending back-to-back requests, each pausing this long between them (like
// a client doing a little work). At any instant some are idle on the server, so a drain that
// closes idle connections at once, or before they were idle for a while, is caught every time.
var pauses = []time.Duration{0, 1 * time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond,
	5 * time.Millisecond, 8 * time.Millisecond, 50 * time.Millisecond, 200 * time.Millisecond}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "go-app-test")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "go-app")
	args := []string{"build", "-o", binary}
	if raceBuild {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building go-app:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is a running go-app whose stdout JSON lines are collected.
type process struct {
	cmd    *exec.Cmd
	addr   string
	stderr bytes.Buffer
	mu     sync.Mutex
	lines  []map[string]any
	exited chan struct{}
}

func start(t *testing.T, env ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(binary), exited: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), append([]string{"PORT=0", "SLEEP_MAX_MS=0"}, env...)...)
	p.cmd.Stderr = &p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan string, 1)
	go func() {
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			var line map[string]any
			if json.Unmarshal(scanner.Bytes(), &line) != nil {
				line = map[string]any{"unparsed": scanner.Text()}
			}
			p.mu.Lock()
			p.lines = append(p.lines, line)
			p.mu.Unlock()
			if line["msg"] == "listening" {
				listening <- line["addr"].(string)
			}
		}
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	select {
	case addr := <-listening:
		_, port, _ := net.SplitHostPort(addr)
		p.addr = net.JoinHostPort("127.0.0.1", port)
	case <-p.exited:
		t.Fatalf("go-app exited at start: %s", p.stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("go-app did not log that it listens")
	}
	return p
}

func (p *process) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// exitCode waits for the process and returns its exit status, 128+n when killed by signal n.
func (p *process) exitCode(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(within):
		t.Fatalf("go-app still running after %v", within)
	}
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *process) waitLog(t *testing.T, msg string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !p.logged(msg, nil) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line %q", msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logged reports whether a line has this msg and the given fields.
func (p *process) logged(msg string, fields map[string]any) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, line := range p.lines {
		if line["msg"] != msg {
			continue
		}
		match := true
		for k, v := range fields {
			match = match && line[k] == v
		}
		if match {
			return true
		}
	}
	return false
}

// client is one keep-alive connection that never retries or reconnects, so every reset or EOF
// the server causes is seen.
type client struct {
	conn net.Conn
	r    *bufio.Reader
}

func dial(addr string) (*client, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	return &client{conn: c, r: bufio.NewReader(c)}, nil
}

func (c *client) roundTrip(method, path string) (*http.Response, string, error) {
	req := method + " " + path + " HTTP/1.1\r\nHost: go-app\r\n"
	if method == http.MethodPost {
		req += "Content-Length: 5\r\n\r\nhello"
	} else {
		req += "\r\n"
	}
	if _, err := io.WriteString(c.conn, req); err != nil {
		return nil, "", err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, string(body), err
}

func (c *client) closedByServer(within time.Duration) bool {
	_ = c.conn.SetReadDeadline(time.Now().Add(within))
	_, err := c.r.ReadByte()
	return errors.Is(err, io.EOF)
}

// signalScenario runs the signal test against a fresh process and returns every broken
// promise: a 5 s request, a 6 s stream and busy keep-alive connections are running when SIGTERM
// arrives; readiness is polled on new connections until they are refused.
func signalScenario(t *testing.T, env ...string) []string {
	const delay = time.Second
	p := start(t, append([]string{"SHUTDOWN_DELAY_SECONDS=1", "SHUTDOWN_TIMEOUT_SECONDS=30"}, env...)...)
	var mu sync.Mutex
	var violations []string
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		violations = append(violations, fmt.Sprintf(format, args...))
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		c, err := dial(p.addr)
		if err != nil {
			fail("5 s request: %v", err)
			return
		}
		defer c.conn.Close()
		resp, body, err := c.roundTrip(http.MethodGet, "/?sleep=5000")
		switch {
		case err != nil || resp.StatusCode != 200 || body != "Hi!":
			fail("5 s request: %v %q", err, body)
		case !resp.Close:
			fail("5 s request: answered during the drain without Connection: close")
		}
	})
	wg.Go(func() {
		c, err := dial(p.addr)
		if err != nil {
			fail("stream: %v", err)
			return
		}
		defer c.conn.Close()
		want := "line 1 of 6\nline 2 of 6\nline 3 of 6\nline 4 of 6\nline 5 of 6\nline 6 of 6\n"
		if resp, body, err := c.roundTrip(http.MethodGet, "/stream?seconds=6"); err != nil || resp.StatusCode != 200 || body != want {
			fail("stream: incomplete (%v): %q", err, body)
		}
	})
	begin := time.Now()
	for i, pause := range pauses {
		wg.Go(func() {
			c, err := dial(p.addr)
			if err != nil {
				fail("persistent connection %d: %v", i, err)
				return
			}
			defer c.conn.Close()
			for n := 0; ; n++ {
				resp, _, err := c.roundTrip(http.MethodPost, "/?sleep=0")
				switch {
				case err != nil:
					fail("persistent connection %d: %v after %d responses, none with Connection: close", i, err, n)
					return
				case resp.StatusCode != 200:
					fail("persistent connection %d: status %d", i, resp.StatusCode)
					return
				case resp.Close:
					if !c.closedByServer(5 * time.Second) {
						fail("persistent connection %d: still open after Connection: close", i)
					}
					return
				case time.Since(begin) > 20*time.Second:
					fail("persistent connection %d: no Connection: close after 20 s", i)
					return
				}
				time.Sleep(pause)
			}
		})
	}

	time.Sleep(time.Second)
	p.signal(t, syscall.SIGTERM)
	signalled := time.Now()
	var statuses []int
	for time.Since(signalled) < 15*time.Second {
		c, err := dial(p.addr)
		if err != nil {
			if refusedAfter := time.Since(signalled); refusedAfter < delay-100*time.Millisecond {
				fail("new connections refused %v after SIGTERM, within SHUTDOWN_DELAY_SECONDS", refusedAfter)
			}
			break
		}
		resp, _, err := c.roundTrip(http.MethodGet, "/readyz")
		c.conn.Close()
		if err == nil {
			statuses = append(statuses, resp.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	first503 := -1
	for i, s := range statuses {
		if s == 503 && first503 < 0 {
			first503 = i
		}
		if first503 >= 0 && s != 503 {
			fail("readiness went back to %d during the drain: %v", s, statuses)
		}
	}
	if first503 < 0 {
		fail("readiness never answered 503 during the drain: %v", statuses)
	}
	if code := p.exitCode(t, 30*time.Second); code != 0 {
		fail("exit code %d, want 0", code)
	}
	return violations
}

func TestSIGTERMDrainsEverythingAndExitsZero(t *testing.T) {
	t.Parallel()
	if violations := signalScenario(t); len(violations) > 0 {
		t.Fatalf("graceful shutdown broke promises:\n%s", strings.Join(violations, "\n"))
	}
}

// The same scenario against SHUTDOWN_MODE=immediate must break every promise: this proves each
// check above can fail.
func TestSignalScenarioDetectsAnUnsafeShutdown(t *testing.T) {
	t.Parallel()
	violations := strings.Join(signalScenario(t, "SHUTDOWN_MODE=immediate"), "\n")
	t.Logf("violations of the unsafe shutdown:\n%s", violations)
	for _, want := range []string{"5 s request:", "stream: incomplete", "persistent connection",
		"within SHUTDOWN_DELAY_SECONDS", "readiness never answered 503", "exit code 143"} {
		if !strings.Contains(violations, want) {
			t.Errorf("unsafe shutdown not detected by the %q check; violations:\n%s", want, violations)
		}
	}
}

func TestSIGINTAlsoShutsDownGracefully(t *testing.T) {
	t.Parallel()
	p := start(t)
	p.signal(t, syscall.SIGINT)
	if code := p.exitCode(t, 10*time.Second); code != 0 || !p.logged("shutdown complete", nil) {
		t.Fatalf("SIGINT: exit %d, want 0 after a complete shutdown", code)
	}
}

func TestSecondSignalExitsAtOnce(t *testing.T) {
	t.Parallel()
	p := start(t, "SHUTDOWN_TIMEOUT_SECONDS=60")
	c, err := dial(p.addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _, _ = c.roundTrip(http.MethodGet, "/?sleep=30000") }()
	time.Sleep(200 * time.Millisecond)
	p.signal(t, syscall.SIGTERM)
	p.waitLog(t, "shutdown: stopped accepting; draining connections", 5*time.Second)
	p.signal(t, syscall.SIGTERM)
	if code := p.exitCode(t, 5*time.Second); code == 0 {
		t.Fatal("second signal: exit 0, want non-zero")
	}
	if !p.logged("second signal: exiting at once", nil) {
		t.Fatal("second signal not logged")
	}
}

func TestShutdownTimeoutLogsWhatItCutAndExitsOne(t *testing.T) {
	t.Parallel()
	p := start(t, "SHUTDOWN_TIMEOUT_SECONDS=1")
	c, err := dial(p.addr)
	if err != nil {
		t.Fatal(err)
	}
	result := make(chan error, 1)
	go func() {
		_, _, err := c.roundTrip(http.MethodGet, "/?sleep=30000")
		result <- err
	}()
	time.Sleep(200 * time.Millisecond)
	p.signal(t, syscall.SIGTERM)
	if code := p.exitCode(t, 10*time.Second); code != 1 {
		t.Fatalf("timeout: exit %d, want 1", code)
	}
	if !p.logged("shutdown timeout: cutting request", map[string]any{"method": "GET", "path": "/"}) {
		t.Fatal("the cut request was not logged")
	}
	if err := <-result; err == nil {
		t.Fatal("the cut request got a response")
	}
}

func TestBadConfigExitsTwoWithOneLine(t *testing.T) {
	t.Parallel()
	for _, env := range []string{"PORT=abc", "SHUTDOWN_MODE=sometimes", "SLEEP_MAX_MS=-5"} {
		cmd := exec.Command(binary)
		cmd.Env = append(os.Environ(), env)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) || exitErr.ExitCode() != 2 {
			t.Errorf("%s: %v, want exit 2", env, err)
		}
		name, _, _ := strings.Cut(env, "=")
		if msg := stderr.String(); strings.Count(msg, "\n") != 1 || !strings.Contains(msg, name) {
			t.Errorf("%s: stderr %q, want one line naming %s", env, msg, name)
		}
	}
}

func TestFaultCrashExitsOne(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(binary)
	cmd.Env = append(os.Environ(), "FAULT=crash", "PORT=0")
	out, err := cmd.Output()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Fatalf("FAULT=crash: %v, want exit 1", err)
	}
	if !strings.Contains(string(out), `"level":"ERROR"`) || !strings.Contains(string(out), "FAULT=crash") {
		t.Fatalf("FAULT=crash did not log why: %q", out)
	}
}

func TestMemoryLimitSetsTheRuntimeSoftLimit(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		want float64
	}{
		{"90 % of the container limit", []string{"MEMORY_LIMIT_BYTES=67108864"}, 60397974},
		{"an explicit GOMEMLIMIT wins", []string{"MEMORY_LIMIT_BYTES=67108864", "GOMEMLIMIT=50MiB"}, 50 << 20},
		{"no limit known", nil, math.MaxInt64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, tc.env...)
			if !p.logged("listening", map[string]any{"gomemlimit_bytes": tc.want}) {
				t.Fatalf("the listening line lacks gomemlimit_bytes=%.0f: %v", tc.want, p.lines)
			}
		})
	}
}
