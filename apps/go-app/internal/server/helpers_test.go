package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"deployapps/go-app/internal/config"
)

// syncBuffer collects log output written from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines decodes the JSON log lines written so far.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

func testConfig() config.Config {
	cfg, err := config.FromEnv(func(string) string { return "" })
	if err != nil {
		panic(err)
	}
	cfg.SleepMax = 0
	return cfg
}

type testApp struct {
	*App
	addr string
	logs *syncBuffer
}

// startApp serves an App on a loopback port; the test's cleanup stops it.
func startApp(t *testing.T, cfg config.Config) *testApp {
	t.Helper()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: cfg.LogLevel})).
		With(slog.String("version", cfg.Version))
	app := New(cfg, logger, "test-host")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Serve(ln) }()
	t.Cleanup(func() {
		app.stopAccepting()
		app.conns.closeAll()
		<-done
	})
	return &testApp{App: app, addr: ln.Addr().String(), logs: logs}
}

func (a *testApp) url(path string) string { return "http://" + a.addr + path }

// get does one request on a fresh connection and returns the response with its body read.
func (a *testApp) do(t *testing.T, method, path string, body io.Reader, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, a.url(path), body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp, string(b)
}

// rawConn is a keep-alive client that never retries or reconnects: every error is reported.
type rawConn struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawConn{conn: c, r: bufio.NewReader(c)}
}

// roundTrip sends one request and reads the whole response.
func (c *rawConn) roundTrip(method, path string) (*http.Response, string, error) {
	req := method + " " + path + " HTTP/1.1\r\nHost: test\r\n"
	if method == http.MethodPost {
		req += "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
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
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// closedByPeer reports whether the server has closed the connection (EOF on read).
func (c *rawConn) closedByPeer(within time.Duration) bool {
	_ = c.conn.SetReadDeadline(time.Now().Add(within))
	_, err := c.r.ReadByte()
	_ = c.conn.SetReadDeadline(time.Time{})
	return err == io.EOF
}
