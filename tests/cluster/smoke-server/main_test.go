package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRootReportsVersionAndServer(t *testing.T) {
	version = "v-test"
	recorder := httptest.NewRecorder()
	newHandler("pod-a").ServeHTTP(recorder, httptest.NewRequest(http.MethodGet, "/", nil))
	if recorder.Code != http.StatusOK || recorder.Body.String() != "smoke v-test\n" {
		t.Fatalf("GET / = %d %q", recorder.Code, recorder.Body.String())
	}
	if got := recorder.Header().Get("X-Served-By"); got != "pod-a" {
		t.Fatalf("X-Served-By = %q", got)
	}
}

func TestUnknownPathIsNotFound(t *testing.T) {
	recorder := httptest.NewRecorder()
	newHandler("pod-a").ServeHTTP(recorder, httptest.NewRequest(http.MethodGet, "/nope", nil))
	if recorder.Code != http.StatusNotFound {
		t.Fatalf("GET /nope = %d", recorder.Code)
	}
}
