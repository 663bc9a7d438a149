package browsertest

import (
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
)

// TestCleanupKillsBrowser starts a browser in a subtest and checks that,
// once the subtest has ended, its process is gone and its temporary
// profile removed.
func TestCleanupKillsBrowser(t *testing.T) {
	var pid int
	var dir string
	t.Run("ok/browser-runs", func(t *testing.T) {
		b := New(t)
		pid, dir = b.pid, b.dataDir
		if pid == 0 || dir == "" {
			t.Fatalf("PID %d, profile %q; want both", pid, dir)
		}
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("browser process %d: %v", pid, err)
		}
		if _, err := os.Stat(dir); err != nil {
			t.Fatalf("profile: %v", err)
		}
		tab := b.NewTab(t)
		tab.Navigate("about:blank")
		if got := Eval[int](tab, "6 * 7"); got != 42 {
			t.Errorf("6 * 7 = %d in the browser; want 42", got)
		}
	})
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("browser process %d after the test: %v; want it gone", pid, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("profile %s after the test: %v; want it removed", dir, err)
	}
}

// TestTabsAreSeparateProfiles checks that a cookie set in one tab is not
// seen in another, and that WaitFor follows a page across a navigation.
func TestTabsAreSeparateProfiles(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/set":
			http.SetCookie(w, &http.Cookie{Name: "c", Value: "1", Path: "/"})
			http.Redirect(w, r, "/show", http.StatusFound)
		default:
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			c, err := r.Cookie("c")
			v := "none"
			if err == nil {
				v = c.Value
			}
			w.Write([]byte("<!doctype html><title>" + v + "</title><p id=v>" + v + "</p>"))
		}
	}))
	t.Cleanup(srv.Close)
	b := New(t)
	tests := []struct {
		name, path, want string
	}{
		{"ok/first-profile-sets", "/set", "1"},
		{"ok/second-profile-has-none", "/show", "none"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tab := b.NewTab(t)
			tab.Navigate(srv.URL + tc.path)
			tab.WaitFor(`location.pathname === "/show"`)
			if got := Eval[string](tab, `document.getElementById("v").textContent`); got != tc.want {
				t.Errorf("cookie seen by the server: %q; want %q", got, tc.want)
			}
			if got := len(tab.Cookies(srv.URL)); (got > 0) != (tc.want != "none") {
				t.Errorf("%d cookies in the browser", got)
			}
		})
	}
}
