package bastion

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/internal/sshdtest"
	"github.com/sallyport/sallyport/store"
)

// agentOnlyClient writes an ssh_config that authenticates with the keys
// of the ssh-agent at sock only, in the agent's order (oldest first), as a
// user's stock client does.
func agentOnlyClient(t *testing.T, e *env, sock string) string {
	t.Helper()
	dir := t.TempDir()
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte(sshdtest.CertAuthorityLine(e.keys.Host.PublicKey())), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "ssh_config")
	lines := []string{"Host *", "BatchMode yes", "IdentityAgent " + sock, "IdentityFile none",
		"UserKnownHostsFile " + kh, "GlobalKnownHostsFile none", "StrictHostKeyChecking yes",
		"UpdateHostKeys no", "CheckHostIP no", "ControlMaster no", "ControlPath none", "ConnectTimeout 10",
		"PasswordAuthentication no", "KbdInteractiveAuthentication no", "ForwardAgent no"}
	if err := os.WriteFile(cfg, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// agentAdd adds an identity file (and its certificate) to the agent at sock.
func agentAdd(t *testing.T, sock, file string) {
	t.Helper()
	add := exec.Command("ssh-add", file)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v %s", err, out)
	}
}

// TestAgentRefusedCertificateFirst: a real ssh-agent holding an unusable
// Sallyport certificate (expired, revoked, or without the login) ahead of
// a valid one, as after signing in again, logs in with the valid one
// through both target forms; the refused certificate is decided and
// audited once per connection, however often it is offered.
func TestAgentRefusedCertificateFirst(t *testing.T) {
	for _, tc := range []struct{ name, reason string }{
		{"expired", "has expired"},
		{"revoked", "has been revoked"},
		{"without-login", "is not valid for login"},
	} {
		t.Run("ok/"+tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			sock := startAgent(t)
			var old uint64
			switch tc.name {
			case "expired":
				k, c := e.issue(certOptions{ttl: time.Minute})
				agentAdd(t, sock, sshdtest.WriteIdentity(t, t.TempDir(), k, c))
				old = c.Serial
				e.offset.Store(int64(10 * time.Minute))
			case "revoked":
				k, c := e.issue(certOptions{})
				agentAdd(t, sock, sshdtest.WriteIdentity(t, t.TempDir(), k, c))
				old = c.Serial
				if err := e.store.Revoke(context.Background(), store.Revocation{Serial: c.Serial, Reason: "lost laptop", Actor: "github:1"}); err != nil {
					t.Fatal(err)
				}
			case "without-login":
				k, c := e.issue(certOptions{principals: []string{"deploy"}})
				agentAdd(t, sock, sshdtest.WriteIdentity(t, t.TempDir(), k, c))
				old = c.Serial
			}
			k, c := e.issue(certOptions{ttl: 8 * time.Hour})
			agentAdd(t, sock, sshdtest.WriteIdentity(t, t.TempDir(), k, c))
			cfg := agentOnlyClient(t, e, sock)
			for _, form := range []struct {
				name string
				args []string
			}{
				{"direct", []string{"-F", cfg, "-p", strconv.Itoa(e.port), "-l", e.login + "@web1", "127.0.0.1"}},
				{"jump", []string{"-F", cfg, "-J", "jumper@127.0.0.1:" + strconv.Itoa(e.port), "-l", e.login, "web1"}},
			} {
				start := time.Now()
				r := run(t, nil, "ssh", append(form.args, "--", "echo in")...)
				if r.code != 0 || r.stdout != "in\n" {
					t.Fatalf("%s: code %d stdout %q stderr %q; want the valid certificate used", form.name, r.code, r.stdout, r.stderr)
				}
				t.Logf("%s: %s", form.name, time.Since(start))
			}
			// The login refusals of the old certificate were audited,
			// each connection deciding it once at most.
			n := 0
			for _, ev := range e.audits(audit.TypeDeny) {
				if ev.Fields["serial"] == fmt.Sprint(old) {
					if !strings.Contains(ev.Reason, tc.reason) {
						t.Fatalf("deny %+v; want %q", ev, tc.reason)
					}
					n++
				}
			}
			if n == 0 || n > 3 {
				t.Fatalf("%d refusals of serial %d audited; want 1 to 3 (direct, jump, inner login)", n, old)
			}
		})
	}
}
