package server

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Histogram buckets shared with node-app and the SLO rules; they reach the 120 s stream.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}

type metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
}

func newMetrics(version string) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total", Help: "HTTP requests by method, route and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "http_request_duration_seconds", Help: "HTTP request duration by method and route.",
			Buckets: durationBuckets,
		}, []string{"method", "route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "http_requests_in_flight", Help: "HTTP requests being served.",
		}),
	}
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "app_build_info", Help: "Always 1; labels carry the app name and version.",
	}, []string{"app", "version"})
	buildInfo.WithLabelValues(Name, version).Set(1)
	m.registry.MustRegister(m.requests, m.duration, m.inFlight, buildInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// routeLabel turns a ServeMux pattern ("GET /{$}") into the route label ("/"); requests that no
// route matched (404, 405) have no pattern.
func routeLabel(pattern string) string {
	if pattern == "" {
		return "unmatched"
	}
	if _, path, ok := strings.Cut(pattern, " "); ok {
		pattern = path
	}
	return strings.TrimSuffix(pattern, "{$}")
}

// quietRoutes are probe and scrape endpoints: logged at debug, not info.
var quietRoutes = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// wrap adds the contract's headers, the request id, Connection: close while draining, and (unless
// TELEMETRY=off) one log line and the metrics per request.
func (a *App) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h := w.Header()
		h.Set("X-App-Name", Name)
		h.Set("X-App-Version", a.cfg.Version)
		h.Set("X-Served-By", a.hostname)
		requestID := r.Header.Get("X-Request-Id")
		if requestID == "" || len(requestID) > 200 {
			requestID = newRequestID()
		}
		h.Set("X-Request-Id", requestID)

		req := &inflightRequest{method: r.Method, path: r.URL.Path, requestID: requestID, start: start}
		a.inflightMu.Lock()
		a.inflight[req] = struct{}{}
		a.inflightMu.Unlock()
		defer func() {
			a.inflightMu.Lock()
			delete(a.inflight, req)
			a.inflightMu.Unlock()
			if !quietRoutes[r.URL.Path] {
				a.lastResponse.Store(time.Now().UnixNano())
			}
		}()

		rw := &responseWriter{ResponseWriter: w, app: a, status: http.StatusOK}
		if !a.cfg.Telemetry {
			next.ServeHTTP(rw, r)
			return
		}
		a.metrics.inFlight.Inc()
		defer a.metrics.inFlight.Dec()
		next.ServeHTTP(rw, r)

		route := routeLabel(r.Pattern) // ServeMux sets r.Pattern on this request
		elapsed := time.Since(start)
		a.metrics.requests.WithLabelValues(r.Method, route, strconv.Itoa(rw.status)).Inc()
		a.metrics.duration.WithLabelValues(r.Method, route).Observe(elapsed.Seconds())
		level := slog.LevelInfo
		if quietRoutes[route] {
			level = slog.LevelDebug
		}
		a.log.LogAttrs(r.Context(), level, "request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("route", route),
			slog.Int("status", rw.status), slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
			slog.String("request_id", requestID), slog.String("remote", r.RemoteAddr))
	})
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// responseWriter records the status and, from the shutdown signal on (the delay included), marks
// the response Connection: close at the moment its header is written (not when the request
// arrived), so a long request accepted before the signal still tells its client not to reuse the
// connection.
type responseWriter struct {
	http.ResponseWriter
	app         *App
	status      int
	wroteHeader bool
}

func (w *responseWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.wroteHeader = true
		w.status = code
		if !w.app.ready.Load() {
			w.Header().Set("Connection", "close")
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach Flush and deadlines on the real writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush keeps promhttp's and other callers' type assertions working.
func (w *responseWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}
