// Command go-app is the Go workload of deploy-apps: a small HTTP service that drains gracefully.
// The contract and the shutdown timeline are in apps/README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"deployapps/go-app/internal/config"
	"deployapps/go-app/internal/server"
)

// Exit codes; apps/README.md lists them.
const (
	exitOK        = 0
	exitFailure   = 1 // FAULT=crash, listen errors, shutdown timeout
	exitBadConfig = 2
)

func main() {
	os.Exit(run())
}

func run() int {
	cfg, err := config.FromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", server.Name, err)
		return exitBadConfig
	}
	hostname, _ := os.Hostname()
	logger := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: cfg.LogLevel})).
		With(slog.String("app", server.Name), slog.String("version", cfg.Version))
	if cfg.Fault == config.FaultCrash {
		logger.Error("FAULT=crash: exiting at start")
		return exitFailure
	}

	// An explicit GOMEMLIMIT wins; otherwise the GC works harder near the container's limit
	// instead of letting the kernel OOM-kill a pod that still serves requests.
	if os.Getenv("GOMEMLIMIT") == "" && cfg.MemoryLimit > 0 {
		debug.SetMemoryLimit(cfg.SoftMemoryLimit())
	}

	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	ln, err := net.Listen("tcp", net.JoinHostPort("0.0.0.0", strconv.Itoa(cfg.Port)))
	if err != nil {
		logger.Error("cannot listen", slog.String("error", err.Error()))
		return exitFailure
	}
	app := server.New(cfg, logger, hostname)
	served := make(chan error, 1)
	go func() { served <- app.Serve(ln) }()
	logger.Info("listening", slog.String("addr", ln.Addr().String()), slog.Bool("telemetry", cfg.Telemetry),
		slog.String("shutdown_mode", cfg.ShutdownMode), slog.String("fault", cfg.Fault),
		slog.Int64("gomemlimit_bytes", debug.SetMemoryLimit(-1)))

	var sig os.Signal
	select {
	case err := <-served:
		logger.Error("server stopped", slog.String("error", err.Error()))
		return exitFailure
	case sig = <-signals:
	}
	if cfg.ShutdownMode == config.ShutdownImmediate {
		logger.Warn("SHUTDOWN_MODE=immediate: dying on the signal without draining", slog.String("signal", sig.String()))
		dieBySignal(sig)
	}
	// The timeout counts from the signal and includes the delay, matching Kubernetes' grace period.
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	go func() {
		second := <-signals
		logger.Error("second signal: exiting at once", slog.String("signal", second.String()))
		os.Exit(128 + int(second.(syscall.Signal)))
	}()
	logger.Info("shutdown signal received", slog.String("signal", sig.String()),
		slog.Float64("timeout_seconds", cfg.ShutdownTimeout.Seconds()))
	if err := app.Drain(ctx, cfg.ShutdownDelay); err != nil {
		if errors.Is(err, server.ErrDrainTimeout) {
			return exitFailure
		}
		logger.Error("shutdown failed", slog.String("error", err.Error()))
		return exitFailure
	}
	if err := <-served; err != nil {
		logger.Error("server stopped with an error", slog.String("error", err.Error()))
		return exitFailure
	}
	logger.Info("shutdown complete")
	return exitOK
}

// dieBySignal restores the default action and re-raises sig, so the process ends exactly like an
// app without any signal handling (exit status 128+signal).
func dieBySignal(sig os.Signal) {
	signal.Reset()
	_ = syscall.Kill(os.Getpid(), sig.(syscall.Signal))
	time.Sleep(time.Second) // the signal is delivered asynchronously
	os.Exit(128 + int(sig.(syscall.Signal)))
}
