package server

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"deployapps/go-app/internal/config"
)

func TestHelloAnswersHiWithContractHeaders(t *testing.T) {
	cfg := testConfig()
	cfg.Version = "v7"
	app := startApp(t, cfg)
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		resp, body := app.do(t, method, "/?sleep=0", strings.NewReader("ignored"), nil)
		if resp.StatusCode != 200 || body != "Hi!" {
			t.Fatalf("%s /: %d %q, want 200 Hi!", method, resp.StatusCode, body)
		}
		for header, want := range map[string]string{"X-App-Name": "go-app", "X-App-Version": "v7", "X-Served-By": "test-host"} {
			if got := resp.Header.Get(header); got != want {
				t.Errorf("%s: %s = %q, want %q", method, header, got, want)
			}
		}
		if len(resp.Header.Get("X-Request-Id")) != 32 {
			t.Errorf("generated X-Request-Id = %q, want 32 hex digits", resp.Header.Get("X-Request-Id"))
		}
	}
	resp, _ := app.do(t, http.MethodGet, "/nope", nil, nil)
	if resp.StatusCode != 404 || resp.Header.Get("X-App-Name") != "go-app" {
		t.Errorf("404 response: status %d, X-App-Name %q", resp.StatusCode, resp.Header.Get("X-App-Name"))
	}
}

func TestSleepParameterSetsTheExactSleep(t *testing.T) {
	app := startApp(t, testConfig())
	start := time.Now()
	resp, _ := app.do(t, http.MethodGet, "/?sleep=300", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if elapsed := time.Since(start); elapsed < 300*time.Millisecond {
		t.Fatalf("answered after %v, before the 300 ms sleep", elapsed)
	}
}

func TestRandomSleepStaysWithinSleepMax(t *testing.T) {
	cfg := testConfig()
	cfg.SleepMax = 40 * time.Millisecond
	app := New(cfg, slog.New(slog.DiscardHandler), "h")
	seen := map[time.Duration]bool{}
	for range 300 {
		d, err := app.sleepFor(httptest.NewRequest(http.MethodGet, "/", nil))
		if err != nil {
			t.Fatal(err)
		}
		if d < 0 || d > cfg.SleepMax || d%time.Millisecond != 0 {
			t.Fatalf("random sleep %v outside [0, %v] whole milliseconds", d, cfg.SleepMax)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Fatalf("only %d distinct sleeps in 300 draws: not random", len(seen))
	}
}

func TestBadParametersGet400JSON(t *testing.T) {
	app := startApp(t, testConfig())
	for _, path := range []string{"/?sleep=abc", "/?sleep=-1", "/?sleep=60001", "/?sleep=1.5", "/?sleep=",
		"/stream?seconds=121", "/stream?seconds=x"} {
		resp, body := app.do(t, http.MethodGet, path, nil, nil)
		if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/json" ||
			!strings.HasPrefix(body, `{"error":`) {
			t.Errorf("%s: %d %s %q, want 400 with a JSON error", path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
}

func TestPostBodyIsCappedAtOneMiB(t *testing.T) {
	app := startApp(t, testConfig())
	resp, _ := app.do(t, http.MethodPost, "/?sleep=0", strings.NewReader(strings.Repeat("x", 1<<20)), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("1 MiB body: status %d, want 200", resp.StatusCode)
	}
	resp, _ = app.do(t, http.MethodPost, "/?sleep=0", strings.NewReader(strings.Repeat("x", 1<<20+1)), nil)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("1 MiB + 1 body: status %d, want 413", resp.StatusCode)
	}
}

func TestStreamWritesOneLinePerSecond(t *testing.T) {
	app := startApp(t, testConfig())
	start := time.Now()
	resp, body := app.do(t, http.MethodGet, "/stream?seconds=2", nil, nil)
	if resp.StatusCode != 200 || body != "line 1 of 2\nline 2 of 2\n" {
		t.Fatalf("stream: %d %q", resp.StatusCode, body)
	}
	if elapsed := time.Since(start); elapsed < 2*time.Second {
		t.Fatalf("2-line stream ended after %v, want one line per second", elapsed)
	}
}

func TestStreamDefaultsToTenSeconds(t *testing.T) {
	app := startApp(t, testConfig())
	conn := dialRaw(t, app.addr)
	if _, err := conn.conn.Write([]byte("GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(conn.r, nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len("line 1 of 10\n"))
	if _, err := resp.Body.Read(buf); err != nil || string(buf) != "line 1 of 10\n" {
		t.Fatalf("first line %q (%v), want %q", buf, err, "line 1 of 10\n")
	}
	// Its headers leave before the body, so they cannot announce a later shutdown: a stream
	// always ends its connection, and a client never starts a second one on a leaving pod.
	if !resp.Close {
		t.Fatal("a stream's headers lack Connection: close")
	}
}

func TestProbes(t *testing.T) {
	app := startApp(t, testConfig())
	expect := func(path string, want int) {
		t.Helper()
		if resp, _ := app.do(t, http.MethodGet, path, nil, nil); resp.StatusCode != want {
			t.Fatalf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	expect("/healthz", 200)
	expect("/readyz", 200)
	app.BeginShutdown()
	expect("/readyz", 503)
	expect("/healthz", 200) // liveness never fails while draining

	cfg := testConfig()
	cfg.Fault = config.FaultUnready
	unready := startApp(t, cfg)
	if resp, _ := unready.do(t, http.MethodGet, "/readyz", nil, nil); resp.StatusCode != 503 {
		t.Fatalf("FAULT=unready: readyz %d, want 503", resp.StatusCode)
	}
}

func TestMetrics(t *testing.T) {
	cfg := testConfig()
	cfg.Version = "v9"
	app := startApp(t, cfg)
	app.do(t, http.MethodGet, "/?sleep=0", nil, nil)
	app.do(t, http.MethodPost, "/?sleep=0", nil, nil)
	app.do(t, http.MethodGet, "/?sleep=bad", nil, nil)
	app.do(t, http.MethodGet, "/missing", nil, nil)
	app.do(t, http.MethodGet, "/healthz", nil, nil)
	resp, body := app.do(t, http.MethodGet, "/metrics", nil, nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`http_requests_total{code="200",method="GET",route="/"} 1`,
		`http_requests_total{code="200",method="POST",route="/"} 1`,
		`http_requests_total{code="400",method="GET",route="/"} 1`,
		`http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`http_requests_total{code="200",method="GET",route="/healthz"} 1`,
		`http_request_duration_seconds_count{method="GET",route="/"} 2`,
		`http_requests_in_flight 1`, // the scrape itself
		`app_build_info{app="go-app",version="v9"} 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for _, le := range []string{"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "120", "+Inf"} {
		if !strings.Contains(body, `http_request_duration_seconds_bucket{method="GET",route="/",le="`+le+`"}`) {
			t.Errorf("/metrics lacks the le=%s bucket", le)
		}
	}
}

func TestRequestLogs(t *testing.T) {
	cfg := testConfig()
	cfg.Version = "v3"
	app := startApp(t, cfg)
	app.do(t, http.MethodGet, "/?sleep=0", nil, http.Header{"X-Request-Id": {"req-42"}})
	app.do(t, http.MethodGet, "/healthz", nil, nil)
	app.do(t, http.MethodGet, "/readyz", nil, nil)
	app.do(t, http.MethodGet, "/metrics", nil, nil)
	lines := app.logs.lines(t)
	if len(lines) != 1 {
		t.Fatalf("want exactly one info line (probes and metrics are debug), got %d: %v", len(lines), lines)
	}
	line := lines[0]
	for key, want := range map[string]any{"level": "INFO", "method": "GET", "path": "/", "status": float64(200),
		"version": "v3", "request_id": "req-42"} {
		if line[key] != want {
			t.Errorf("log %s = %v, want %v", key, line[key], want)
		}
	}
	for _, key := range []string{"time", "duration_ms"} {
		if _, ok := line[key]; !ok {
			t.Errorf("log line lacks %s: %v", key, line)
		}
	}

	cfg.LogLevel = -4 // debug
	debug := startApp(t, cfg)
	debug.do(t, http.MethodGet, "/healthz", nil, nil)
	if lines := debug.logs.lines(t); len(lines) != 1 || lines[0]["path"] != "/healthz" || lines[0]["level"] != "DEBUG" {
		t.Fatalf("LOG_LEVEL=debug: want the probe logged at debug, got %v", lines)
	}
}

func TestTelemetryOffSkipsLogsAndRequestMetrics(t *testing.T) {
	cfg := testConfig()
	cfg.Telemetry = false
	app := startApp(t, cfg)
	if resp, body := app.do(t, http.MethodGet, "/?sleep=0", nil, nil); resp.StatusCode != 200 || body != "Hi!" {
		t.Fatalf("TELEMETRY=off: %d %q", resp.StatusCode, body)
	}
	_, metrics := app.do(t, http.MethodGet, "/metrics", nil, nil)
	if strings.Contains(metrics, "http_requests_total{") || !strings.Contains(metrics, "app_build_info{") {
		t.Fatalf("TELEMETRY=off: want build info but no request series")
	}
	if lines := app.logs.lines(t); len(lines) != 0 {
		t.Fatalf("TELEMETRY=off: want no request logs, got %v", lines)
	}
}
