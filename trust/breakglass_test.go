package trust

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/store"
)

func newSSHKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newAuthority(t *testing.T) (*ca.Authority, *store.SQLite) {
	t.Helper()
	dir := t.TempDir()
	if _, err := ca.GenerateKeys(dir, ca.KeyEd25519, nil); err != nil {
		t.Fatal(err)
	}
	keys, err := ca.LoadKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), filepath.Join(dir, "sallyport.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	a, err := ca.New(keys, st)
	if err != nil {
		t.Fatal(err)
	}
	return a, st
}

func TestBreakGlass(t *testing.T) {
	w := newWorld(t)
	g := w.gpg
	authority, st := newAuthority(t)
	key := newSSHKey(t)
	now := time.Now()

	request := func(t *testing.T, created time.Time, mutate func(string) string) string {
		t.Helper()
		r, err := NewRequest("root", "web1", "GitHub is down; DNS must be fixed", 30*time.Minute, key, created)
		if err != nil {
			t.Fatal(err)
		}
		text := string(r.Marshal())
		if mutate != nil {
			text = mutate(text)
		}
		return w.file(t, "request.txt", []byte(text))
	}
	sign := func(t *testing.T, path, signer string, extra ...string) []byte {
		t.Helper()
		return g.ClearSign(signer, path, extra...)
	}
	fresh := func(t *testing.T) []byte { return sign(t, request(t, now, nil), w.admin) }
	replayed := fresh(t)
	tamper := func(b []byte, old, new string) []byte {
		if !strings.Contains(string(b), old) {
			t.Fatalf("%q not in %s", old, b)
		}
		return []byte(strings.Replace(string(b), old, new, 1))
	}

	tests := []struct {
		name   string
		signed func(t *testing.T) []byte
		opts   BreakGlassOptions
		at     time.Duration // after now
		err    error
		reason string
	}{
		{name: "ok/accepted", signed: func(t *testing.T) []byte { return replayed }},
		{name: "fail/replayed", signed: func(t *testing.T) []byte { return replayed }, err: store.ErrRequestUsed},
		{name: "ok/fourteen-minutes-old", signed: fresh, at: 14 * time.Minute},
		{name: "fail/stale", signed: fresh, at: 16 * time.Minute, reason: "old; at most 15m0s"},
		{name: "fail/created-in-future", signed: func(t *testing.T) []byte { return sign(t, request(t, now.Add(10*time.Minute), nil), w.admin) }, reason: "in the future"},
		{name: "fail/non-admin", signed: func(t *testing.T) []byte { return sign(t, request(t, now, nil), w.outsider) }, reason: "not an admin"},
		{name: "fail/tampered-principal", signed: func(t *testing.T) []byte { return tamper(fresh(t), "principal: root", "principal: admin") }, reason: "bad signature"},
		{name: "fail/tampered-host", signed: func(t *testing.T) []byte { return tamper(fresh(t), "host: web1", "host: db1") }, reason: "bad signature"},
		{name: "fail/injected-armor-header", signed: func(t *testing.T) []byte {
			return tamper(fresh(t), "Hash: SHA256\n", "Hash: SHA256\nNote: approved by everyone\n")
		}, reason: "only \"Hash:\" headers"},
		{name: "fail/injected-signature-header", signed: func(t *testing.T) []byte {
			return tamper(fresh(t), "-----BEGIN PGP SIGNATURE-----\n", "-----BEGIN PGP SIGNATURE-----\nprincipal: admin\n")
		}, reason: "signature armor header"},
		{name: "fail/text-before", signed: func(t *testing.T) []byte { return append([]byte("principal: admin\n"), fresh(t)...) }, reason: "nothing may come before"},
		{name: "fail/text-after", signed: func(t *testing.T) []byte { return append(fresh(t), "principal: admin\n"...) }, reason: "text after the signature"},
		{name: "fail/other-purpose", signed: func(t *testing.T) []byte {
			return sign(t, request(t, now, func(s string) string {
				return strings.Replace(s, BreakGlassPurpose, "sallyport-policy-v1", 1)
			}), w.admin)
		}, reason: "request purpose"},
		{name: "fail/other-document", signed: func(t *testing.T) []byte {
			return sign(t, w.file(t, "policy.yaml", []byte("org: example\n")), w.admin)
		}, reason: "want exactly 8"},
		{name: "fail/ttl-over-an-hour", signed: func(t *testing.T) []byte {
			return sign(t, request(t, now, func(s string) string { return strings.Replace(s, "ttl: 30m0s", "ttl: 2h0m0s", 1) }), w.admin)
		}, reason: "at most 1h0m0s"},
		{name: "fail/detached-not-clear-signed", signed: func(t *testing.T) []byte {
			return g.DetachSign(w.admin, request(t, now, nil))
		}, reason: "does not start with"},
		{name: "fail/inline-signed", signed: func(t *testing.T) []byte {
			return g.Run("--local-user", w.admin, "--armor", "--output", "-", "--sign", request(t, now, nil))
		}, reason: "does not start with"},
		{name: "ok/two-signers", signed: func(t *testing.T) []byte {
			return sign(t, request(t, now, nil), w.admin, "--local-user", w.root1)
		}, opts: BreakGlassOptions{Signers: 2}},
		{name: "fail/two-signers-one-given", signed: fresh, opts: BreakGlassOptions{Signers: 2}, reason: "signed by 1 distinct admins, 2 required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			signed := tc.signed(t)
			bg := &BreakGlass{
				Admins: w.admins(t, now.Add(time.Second+tc.at)), Authority: authority, Ledger: st, Audit: st,
				Options: tc.opts, Actor: "offline:test",
			}
			cert, vr, err := bg.Issue(context.Background(), signed)
			if tc.err == nil && tc.reason == "" {
				if err != nil {
					t.Fatal(err)
				}
				checkBreakGlassCert(t, authority, cert, key, vr)
				return
			}
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("err = %v; want ErrRefused", err)
			}
			if tc.err != nil && !errors.Is(err, tc.err) {
				t.Errorf("err = %v; want %v", err, tc.err)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("err = %v; want it to contain %q", err, tc.reason)
			}
			if cert != nil {
				t.Errorf("refused, yet a certificate was returned")
			}
		})
	}

	evs, err := st.AuditEvents(context.Background(), store.AuditQuery{Type: AuditTypeBreakGlass})
	if err != nil {
		t.Fatal(err)
	}
	var ok, denied int
	for _, e := range evs {
		switch e.Outcome {
		case audit.OutcomeOK:
			ok++
		case audit.OutcomeDenied:
			denied++
		}
	}
	if ok != 3 || denied != len(tests)-3 {
		t.Errorf("audited %d accepted and %d refused; want 3 and %d", ok, denied, len(tests)-3)
	}
}

func checkBreakGlassCert(t *testing.T, a *ca.Authority, cert *ssh.Certificate, key ssh.PublicKey, vr VerifiedRequest) {
	t.Helper()
	if cert.CertType != ssh.UserCert || len(cert.ValidPrincipals) != 1 || cert.ValidPrincipals[0] != "root" {
		t.Errorf("certificate type %d principals %v; want user, [root]", cert.CertType, cert.ValidPrincipals)
	}
	if life := time.Duration(cert.ValidBefore-cert.ValidAfter) * time.Second; life > MaxBreakGlassTTL+10*time.Minute {
		t.Errorf("certificate valid for %s", life)
	}
	if time.Until(time.Unix(int64(cert.ValidBefore), 0)) > MaxBreakGlassTTL {
		t.Errorf("certificate valid until %s: more than an hour", time.Unix(int64(cert.ValidBefore), 0))
	}
	if !strings.HasPrefix(cert.KeyId, "breakglass:"+vr.ID+" host=web1 by=github:") {
		t.Errorf("key ID %q", cert.KeyId)
	}
	if string(cert.Key.Marshal()) != string(key.Marshal()) {
		t.Errorf("certificate for another key")
	}
	parsed, _, _, _, err := ssh.ParseAuthorizedKey(ssh.MarshalAuthorizedKey(cert))
	if err != nil {
		t.Fatal(err)
	}
	checker := ssh.CertChecker{IsUserAuthority: func(k ssh.PublicKey) bool {
		return string(k.Marshal()) == string(a.PublicKey(ca.KindUser).Marshal())
	}}
	if err := checker.CheckCert("root", parsed.(*ssh.Certificate)); err != nil {
		t.Errorf("CertChecker: %v", err)
	}
	if _, ok := cert.Extensions["permit-pty"]; !ok || len(cert.Extensions) != 1 {
		t.Errorf("extensions %v; want permit-pty only", cert.Extensions)
	}
}
