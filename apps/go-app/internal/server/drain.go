package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Why the drain is hand-written instead of http.Server.Shutdown: Shutdown (and
// SetKeepAlivesEnabled(false)) closes every idle keep-alive connection at once. A client that is
// writing its next request on such a connection at that instant gets EOF or a reset, which a
// non-retrying client (or any POST) counts as a failure. Instead, once draining:
//   - every response carries "Connection: close", so a busy keep-alive connection ends cleanly
//     right after a complete response;
//   - a connection is closed only when it has been idle for idleCloseAfter, no byte of a new
//     request has been read from it, and the kernel holds no unread input for it (SIOCINQ).
//
// Back-to-back clients therefore always get a Connection: close response; only a client that
// was quiet for idleCloseAfter and sends within microseconds of the close can still lose a race.
const (
	idleCloseAfter = time.Second
	// refuseMargin is kept free before the drain deadline for a response's last bytes to leave.
	refuseMargin   = time.Second
	drainPoll      = 25 * time.Millisecond
	serverIdleTime = 120 * time.Second // longer than proxies' pool idle timeouts (Traefik: 90 s)
)

// trackedConn counts the bytes read from a connection, so the drain can see that a request has
// started to arrive even before net/http marks the connection active.
type trackedConn struct {
	net.Conn
	bytesRead atomic.Uint64
}

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.bytesRead.Add(uint64(n))
	return n, err
}

type trackingListener struct {
	net.Listener
}

func (l trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &trackedConn{Conn: c}, nil
}

type connInfo struct {
	state       http.ConnState
	since       time.Time // when the current state began
	bytesAtIdle uint64
	closed      bool // closed by the drain; net/http reports StateClosed later
}

// connTracker follows every connection through net/http's ConnState hook.
type connTracker struct {
	mu    sync.Mutex
	conns map[*trackedConn]*connInfo
}

func newConnTracker() *connTracker {
	return &connTracker{conns: make(map[*trackedConn]*connInfo)}
}

func (t *connTracker) onState(c net.Conn, state http.ConnState) {
	tc, ok := c.(*trackedConn)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch state {
	case http.StateClosed, http.StateHijacked:
		delete(t.conns, tc)
	default:
		info := t.conns[tc]
		if info == nil {
			info = &connInfo{}
			t.conns[tc] = info
		}
		info.state, info.since = state, time.Now()
		info.bytesAtIdle = tc.bytesRead.Load()
	}
}

// closeQuiet closes connections that are idle (or new and silent) for at least quietFor, and
// reports how many connections are still open.
func (t *connTracker) closeQuiet(quietFor time.Duration) int {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for c, info := range t.conns {
		if info.closed || (info.state != http.StateIdle && info.state != http.StateNew) ||
			now.Sub(info.since) < quietFor ||
			c.bytesRead.Load() != info.bytesAtIdle || pendingInput(c.Conn) {
			continue
		}
		info.closed = true
		_ = c.Close()
	}
	return len(t.conns)
}

func (t *connTracker) closeAll() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		_ = c.Close()
	}
	return len(t.conns)
}

// Serve serves HTTP on ln until the drain stops it; it returns nil after a drain.
func (a *App) Serve(ln net.Listener) error {
	defer close(a.serveDone)
	tracked := trackingListener{ln}
	a.listenerMu.Lock()
	if a.closing.Load() { // the drain began before Serve
		a.listenerMu.Unlock()
		_ = ln.Close()
		return nil
	}
	a.listener = tracked
	a.listenerMu.Unlock()
	err := a.srv.Serve(tracked)
	if a.closing.Load() {
		return nil // the drain closed the listener
	}
	return err
}

// stopAccepting marks the drain as begun and closes the listener.
func (a *App) stopAccepting() {
	a.listenerMu.Lock()
	a.closing.Store(true)
	ln := a.listener
	a.listenerMu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
}

// BeginShutdown turns readiness to 503. It is the first step after a signal.
func (a *App) BeginShutdown() {
	a.ready.Store(false)
}

// ErrDrainTimeout reports that the drain was cut short; the cut requests were logged.
var ErrDrainTimeout = errors.New("shutdown timeout: requests were cut")

// Drain runs the rest of the shutdown timeline (apps/README.md): keep accepting for delay (every
// response now carries Connection: close), stop accepting, let every accepted request finish,
// close quiet connections,
// and return when none is left. When ctx ends first it logs what it cut, closes everything and
// returns ErrDrainTimeout.
func (a *App) Drain(ctx context.Context, delay time.Duration) error {
	if deadline, ok := ctx.Deadline(); ok {
		a.drainDeadline.Store(deadline.UnixNano())
	}
	a.BeginShutdown()
	a.log.Info("shutdown: readiness is 503; accepting until the delay ends, with Connection: close",
		slog.Float64("delay_seconds", delay.Seconds()))
	select {
	case <-time.After(delay):
	case <-ctx.Done():
	}
	a.stopAccepting()
	// Once Serve has returned, every connection it accepted has been reported to the tracker.
	select {
	case <-a.serveDone:
	case <-ctx.Done():
	}
	a.log.Info("shutdown: stopped accepting; draining connections")
	ticker := time.NewTicker(drainPoll)
	defer ticker.Stop()
	for {
		if a.conns.closeQuiet(idleCloseAfter) == 0 && a.inflightCount() == 0 {
			a.log.Info("shutdown: drained", a.lastResponseAttr())
			return nil
		}
		select {
		case <-ticker.C:
		case <-ctx.Done():
			a.logCut()
			return ErrDrainTimeout
		}
	}
}

// refuseBeyondDrain answers 503 (Retry-After, Connection: close, before any body) when a request
// that arrives during the drain needs longer than the drain has left, so that no request accepted
// after the signal is cut by the shutdown timeout. It reports whether it refused.
func (a *App) refuseBeyondDrain(w http.ResponseWriter, need time.Duration) bool {
	deadline := a.drainDeadline.Load()
	if deadline == 0 {
		return false
	}
	left := time.Until(time.Unix(0, deadline)) - refuseMargin
	if need <= left {
		return false
	}
	w.Header().Set("Retry-After", "1")
	w.Header().Set("Connection", "close")
	writeJSONError(w, http.StatusServiceUnavailable, fmt.Sprintf(
		"shutting down: this request needs %.0f s, the drain has %.0f s left; retry on another replica",
		need.Seconds(), max(left, 0).Seconds()))
	return true
}

// lastResponseAttr is last_response_at: RFC 3339 with nanoseconds, or null before any response.
func (a *App) lastResponseAttr() slog.Attr {
	ns := a.lastResponse.Load()
	if ns == 0 {
		return slog.Any("last_response_at", nil)
	}
	return slog.String("last_response_at", time.Unix(0, ns).UTC().Format(time.RFC3339Nano))
}

func (a *App) inflightCount() int {
	a.inflightMu.Lock()
	defer a.inflightMu.Unlock()
	return len(a.inflight)
}

// logCut logs every request still running and closes every connection.
func (a *App) logCut() {
	a.inflightMu.Lock()
	cut := make([]*inflightRequest, 0, len(a.inflight))
	for r := range a.inflight {
		cut = append(cut, r)
	}
	a.inflightMu.Unlock()
	sort.Slice(cut, func(i, j int) bool { return cut[i].start.Before(cut[j].start) })
	for _, r := range cut {
		a.log.Error("shutdown timeout: cutting request",
			slog.String("method", r.method), slog.String("path", r.path),
			slog.String("request_id", r.requestID),
			slog.Float64("running_seconds", time.Since(r.start).Seconds()))
	}
	conns := a.conns.closeAll()
	a.log.Error(fmt.Sprintf("shutdown timeout: cut %d requests and closed %d connections", len(cut), conns),
		slog.Int("requests", len(cut)), slog.Int("connections", conns))
}
