// Package server implements the app contract of apps/README.md on net/http: routes, request
// telemetry, and the connection-aware drain that runs on shutdown.
package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"deployapps/go-app/internal/config"
)

// Name is the app's name in headers, logs and app_build_info.
const Name = "go-app"

const (
	maxBodyBytes      = 1 << 20
	maxStreamSeconds  = 120
	defaultStreamSecs = 10
)

// App serves the contract's endpoints and owns the state that shutdown changes.
type App struct {
	cfg      config.Config
	log      *slog.Logger
	hostname string
	metrics  *metrics
	handler  http.Handler

	ready   atomic.Bool // false from the first shutdown signal on: responses carry Connection: close
	closing atomic.Bool // true once the listener is closed (the delay is over)
	// drainDeadline is when the shutdown timeout cuts what still runs (Unix ns; 0 until a drain
	// with a deadline begins). Requests that declare a longer duration are refused, not cut.
	drainDeadline atomic.Int64

	inflightMu sync.Mutex
	inflight   map[*inflightRequest]struct{}
	// lastResponse is when the last request other than a probe or a scrape ended (Unix ns; 0
	// until one did): the drain's log reports it, for the deployer's drain-race timeline.
	lastResponse atomic.Int64

	conns      *connTracker
	srv        *http.Server
	listenerMu sync.Mutex
	listener   net.Listener
	serveDone  chan struct{} // closed when Serve returns
}

// inflightRequest is what a shutdown timeout reports as cut.
type inflightRequest struct {
	method, path, requestID string
	start                   time.Time
}

// New builds the App. It is ready (readyz 200) as soon as it serves.
func New(cfg config.Config, logger *slog.Logger, hostname string) *App {
	a := &App{
		cfg:       cfg,
		log:       logger,
		hostname:  hostname,
		metrics:   newMetrics(cfg.Version),
		inflight:  make(map[*inflightRequest]struct{}),
		conns:     newConnTracker(),
		serveDone: make(chan struct{}),
	}
	a.ready.Store(true)
	mux := http.NewServeMux()
	// Patterns double as the route label (routeLabel strips the method and "{$}").
	mux.HandleFunc("GET /{$}", a.hello)
	mux.HandleFunc("POST /{$}", a.hello)
	mux.HandleFunc("GET /stream", a.stream)
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.Handle("GET /metrics", a.metrics.handler())
	a.handler = a.wrap(mux)
	a.srv = &http.Server{
		Handler:           a.handler,
		ConnState:         a.conns.onState,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       serverIdleTime,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return a
}

// Handler returns the instrumented router.
func (a *App) Handler() http.Handler { return a.handler }

func (a *App) hello(w http.ResponseWriter, r *http.Request) {
	sleep, err := a.sleepFor(r)
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	if r.Method == http.MethodPost {
		// The body is ignored but read, so the connection stays reusable; beyond the cap it is 413.
		if _, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, maxBodyBytes)); err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				writeJSONError(w, http.StatusRequestEntityTooLarge, "body larger than 1 MiB")
				return
			}
			writeJSONError(w, http.StatusBadRequest, "cannot read body")
			return
		}
	}
	if a.refuseBeyondDrain(w, sleep) {
		return
	}
	timer := time.NewTimer(sleep)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-r.Context().Done(): // the client left or the drain timed out
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "Hi!")
}

func (a *App) sleepFor(r *http.Request) (time.Duration, error) {
	q := r.URL.Query()
	if !q.Has("sleep") {
		return time.Duration(rand.Int64N(int64(a.cfg.SleepMax/time.Millisecond)+1)) * time.Millisecond, nil
	}
	ms, err := boundedInt(q.Get("sleep"), 0, int(config.MaxSleep/time.Millisecond))
	if err != nil {
		return 0, fmt.Errorf("sleep: %w", err)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

func (a *App) stream(w http.ResponseWriter, r *http.Request) {
	seconds := defaultStreamSecs
	if q := r.URL.Query(); q.Has("seconds") {
		var err error
		if seconds, err = boundedInt(q.Get("seconds"), 0, maxStreamSeconds); err != nil {
			writeJSONError(w, http.StatusBadRequest, "seconds: "+err.Error())
			return
		}
	}
	if a.refuseBeyondDrain(w, time.Duration(seconds)*time.Second) {
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// The headers leave now, so they could not announce a shutdown that comes during the stream:
	// end the connection anyway, or a kept-alive client could start another stream on a leaving pod.
	w.Header().Set("Connection", "close")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush() // the client sees the stream start at once
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	for i := 1; i <= seconds; i++ {
		select {
		case <-ticker.C:
		case <-r.Context().Done():
			return
		}
		if _, err := fmt.Fprintf(w, "line %d of %d\n", i, seconds); err != nil {
			return
		}
		_ = rc.Flush()
	}
}

func (a *App) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n")
}

func (a *App) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	switch {
	case a.cfg.Fault == config.FaultUnready:
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "unready (FAULT=unready)\n")
	case !a.ready.Load():
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "draining\n")
	default:
		_, _ = io.WriteString(w, "ready\n")
	}
}

func boundedInt(raw string, lo, hi int) (int, error) {
	v, err := strconv.Atoi(raw)
	if err != nil || v < lo || v > hi {
		return 0, fmt.Errorf("want an integer from %d to %d, got %q", lo, hi, raw)
	}
	return v, nil
}

func writeJSONError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
