package main

import (
	"context"
	"encoding/json"
	"html/template"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sallyport/sallyport/web"
)

// TestLoginUnreachable checks that a login to a server that is not running
// says so in one line naming the server, without the request's URL, and
// leaves no new key behind.
func TestLoginUnreachable(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no browser is opened
	t.Setenv("SSH_AUTH_SOCK", "")
	base := "http://" + freeAddr(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"fail/dev-user", []string{"--dev-user", "alice"}},
		{"fail/browser", nil},
		{"fail/no-browser", []string{"--no-browser"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := filepath.Join(t.TempDir(), "key")
			_, _, err := tryCLI(t, append([]string{"login", "--server", base, "--key", key, "--timeout", "5s"}, tc.args...)...)
			if err == nil {
				t.Fatal("login succeeded")
			}
			msg := err.Error()
			want := "the Sallyport server at " + base + " is not reachable"
			if !strings.Contains(msg, want) || !strings.Contains(msg, "sallyport dev") {
				t.Errorf("error = %q; want %q and a hint to start it", msg, want)
			}
			for _, bad := range []string{"code_challenge", "/cli/", "/api/", "/healthz", "dial tcp", "\n"} {
				if strings.Contains(msg, bad) {
					t.Errorf("error = %q; want no %q", msg, bad)
				}
			}
			if _, err := os.Stat(key); err == nil {
				t.Error("the key was created though the server was never reached")
			}
		})
	}
	t.Run("fail/ssh-config", func(t *testing.T) {
		_, _, err := tryCLI(t, "ssh-config", "--server", base)
		if err == nil || !strings.Contains(err.Error(), "the Sallyport server at "+base+" is not reachable") || strings.Contains(err.Error(), "/api/") {
			t.Errorf("err = %v; want the server not reachable, without the request's URL", err)
		}
	})
}

// TestLoginDevUserRefused: a sign-in the server refuses is told in plain
// text, not with the HTML entities of the server's page.
func TestLoginDevUserRefused(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no browser is opened
	t.Setenv("SSH_AUTH_SOCK", "")
	// The server's error page (web/templates/error.html) for a suspended
	// account.
	page := template.Must(template.New("error").Parse(`<!doctype html><title>Sign-in refused</title><h1>Sign-in refused</h1>
<p class="error">{{.}}</p>
<p><a href="/">Back to the start page</a></p>`))
	const reason = `Sallyport access for your account is suspended: github:1001 is suspended since 2025-06-01T10:00:00Z by offline:root ("laptop stolen & <gone>"); an admin must lift the suspension.`
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/cli/login", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusForbidden)
		page.Execute(w, reason+"\x1b[2J")
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	key := filepath.Join(t.TempDir(), "key")
	_, _, err := tryCLI(t, "login", "--server", srv.URL, "--dev-user", "alice", "--key", key, "--timeout", "5s")
	if err == nil {
		t.Fatal("login succeeded")
	}
	want := "sign-in as alice did not complete (403 Forbidden): " + reason
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error = %q; want %q", err, want)
	}
	if strings.ContainsAny(err.Error(), "\x1b\n") {
		t.Errorf("error = %q; want one line without control characters", err)
	}
}

// TestLoginInterrupted checks that Ctrl-C while waiting for the sign-in
// says it was interrupted, not that it timed out, and that the timeout
// still says it timed out.
func TestLoginInterrupted(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no browser is opened
	t.Setenv("SSH_AUTH_SOCK", "")
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/api/v1/cli/device", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"device_code": "dc", "user_code": "ABCD-EFGH",
			"verification_uri": "http://" + r.Host + "/device", "expires_in": 600, "interval": 1})
	})
	mux.HandleFunc("/api/v1/cli/token", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(web.APIError{Error: "authorization_pending"})
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, tc := range []struct {
		name    string
		args    []string
		cancel  bool
		want    string
		notWant string
	}{
		{"fail/browser-interrupted", nil, true, "interrupted", "timed out"},
		{"fail/no-browser-interrupted", []string{"--no-browser"}, true, "interrupted", "timed out"},
		{"fail/browser-timeout", []string{"--timeout", "300ms"}, false, "timed out", "interrupted"},
		{"fail/no-browser-timeout", []string{"--no-browser", "--timeout", "300ms"}, false, "timed out", "interrupted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tc.cancel {
				time.AfterFunc(300*time.Millisecond, cancel)
			}
			key := filepath.Join(t.TempDir(), "key")
			var stdout, stderr lockedBuffer
			done := make(chan error, 1)
			go func() {
				done <- run(ctx, append([]string{"login", "--server", srv.URL, "--key", key}, tc.args...), &stdout, &stderr)
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("login did not return within 10s")
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), tc.notWant) {
				t.Errorf("err = %v; want %q, not %q", err, tc.want, tc.notWant)
			}
		})
	}
}
