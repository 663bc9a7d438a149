package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sallyport/sallyport/ca"
)

// TestServeTrust starts `serve` with sealed CA keys and with policies
// signed well enough or not: each refusal stops the start with a message
// saying why.
func TestServeTrust(t *testing.T) {
	tests := []struct {
		name  string
		extra string
		setup func(t *testing.T, w *gpgWorld, dir string)
		want  string
		is    error
	}{
		{name: "fail/sealed-keys", setup: func(t *testing.T, w *gpgWorld, dir string) {
			runCLI(t, "ca", "seal", "--data", filepath.Join(dir, "data"))
		}, want: "sallyport ca unseal", is: ca.ErrSealed},
		{name: "fail/policy-unsigned", extra: "trust: {require_policy_signatures: 2}\n",
			want: "no policy signed by 2 admins (trust.require_policy_signatures) to start with"},
		{name: "fail/policy-one-signature", extra: "trust: {require_policy_signatures: 2}\n", setup: func(t *testing.T, w *gpgWorld, dir string) {
			signPolicy(t, w, dir, w.root1, w.outsider)
		}, want: "signed by 1 distinct admins, 2 required"},
		{name: "fail/threshold-too-high-for-certified-admin", extra: "trust: {require_policy_signatures: 2, threshold: 3}\n", setup: func(t *testing.T, w *gpgWorld, dir string) {
			signPolicy(t, w, dir, w.root1, w.admin)
		}, want: "signed by 1 distinct admins, 2 required"},
		{name: "ok/policy-signed-by-two-admins", extra: "trust: {require_policy_signatures: 2}\n", setup: func(t *testing.T, w *gpgWorld, dir string) {
			signPolicy(t, w, dir, w.root2, w.admin)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			listen := loopbackAddr(t)
			cfg := serveSetup(t, nil, listen, "policy_poll: 1h\n"+tc.extra)
			dir := filepath.Dir(cfg)
			w := newGPGWorld(t, filepath.Join(dir, "data", "trust"))
			if tc.setup != nil {
				tc.setup(t, w, dir)
			}
			// serve --check applies the same rules as a start.
			if _, _, err := tryCLI(t, "serve", "--config", cfg, "--check"); (err == nil) != (tc.want == "") {
				t.Errorf("serve --check: %v; want failure %v", err, tc.want != "")
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var stdout, stderr lockedBuffer
			done := make(chan error, 1)
			go func() { done <- run(ctx, []string{"serve", "--config", cfg}, &stdout, &stderr) }()
			if tc.want != "" {
				select {
				case err := <-done:
					if err == nil || !strings.Contains(err.Error(), tc.want) {
						t.Fatalf("serve: %v; want an error with %q", err, tc.want)
					}
					if tc.is != nil && !errors.Is(err, tc.is) {
						t.Errorf("serve: %v; want errors.Is %v", err, tc.is)
					}
				case <-time.After(15 * time.Second):
					t.Fatal("serve started")
				}
				return
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				resp, err := http.Get("http://" + listen + "/healthz")
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode != 200 {
						t.Fatalf("healthz: %d", resp.StatusCode)
					}
					break
				}
				select {
				case err := <-done:
					t.Fatalf("serve stopped: %v\n%s", err, stderr.String())
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("serve did not listen: %s", stderr.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			if !strings.Contains(stderr.String(), "signatures=") || !strings.Contains(stderr.String(), "github:root2/2") {
				t.Errorf("the log does not say who signed the policy:\n%s", stderr.String())
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
			// No unsigned policy was ever in force: every load is a signed one.
			b, err := os.ReadFile(filepath.Join(dir, "data", auditFile))
			if err != nil {
				t.Fatal(err)
			}
			loads := 0
			for _, line := range strings.Split(string(b), "\n") {
				if !strings.Contains(line, `"type":"policy.load"`) {
					continue
				}
				loads++
				if !strings.Contains(line, "admin signatures required") {
					t.Errorf("a policy load without signatures was audited: %s", line)
				}
			}
			if loads == 0 {
				t.Error("no policy load was audited")
			}
		})
	}
}

// signPolicy writes detached signatures of the setup's policy by signers.
func signPolicy(t *testing.T, w *gpgWorld, dir string, signers ...string) {
	t.Helper()
	policy := filepath.Join(dir, "policy.yaml")
	for i, s := range signers {
		sig := w.gpg.DetachSign(s, policy)
		if err := os.WriteFile(policy+"."+string(rune('a'+i))+".asc", sig, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func loopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
