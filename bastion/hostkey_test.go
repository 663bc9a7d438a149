package bastion

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/internal/sshdtest"
	"github.com/sallyport/sallyport/policy"
)

// pinnedHost is a policy host with the host keys pinned for it.
type pinnedHost struct {
	name, addr string
	keys       []ssh.PublicKey
}

func authorizedKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// setHosts loads a policy with the given hosts, letting team infra in as
// the test's login on every one of them.
func (e *env) setHosts(hosts ...pinnedHost) {
	e.t.Helper()
	var b strings.Builder
	for _, h := range hosts {
		fmt.Fprintf(&b, "  - name: %s\n    address: %s\n", h.name, h.addr)
		if len(h.keys) > 0 {
			b.WriteString("    host_keys:\n")
			for _, k := range h.keys {
				fmt.Fprintf(&b, "      - %s pinned\n", authorizedKey(k))
			}
		}
	}
	src := fmt.Sprintf(`version: 1
github:
  org: example
defaults:
  ttl: 8h
  max_ttl: 24h
hosts:
%sroles:
  - name: infra
    members:
      teams: [infra]
    principals: [%s]
    hosts: ["*"]
    permissions: [pty, port-forwarding]
`, b.String(), e.login)
	p, err := policy.Parse("policy.yaml", []byte(src))
	if err != nil {
		e.t.Fatalf("policy: %v\n%s", err, src)
	}
	e.pol.Store(p)
}

func newPublicKey(t testing.TB, key any) ssh.PublicKey {
	t.Helper()
	pk, err := ssh.NewPublicKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

func newECDSAKey(t testing.TB) ssh.PublicKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return newPublicKey(t, &k.PublicKey)
}

// TestPinnedHostKey: a target without a host certificate is reached when,
// and only when, the policy in force pins the key it presents.
func TestPinnedHostKey(t *testing.T) {
	e := newEnv(t, envOptions{unsigned: true})
	c := e.client(e.issue(certOptions{}))
	_, other := newSigner(t)
	ecKey := newECDSAKey(t)
	target := e.target.HostKey
	forms := func(t *testing.T, check func(t *testing.T, r result)) {
		t.Helper()
		for _, form := range []struct {
			name string
			args []string
		}{{"direct", c.direct(e.login, "web1")}, {"jump", c.jump(e.login, "web1")}} {
			t.Run(form.name, func(t *testing.T) { check(t, c.ssh(nil, form.args, "echo ok")) })
		}
	}
	refused := func(message string) func(t *testing.T, r result) {
		return func(t *testing.T, r result) {
			if r.code != 255 || !strings.Contains(r.stderr, message) {
				t.Fatalf("got code %d stderr %q; want 255 and %q", r.code, r.stderr, message)
			}
		}
	}
	ok := func(t *testing.T, r result) {
		if r.code != 0 || r.stdout != "ok\n" {
			t.Fatalf("got code %d stdout %q stderr %q; want ok", r.code, r.stdout, r.stderr)
		}
	}
	for _, tc := range []struct {
		name  string
		pins  []ssh.PublicKey
		check func(t *testing.T, r result)
	}{
		{"fail/not-pinned", nil, refused("web1 offered no host certificate (it has no certificate from the host CA, and the policy pins no host key for it)")},
		{"ok/pinned", []ssh.PublicKey{target}, ok},
		{"ok/one-of-several", []ssh.PublicKey{other.PublicKey(), ecKey, target}, ok},
		{"fail/other-key-pinned", []ssh.PublicKey{other.PublicKey()}, refused(fmt.Sprintf(
			"web1 presented host key ssh-ed25519 %s and no host certificate, but the policy pins ssh-ed25519 %s for it: host key not trusted",
			ssh.FingerprintSHA256(target), ssh.FingerprintSHA256(other.PublicKey())))},
		{"fail/pinned-type-not-offered", []ssh.PublicKey{ecKey}, refused(fmt.Sprintf(
			"web1 offered neither a host certificate nor a key of the types pinned for it (ecdsa-sha2-nistp256 %s)", ssh.FingerprintSHA256(ecKey)))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The same bastion throughout: the policy in force when it
			// dials decides.
			e.setHosts(pinnedHost{"web1", e.target.Addr, tc.pins})
			forms(t, tc.check)
		})
	}
}

// TestPinnedRSAHostKey: a pinned RSA host key is verified with
// rsa-sha2-512, never SHA-1 ssh-rsa.
func TestPinnedRSAHostKey(t *testing.T) {
	e := newEnv(t, envOptions{})
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	web2 := sshdtest.Start(t, sshdtest.Config{TrustedUserCAKeys: []ssh.PublicKey{e.keys.Session.PublicKey()}, HostKey: rk})
	e.setHosts(pinnedHost{"web1", e.target.Addr, nil}, pinnedHost{"web2", web2.Addr, []ssh.PublicKey{web2.HostKey}})
	c := e.client(e.issue(certOptions{}))
	for _, args := range [][]string{c.direct(e.login, "web2"), c.jump(e.login, "web2")} {
		if r := c.ssh(nil, args, "echo ok"); r.code != 0 || r.stdout != "ok\n" {
			t.Fatalf("got code %d stdout %q stderr %q; want ok", r.code, r.stdout, r.stderr)
		}
	}
	log := web2.Log()
	if !strings.Contains(log, "kex: host key algorithm: rsa-sha2-512") || strings.Contains(log, "kex: host key algorithm: ssh-rsa") {
		t.Fatalf("the bastion did not verify the RSA host key with rsa-sha2-512; sshd log:\n%s", log)
	}
	// web1 still needs its host certificate.
	if r := c.ssh(nil, c.direct(e.login, "web1"), "echo ok"); r.code != 0 || r.stdout != "ok\n" {
		t.Fatalf("web1: got code %d stdout %q stderr %q; want ok", r.code, r.stdout, r.stderr)
	}
}

// TestPinnedHostWithCertificate: a pinned host that presents a host
// certificate is checked on the certificate path: accepted from the host
// CA whatever is pinned, refused from another CA even though it certifies
// the pinned key.
func TestPinnedHostWithCertificate(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(e.issue(certOptions{}))
	_, unrelated := newSigner(t)
	for _, tc := range []struct {
		name string
		pins []ssh.PublicKey
	}{
		{"ok/own-key-pinned", []ssh.PublicKey{e.target.HostKey}},
		{"ok/other-key-pinned", []ssh.PublicKey{unrelated.PublicKey()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.setHosts(pinnedHost{"web1", e.target.Addr, tc.pins})
			if r := c.ssh(nil, c.direct(e.login, "web1"), "echo ok"); r.code != 0 || r.stdout != "ok\n" {
				t.Fatalf("got code %d stdout %q stderr %q; want ok", r.code, r.stdout, r.stderr)
			}
		})
	}
	// A target still presenting a certificate from another CA: its pinned
	// key counts, whatever certifies it; an unpinned key does not.
	hk, hs := newSigner(t)
	_, otherCA := newSigner(t)
	cert := &ssh.Certificate{Key: hs.PublicKey(), CertType: ssh.HostCert, KeyId: "web3", ValidPrincipals: []string{"web3", "127.0.0.1"}, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, otherCA); err != nil {
		t.Fatal(err)
	}
	web3 := sshdtest.Start(t, sshdtest.Config{TrustedUserCAKeys: []ssh.PublicKey{e.keys.Session.PublicKey()}, HostKey: hk, HostCertificate: cert})
	t.Run("ok/pinned-key-in-certificate-from-another-ca", func(t *testing.T) {
		e.setHosts(pinnedHost{"web1", e.target.Addr, nil}, pinnedHost{"web3", web3.Addr, []ssh.PublicKey{hs.PublicKey()}})
		if r := c.ssh(nil, c.direct(e.login, "web3"), "echo ok"); r.code != 0 || r.stdout != "ok\n" {
			t.Fatalf("got code %d stdout %q stderr %q; want ok", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("fail/other-key-in-certificate-from-another-ca", func(t *testing.T) {
		e.setHosts(pinnedHost{"web1", e.target.Addr, nil}, pinnedHost{"web3", web3.Addr, []ssh.PublicKey{unrelated.PublicKey()}})
		r := c.ssh(nil, c.direct(e.login, "web3"), "echo ok")
		if want := "web3 presented a host certificate not signed by the host CA, for key ssh-ed25519 " + ssh.FingerprintSHA256(hs.PublicKey()); r.code != 255 || !strings.Contains(r.stderr, want) {
			t.Fatalf("got code %d stderr %q; want 255 and %q", r.code, r.stderr, want)
		}
	})
}

func TestHostKeyAlgorithms(t *testing.T) {
	_, ed := newSigner(t)
	ec := newECDSAKey(t)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey := newPublicKey(t, &rk.PublicKey)
	tests := []struct {
		name string
		pins []ssh.PublicKey
		want []string // after the certificate algorithms
	}{
		{"ok/none", nil, nil},
		{"ok/ed25519", []ssh.PublicKey{ed.PublicKey()}, []string{ssh.KeyAlgoED25519}},
		{"ok/rsa-sha2-only", []ssh.PublicKey{rsaKey}, []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}},
		{"ok/policy-order-once-each", []ssh.PublicKey{ec, rsaKey, ed.PublicKey(), ec}, []string{ssh.KeyAlgoECDSA256, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoED25519}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var pins []policy.HostKey
			for _, k := range tc.pins {
				hk, err := policy.ParseHostKey(authorizedKey(k))
				if err != nil {
					t.Fatal(err)
				}
				pins = append(pins, hk)
			}
			got := hostKeyAlgorithms(pins)
			want := append(slices.Clone(hostCertAlgorithms), tc.want...)
			if !slices.Equal(got, want) {
				t.Errorf("got %q; want %q", got, want)
			}
			if slices.Contains(got, ssh.KeyAlgoRSA) {
				t.Errorf("got %q; want no SHA-1 ssh-rsa", got)
			}
		})
	}
	if got := hostKeyAlgorithms([]policy.HostKey{mustHostKey(t, ed.PublicKey())}); &got[0] == &hostCertAlgorithms[0] {
		t.Error("hostKeyAlgorithms appended to hostCertAlgorithms itself")
	}
}

func mustHostKey(t testing.TB, k ssh.PublicKey) policy.HostKey {
	t.Helper()
	hk, err := policy.ParseHostKey(authorizedKey(k))
	if err != nil {
		t.Fatal(err)
	}
	return hk
}

// TestCheckTargetHostKey covers the decision in process, including what
// real targets are not easily made to present.
func TestCheckTargetHostKey(t *testing.T) {
	_, hostCA := newSigner(t)
	_, otherCA := newSigner(t)
	_, key := newSigner(t)
	_, other := newSigner(t)
	s := &Server{hostCA: hostCA.PublicKey()}
	cert := func(signer ssh.Signer, typ uint32, names ...string) *ssh.Certificate {
		c := &ssh.Certificate{Key: key.PublicKey(), CertType: typ, KeyId: "web1", ValidPrincipals: names,
			ValidAfter: uint64(time.Now().Add(-time.Minute).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix())}
		if err := c.SignCert(rand.Reader, signer); err != nil {
			t.Fatal(err)
		}
		return c
	}
	pinned := []policy.HostKey{mustHostKey(t, other.PublicKey()), mustHostKey(t, key.PublicKey())}
	fp := ssh.FingerprintSHA256
	tests := []struct {
		name    string
		pins    []policy.HostKey
		key     ssh.PublicKey
		message string // empty when accepted
	}{
		{"ok/pinned-plain-key", pinned, key.PublicKey(), ""},
		{"ok/host-ca-certificate", nil, cert(hostCA, ssh.HostCert, "web1"), ""},
		{"ok/host-ca-certificate-pinned-host", pinned[:1], cert(hostCA, ssh.HostCert, "web1"), ""},
		{"ok/host-ca-certificate-for-address", nil, cert(hostCA, ssh.HostCert, "10.0.1.11"), ""},
		{"fail/plain-key-no-pins", nil, key.PublicKey(), "web1 presented a plain host key; the bastion accepts only host certificates from the host CA: host key not trusted"},
		{"fail/plain-key-not-pinned", pinned[:1], key.PublicKey(), fmt.Sprintf("web1 presented host key ssh-ed25519 %s and no host certificate, but the policy pins ssh-ed25519 %s for it: host key not trusted", fp(key.PublicKey()), fp(other.PublicKey()))},
		{"fail/plain-key-not-among-several", []policy.HostKey{pinned[0], pinned[0]}, key.PublicKey(), fmt.Sprintf("but the policy pins ssh-ed25519 %[1]s or ssh-ed25519 %[1]s for it", fp(other.PublicKey()))},
		{"ok/pinned-key-certified-by-other-ca", pinned, cert(otherCA, ssh.HostCert, "web1"), ""},
		{"ok/pinned-key-in-host-ca-certificate-for-other-names", pinned, cert(hostCA, ssh.HostCert, "web2"), ""},
		{"fail/unpinned-key-certified-by-other-ca", pinned[:1], cert(otherCA, ssh.HostCert, "web1"), fmt.Sprintf("web1 presented a host certificate not signed by the host CA, for key ssh-ed25519 %s, but the policy pins ssh-ed25519 %s for it", fp(key.PublicKey()), fp(other.PublicKey()))},
		{"fail/other-ca-no-pins", nil, cert(otherCA, ssh.HostCert, "web1"), "web1 presented a host certificate not signed by the host CA: host key not trusted"},
		{"fail/host-ca-certificate-other-names", pinned[:1], cert(hostCA, ssh.HostCert, "web2"), "web1 presented a host certificate for other names"},
		{"fail/user-certificate", pinned[:1], cert(hostCA, ssh.UserCert, "web1"), "web1 presented a user certificate as its host key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.checkTargetHostKey("web1", "10.0.1.11:22", tc.pins, tc.key)
			if tc.message == "" {
				if err != nil {
					t.Fatalf("got %v; want accepted", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("got %v; want %q", err, tc.message)
			}
			if userError(err) != err.Error() || strings.Contains(err.Error(), "\n") {
				t.Errorf("got user message %q; want the one-line reason %q", userError(err), err)
			}
		})
	}
}

// TestPinnedHostKeysFollowPolicy: the keys come from the policy in force,
// from the same host entry as the address being dialled.
func TestPinnedHostKeysFollowPolicy(t *testing.T) {
	_, key := newSigner(t)
	var current *policy.Policy
	s := &Server{Policy: func() *policy.Policy { return current }}
	if got := s.pinnedHostKeys("web1", "10.0.1.11:22"); got != nil {
		t.Fatalf("no policy: got %v; want nil", got)
	}
	load := func(addr string, pin bool) {
		t.Helper()
		src := "version: 1\ngithub: {org: example}\ndefaults: {ttl: 8h, max_ttl: 24h}\nhosts:\n  - name: web1\n    address: " + addr + "\n"
		if pin {
			src += "    host_keys: [" + authorizedKey(key.PublicKey()) + "]\n"
		}
		src += "roles: []\n"
		p, err := policy.Parse("policy.yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		current = p
	}
	for _, tc := range []struct {
		name       string
		addr       string
		pin        bool
		host, dial string
		want       int
	}{
		{"ok/pinned", "10.0.1.11:22", true, "web1", "10.0.1.11:22", 1},
		{"ok/not-pinned", "10.0.1.11:22", false, "web1", "10.0.1.11:22", 0},
		{"ok/other-host", "10.0.1.11:22", true, "web2", "10.0.1.11:22", 0},
		{"ok/moved-since-the-decision", "10.0.1.99:22", true, "web1", "10.0.1.11:22", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			load(tc.addr, tc.pin)
			got := s.pinnedHostKeys(tc.host, tc.dial)
			if len(got) != tc.want {
				t.Fatalf("got %d keys; want %d", len(got), tc.want)
			}
			if tc.want == 1 && !got[0].Equal(mustHostKey(t, key.PublicKey())) {
				t.Fatalf("got %s; want %s", got[0], ssh.FingerprintSHA256(key.PublicKey()))
			}
		})
	}
}
