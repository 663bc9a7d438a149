package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sallyport/sallyport/internal/githubtest"
)

// serveSetup writes a data folder, the demo policy, a secret file and a
// configuration pointing GitHub at gh (nil: the real GitHub URLs), and
// returns the configuration's path.
func serveSetup(t *testing.T, gh *githubtest.Server, listen, extra string) string {
	t.Helper()
	dir := t.TempDir()
	runCLI(t, "ca", "init", "--data", filepath.Join(dir, "data"))
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), devPolicy, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "github-secret"), []byte("s3cret-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	urls := ""
	if gh != nil {
		urls = fmt.Sprintf("  web_url: %s\n  api_url: %s\n", gh.URL, gh.URL)
	}
	if !strings.Contains(extra, "bastion_listen") {
		// The bastion needs github.org_token; tests of the web side alone
		// run without it.
		extra += "bastion_listen: off\n"
	}
	cfg := fmt.Sprintf(`listen: %s
base_url: http://%s
data: data
policy: policy.yaml
github:
  client_id: test-app
  client_secret: {file: github-secret}
%s%s`, listen, listen, urls, extra)
	path := filepath.Join(dir, "sallyport.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestServeCheck(t *testing.T) {
	tests := []struct {
		name  string
		extra string
		edit  func(t *testing.T, cfg string)
		want  string
	}{
		{"ok/valid", "", nil, "ok (policy"},
		{"fail/unknown-setting", "standin: true\n", nil, `sallyport.yaml:8: unknown setting "standin"`},
		{"fail/dev-users", "dev: {users: [alice]}\n", nil, `unknown setting "dev"`},
		{"fail/bastion-without-org-token", "bastion_listen: 127.0.0.1:2222\n", nil, "needs github.org_token"},
		{"ok/bastion", "  org_token: {file: github-secret}\nbastion_listen: 127.0.0.1:2222\n", nil, "ok (policy"},
		{"fail/bastion-host-key-readable", "  org_token: {file: github-secret}\nbastion_listen: 127.0.0.1:2222\n", func(t *testing.T, cfg string) {
			if err := os.WriteFile(filepath.Join(filepath.Dir(cfg), "data", bastionHostKeyFile), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "bastion host key"},
		{"fail/bastion-bad-limit", "bastion_listen: 127.0.0.1:2222\nbastion_limits: {reauthorize_interval: 5m}\n", nil, "sallyport.yaml:9: bastion_limits.reauthorize_interval must be at most 1m"},
		{"fail/secret-readable-by-others", "", func(t *testing.T, cfg string) {
			os.Chmod(filepath.Join(filepath.Dir(cfg), "github-secret"), 0o644)
		}, "github.client_secret"},
		{"fail/bad-policy", "", func(t *testing.T, cfg string) {
			os.WriteFile(filepath.Join(filepath.Dir(cfg), "policy.yaml"), []byte("version: 1\nbogus: x\n"), 0o600)
		}, "policy.yaml:2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := serveSetup(t, nil, "127.0.0.1:8080", tc.extra)
			if tc.edit != nil {
				tc.edit(t, cfg)
			}
			out, errOut, err := tryCLI(t, "serve", "--config", cfg, "--check")
			got := out + errOut
			if err != nil {
				got += err.Error()
			}
			if strings.HasPrefix(tc.name, "ok/") != (err == nil) {
				t.Fatalf("err = %v\n%s", err, got)
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, got)
			}
			if strings.Contains(got, "s3cret-value") {
				t.Error("the client secret was printed")
			}
		})
	}
}

// TestServeSignIn runs `sallyport serve` in-process against a GitHub
// stand-in reached only through the configured URLs (as GitHub Enterprise
// would be), and signs in with `sallyport login`.
func TestServeSignIn(t *testing.T) {
	gh := githubtest.New(t)
	if _, err := gh.AddDemoUsers("example-oss"); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	if err := gh.RegisterOAuthApp(githubtest.OAuthApp{ClientID: "test-app", ClientSecret: "s3cret-value", CallbackURL: "http://" + listen + "/auth/github/callback"}); err != nil {
		t.Fatal(err)
	}
	cfg := serveSetup(t, gh, listen, "policy_poll: 1h\n")
	_, stderr := startServe(t, cfg, func(_, stderr string) {
		if strings.Contains(stderr, "s3cret-value") {
			t.Error("the client secret was logged")
		}
	})
	waitListening(t, listen, stderr)
	key := filepath.Join(t.TempDir(), "key")
	cmd := exec.Command(binary(t), "login", "--server", "http://"+listen, "--dev-user", "bob", "--key", key)
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "bob github:1002 serial=") {
		t.Fatalf("login: %v\n%s", err, out)
	}
	// A policy that fails its check is refused on SIGHUP; the server
	// keeps running with the old one. (policy_poll is 1h, so only the
	// signal can have caused the reload.)
	policy := filepath.Join(filepath.Dir(cfg), "policy.yaml")
	waitLog := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(stderr.String(), want) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if !strings.Contains(stderr.String(), want) {
			t.Fatalf("log lacks %q:\n%s", want, stderr.String())
		}
	}
	if err := os.WriteFile(policy, []byte("version: 1\nroles: nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitLog("policy refused")
	if !strings.Contains(stderr.String(), "cause=SIGHUP") {
		t.Errorf("the refusal does not name SIGHUP:\n%s", stderr.String())
	}
	out, err = exec.Command(binary(t), "login", "--server", "http://"+listen, "--dev-user", "alice", "--key", key+"2").CombinedOutput()
	if err != nil {
		t.Errorf("login after a refused policy: %v\n%s", err, out)
	}
	// A good policy granting bob less lifetime is loaded on the next SIGHUP.
	shorter := strings.Replace(string(devPolicy), "hosts: [\"label:web\"]\n    permissions: [pty]", "hosts: [\"label:web\"]\n    ttl: 1h\n    permissions: [pty]", 1)
	if err := os.WriteFile(policy, []byte(shorter), 0o600); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitLog("policy loaded")
	out, err = exec.Command(binary(t), "login", "--server", "http://"+listen, "--dev-user", "bob", "--key", key).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "(1h0m0s from now)") {
		t.Errorf("login after the reload: %v\n%s; want a 1h certificate", err, out)
	}
}

// lockedBuffer is a bytes.Buffer that a server goroutine may write while the
// test reads it.
// startServe runs "sallyport serve --config cfg" until the test ends; it
// must then stop cleanly within 30 seconds, after which each check reads
// what it printed.
func startServe(t *testing.T, cfg string, checks ...func(stdout, stderr string)) (stdout, stderr *lockedBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr = new(lockedBuffer), new(lockedBuffer)
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", cfg}, stdout, stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v\n%s", err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop within 30s")
		}
		for _, check := range checks {
			check(stdout.String(), stderr.String())
		}
	})
	return stdout, stderr
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
