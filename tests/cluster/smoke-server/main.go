// Command smoke-server is the tiny HTTP server that scripts/test-cluster deploys to check the local
// cluster end to end: it is built FROM scratch, pushed to the local registry, and rolled from one
// version to another. It depends on nothing from apps/ so the cluster can be tested on its own.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// version is stamped at build time (-X main.version=...), so each version is a distinct image.
var version = "dev"

func newHandler(hostname string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Served-By", hostname)
		fmt.Fprintf(w, "smoke %s\n", version)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	return mux
}

func main() {
	hostname, _ := os.Hostname()
	addr := ":" + envOr("PORT", "8080")
	server := &http.Server{Addr: addr, Handler: newHandler(hostname), ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = server.Shutdown(shutdownCtx)
	}()
	log.Printf("smoke-server %s listening on %s", version, addr)
	if err := server.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}
