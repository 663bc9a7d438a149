package bastion

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/store"
)

// targetHostCert returns the host certificate the target presents.
func (e *env) targetHostCert() *ssh.Certificate {
	e.t.Helper()
	var hc *ssh.Certificate
	stop := errors.New("got it")
	_, err := ssh.Dial("tcp", e.target.Addr, &ssh.ClientConfig{
		User: "x", HostKeyAlgorithms: hostCertAlgorithms,
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error { hc, _ = k.(*ssh.Certificate); return stop },
	})
	if hc == nil {
		e.t.Fatalf("the target presented no host certificate: %v", err)
	}
	return hc
}

// TestRevokedTargetHostKey: a target whose host certificate (by serial)
// or host key (certified or pinned) has been revoked is refused, with the
// reason, and audited as a target host key failure.
func TestRevokedTargetHostKey(t *testing.T) {
	for _, tc := range []struct {
		name     string
		unsigned bool // the target has no host certificate; its key is pinned
		revoke   func(hc *ssh.Certificate, key ssh.PublicKey) store.Revocation
		want     func(hc *ssh.Certificate, key ssh.PublicKey) string
	}{
		{"fail/certificate-serial", false,
			func(hc *ssh.Certificate, _ ssh.PublicKey) store.Revocation {
				return store.Revocation{Serial: hc.Serial}
			},
			func(hc *ssh.Certificate, _ ssh.PublicKey) string {
				return fmt.Sprintf("web1 presented host certificate serial %d, which has been revoked (\"host key stolen\")", hc.Serial)
			}},
		{"fail/certified-key", false,
			func(_ *ssh.Certificate, key ssh.PublicKey) store.Revocation { return store.Revocation{Key: key} },
			func(_ *ssh.Certificate, key ssh.PublicKey) string {
				return fmt.Sprintf("web1 presented host key ssh-ed25519 %s, which has been revoked (\"host key stolen\")", ssh.FingerprintSHA256(key))
			}},
		{"fail/pinned-key", true,
			func(_ *ssh.Certificate, key ssh.PublicKey) store.Revocation { return store.Revocation{Key: key} },
			func(_ *ssh.Certificate, key ssh.PublicKey) string {
				return fmt.Sprintf("web1 presented host key ssh-ed25519 %s, which has been revoked (\"host key stolen\")", ssh.FingerprintSHA256(key))
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{unsigned: tc.unsigned})
			var hc *ssh.Certificate
			if tc.unsigned {
				e.setHosts(pinnedHost{"web1", e.target.Addr, []ssh.PublicKey{e.target.HostKey}})
			} else {
				hc = e.targetHostCert()
			}
			c := e.client(e.issue(certOptions{}))
			forms := [][]string{c.direct(e.login, "web1"), c.jump(e.login, "web1")}
			for _, args := range forms {
				if r := c.ssh(nil, args, "echo reached"); r.code != 0 || r.stdout != "reached\n" {
					t.Fatalf("before the revocation: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
				}
			}
			rev := tc.revoke(hc, e.target.HostKey)
			rev.Reason, rev.Actor = "host key stolen", "github:1"
			if err := e.store.Revoke(context.Background(), rev); err != nil {
				t.Fatal(err)
			}
			want := tc.want(hc, e.target.HostKey)
			for _, args := range forms {
				r := c.ssh(nil, args, "echo reached")
				if r.code != 255 || r.stdout != "" || !strings.Contains(r.stderr, want) {
					t.Fatalf("got code %d stdout %q stderr %q; want refused with %q", r.code, r.stdout, r.stderr, want)
				}
			}
			n := 0
			for _, ev := range e.audits(audit.TypeDeny) {
				if ev.Outcome == audit.OutcomeDenied && ev.Subject == e.login+"@web1" && ev.Reason == want+": host key not trusted" {
					n++
				}
			}
			if n != len(forms) {
				t.Fatalf("%d target host key refusals audited; want %d", n, len(forms))
			}
		})
	}
}
