// Package config reads the app contract's environment variables (see apps/README.md).
package config

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Limits shared with node-app; apps/README.md documents them.
const (
	DefaultPort            = 8080
	DefaultSleepMax        = 2000 * time.Millisecond
	DefaultShutdownTimeout = 90 * time.Second
	MaxSleep               = 60000 * time.Millisecond
)

// Fault-injection seams for the broken-release and control tests.
const (
	FaultNone    = ""
	FaultCrash   = "crash"   // log and exit 1 at start
	FaultUnready = "unready" // /readyz always answers 503
)

// Shutdown modes: graceful drains; immediate is the unsafe control that dies on the first signal.
const (
	ShutdownGraceful  = "graceful"
	ShutdownImmediate = "immediate"
)

// Config is the validated environment of one app process.
type Config struct {
	Port            int // 0 picks a free port (tests); the bound address is logged
	Version         string
	SleepMax        time.Duration
	ShutdownDelay   time.Duration
	ShutdownTimeout time.Duration
	Fault           string
	ShutdownMode    string
	Telemetry       bool // TELEMETRY=off skips request logs and request metrics (benchmarks only)
	LogLevel        slog.Level
	// MemoryLimit is the container's memory limit in bytes (MEMORY_LIMIT_BYTES, from the Downward
	// API); 0 when unknown.
	MemoryLimit int64
}

// SoftMemoryLimit is the Go runtime's memory limit (GOMEMLIMIT) for a container limit: 90 %,
// leaving the headroom the Go GC guide advises for memory the runtime does not count. 0 = none.
func (c Config) SoftMemoryLimit() int64 {
	return c.MemoryLimit / 10 * 9
}

// FromEnv builds a Config from getenv (os.Getenv in production). Errors are one line each, naming
// the variable, the bad value and what is allowed.
func FromEnv(getenv func(string) string) (Config, error) {
	cfg := Config{Version: "dev", ShutdownMode: ShutdownGraceful, Telemetry: true, LogLevel: slog.LevelInfo}
	var err error
	if cfg.Port, err = intVar(getenv, "PORT", DefaultPort, 0, 65535); err != nil {
		return Config{}, err
	}
	if v := getenv("APP_VERSION"); v != "" {
		cfg.Version = v
	}
	sleepMaxMS, err := intVar(getenv, "SLEEP_MAX_MS", int(DefaultSleepMax/time.Millisecond), 0, int(MaxSleep/time.Millisecond))
	if err != nil {
		return Config{}, err
	}
	cfg.SleepMax = time.Duration(sleepMaxMS) * time.Millisecond
	delay, err := intVar(getenv, "SHUTDOWN_DELAY_SECONDS", 0, 0, 3600)
	if err != nil {
		return Config{}, err
	}
	cfg.ShutdownDelay = time.Duration(delay) * time.Second
	timeout, err := intVar(getenv, "SHUTDOWN_TIMEOUT_SECONDS", int(DefaultShutdownTimeout/time.Second), 1, 3600)
	if err != nil {
		return Config{}, err
	}
	cfg.ShutdownTimeout = time.Duration(timeout) * time.Second
	if cfg.ShutdownDelay >= cfg.ShutdownTimeout {
		return Config{}, fmt.Errorf("SHUTDOWN_DELAY_SECONDS (%d) must be less than SHUTDOWN_TIMEOUT_SECONDS (%d)", delay, timeout)
	}
	if cfg.Fault, err = enumVar(getenv, "FAULT", FaultNone, FaultNone, FaultCrash, FaultUnready); err != nil {
		return Config{}, err
	}
	if cfg.ShutdownMode, err = enumVar(getenv, "SHUTDOWN_MODE", ShutdownGraceful, ShutdownGraceful, ShutdownImmediate); err != nil {
		return Config{}, err
	}
	telemetry, err := enumVar(getenv, "TELEMETRY", "on", "on", "off")
	if err != nil {
		return Config{}, err
	}
	cfg.Telemetry = telemetry == "on"
	level, err := enumVar(getenv, "LOG_LEVEL", "info", "debug", "info", "warn", "error")
	if err != nil {
		return Config{}, err
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(level)); err != nil {
		return Config{}, fmt.Errorf("invalid LOG_LEVEL %q: %w", level, err)
	}
	if raw := strings.TrimSpace(getenv("MEMORY_LIMIT_BYTES")); raw != "" {
		limit, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || limit < 1<<20 {
			return Config{}, fmt.Errorf("invalid MEMORY_LIMIT_BYTES %q: want a byte count of at least 1 MiB", raw)
		}
		cfg.MemoryLimit = limit
	}
	return cfg, nil
}

func intVar(getenv func(string) string, name string, def, lo, hi int) (int, error) {
	raw := getenv(name)
	if raw == "" {
		return def, nil
	}
	v, err := strconv.Atoi(strings.TrimSpace(raw))
	if err != nil || v < lo || v > hi {
		return 0, fmt.Errorf("invalid %s %q: want an integer from %d to %d", name, raw, lo, hi)
	}
	return v, nil
}

func enumVar(getenv func(string) string, name, def string, allowed ...string) (string, error) {
	raw := getenv(name)
	if raw == "" {
		return def, nil
	}
	for _, a := range allowed {
		if raw == a {
			return raw, nil
		}
	}
	return "", fmt.Errorf("invalid %s %q: want one of %s", name, raw, strings.Join(nonEmpty(allowed), ", "))
}

func nonEmpty(values []string) []string {
	out := make([]string, 0, len(values))
	for _, v := range values {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}
