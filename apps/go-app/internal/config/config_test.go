package config

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestDefaults(t *testing.T) {
	cfg, err := FromEnv(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Port: 8080, Version: "dev", SleepMax: 2 * time.Second, ShutdownDelay: 0,
		ShutdownTimeout: 90 * time.Second, Fault: FaultNone, ShutdownMode: ShutdownGraceful,
		Telemetry: true, LogLevel: slog.LevelInfo}
	if cfg != want {
		t.Fatalf("defaults = %+v, want %+v", cfg, want)
	}
}

func TestValidValues(t *testing.T) {
	cfg, err := FromEnv(env(map[string]string{
		"PORT": "9090", "APP_VERSION": "v1.2.3", "SLEEP_MAX_MS": "60000", "SHUTDOWN_DELAY_SECONDS": "5",
		"SHUTDOWN_TIMEOUT_SECONDS": "125", "FAULT": "unready", "SHUTDOWN_MODE": "immediate",
		"TELEMETRY": "off", "LOG_LEVEL": "debug", "MEMORY_LIMIT_BYTES": "67108864",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Port: 9090, Version: "v1.2.3", SleepMax: time.Minute, ShutdownDelay: 5 * time.Second,
		ShutdownTimeout: 125 * time.Second, Fault: FaultUnready, ShutdownMode: ShutdownImmediate,
		Telemetry: false, LogLevel: slog.LevelDebug, MemoryLimit: 64 << 20}
	if cfg != want {
		t.Fatalf("config = %+v, want %+v", cfg, want)
	}
	if got, want := cfg.SoftMemoryLimit(), int64(60397974); got != want {
		t.Fatalf("soft memory limit of 64 MiB = %d, want %d (90 %%)", got, want)
	}
}

func TestInvalidValues(t *testing.T) {
	cases := []struct{ name, value, wantInMessage string }{
		{"PORT", "abc", `invalid PORT "abc"`},
		{"PORT", "65536", "PORT"},
		{"PORT", "-1", "PORT"},
		{"SLEEP_MAX_MS", "60001", "SLEEP_MAX_MS"},
		{"SLEEP_MAX_MS", "1.5", "SLEEP_MAX_MS"},
		{"SHUTDOWN_DELAY_SECONDS", "x", "SHUTDOWN_DELAY_SECONDS"},
		{"SHUTDOWN_TIMEOUT_SECONDS", "0", "SHUTDOWN_TIMEOUT_SECONDS"},
		{"SHUTDOWN_DELAY_SECONDS", "90", "must be less than SHUTDOWN_TIMEOUT_SECONDS"},
		{"FAULT", "explode", "want one of crash, unready"},
		{"SHUTDOWN_MODE", "fast", "want one of graceful, immediate"},
		{"TELEMETRY", "maybe", "TELEMETRY"},
		{"LOG_LEVEL", "loud", "LOG_LEVEL"},
		{"MEMORY_LIMIT_BYTES", "64Mi", "MEMORY_LIMIT_BYTES"},
		{"MEMORY_LIMIT_BYTES", "4096", "at least 1 MiB"},
	}
	for _, tc := range cases {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			_, err := FromEnv(env(map[string]string{tc.name: tc.value}))
			if err == nil {
				t.Fatal("want an error")
			}
			if msg := err.Error(); !strings.Contains(msg, tc.wantInMessage) || strings.Contains(msg, "\n") {
				t.Fatalf("error %q: want one line containing %q", msg, tc.wantInMessage)
			}
		})
	}
}
