package bastion

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/internal/sshdtest"
	"github.com/sallyport/sallyport/store"
)

// keygenCert signs a new key with the CA of kind k using ssh-keygen and the
// given extra options, records the certificate in the store for
// github:1001 (so that only the property under test can refuse it), and
// returns the key and certificate.
func (e *env) keygenCert(k ca.Kind, record bool, args ...string) (ed25519.PrivateKey, *ssh.Certificate) {
	e.t.Helper()
	dir := e.t.TempDir()
	caPath := filepath.Join(dir, "ca")
	sshdtestWriteKey(e.t, caPath, e.caKeys[k])
	key, _ := newSigner(e.t)
	id := sshdtest.WriteIdentity(e.t, dir, key, nil)
	serial, err := e.store.NextSerial(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	full := append([]string{"-q", "-s", caPath, "-I", "alice github:1001 serial=" + strconv.FormatUint(serial, 10), "-z", strconv.FormatUint(serial, 10), "-V", "-5m:+1h"}, args...)
	full = append(full, id+".pub")
	if r := run(e.t, nil, "ssh-keygen", full...); r.code != 0 {
		e.t.Fatalf("ssh-keygen %v: %s", full, r.stderr)
	}
	b, err := os.ReadFile(id + "-cert.pub")
	if err != nil {
		e.t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		e.t.Fatal(err)
	}
	cert := pub.(*ssh.Certificate)
	if record {
		if err := e.store.RecordIssued(context.Background(), cert, "github:1001"); err != nil {
			e.t.Fatal(err)
		}
	}
	return key, cert
}

func sshdtestWriteKey(t testing.TB, path string, k ed25519.PrivateKey) {
	t.Helper()
	p := sshdtest.WriteIdentity(t, filepath.Dir(path), k, nil)
	if err := os.Rename(p, path); err != nil {
		t.Fatal(err)
	}
}

// lastDeny returns the reason of the newest deny event, or "".
func (e *env) lastDeny() string {
	evs := e.audits(audit.TypeDeny)
	if len(evs) == 0 {
		return ""
	}
	return evs[len(evs)-1].Reason
}

// TestRefusals runs the real client into each refusal and checks the one
// line the user sees and the audit record.
func TestRefusals(t *testing.T) {
	e := newEnv(t, envOptions{extraHost: "  - name: web9\n    address: 127.0.0.1:1\n", policy: `
  - name: infra
    members:
      teams: [infra]
    principals: [%[1]s]
    hosts: [web1, web9]
    permissions: [pty]
`})
	_, other := newSigner(t)
	key, cert := e.issue(certOptions{principals: []string{e.login, "deploy"}})
	c := e.client(key, cert)

	// A certificate from another CA.
	foreignKey, _ := newSigner(t)
	fs, _ := ssh.NewSignerFromKey(foreignKey)
	fc := &ssh.Certificate{Key: fs.PublicKey(), Serial: 99, CertType: ssh.UserCert, KeyId: "mallory",
		ValidPrincipals: []string{e.login}, ValidAfter: 0, ValidBefore: ssh.CertTimeInfinity}
	if err := fc.SignCert(rand.Reader, other); err != nil {
		t.Fatal(err)
	}

	revKey, revCert := e.issue(certOptions{})
	if err := e.store.Revoke(context.Background(), store.Revocation{Serial: revCert.Serial, Reason: "laptop lost", Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	goneKey, goneCert := e.issue(certOptions{githubID: 1003, login: "gone"})

	for _, tc := range []struct {
		name    string
		c       *client
		args    func(*client) []string
		message string
		audited bool
	}{
		{"fail/host-not-in-policy", c, func(c *client) []string { return c.direct(e.login, "web2") }, `no host named "web2" in the policy`, true},
		{"fail/principal-not-granted", c, func(c *client) []string { return c.direct("deploy", "web1") }, `grants principal "deploy"`, true},
		{"fail/login-not-in-certificate", c, func(c *client) []string { return c.direct("nobody", "web1") }, `not valid for login "nobody"`, true},
		{"fail/wrong-ca", e.client(foreignKey, fc), func(c *client) []string { return c.direct(e.login, "web1") }, "not by the Sallyport user CA (sign in again with 'sallyport login')", false},
		{"fail/revoked", e.client(revKey, revCert), func(c *client) []string { return c.direct(e.login, "web1") }, `revoked ("laptop lost")`, true},
		{"fail/not-a-member", e.client(goneKey, goneCert), func(c *client) []string { return c.direct(e.login, "web1") }, "not a current member", true},
		{"fail/bad-user-name", c, func(c *client) []string { return c.direct(e.login, "web1@x") }, "more than one '@'", false},
		{"fail/jump-host-not-in-policy", c, func(c *client) []string { return c.jump(e.login, "web2") }, `no host named "web2" in the policy`, true},
		{"fail/jump-principal-not-granted", c, func(c *client) []string { return c.jump("deploy", "web1") }, `grants principal "deploy"`, true},
		{"fail/target-unreachable", c, func(c *client) []string { return c.direct(e.login, "web9") }, "cannot reach web9 (connection refused: is its sshd running?)", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.c.ssh(nil, tc.args(tc.c), "true")
			if r.code != 255 || !strings.Contains(r.stderr, tc.message) {
				t.Fatalf("got code %d stderr %q; want 255 and %q", r.code, r.stderr, tc.message)
			}
			if tc.audited && !strings.Contains(e.lastDeny(), tc.message) {
				t.Fatalf("last deny %q; want %q", e.lastDeny(), tc.message)
			}
		})
	}

	t.Run("fail/expired", func(t *testing.T) {
		e.offset.Store(int64(2 * time.Hour))
		defer e.offset.Store(0)
		r := c.ssh(nil, c.direct(e.login, "web1"), "true")
		if r.code != 255 || !strings.Contains(r.stderr, "has expired") || !strings.Contains(e.lastDeny(), "has expired") {
			t.Fatalf("got code %d stderr %q deny %q", r.code, r.stderr, e.lastDeny())
		}
	})
	t.Run("fail/not-yet-valid", func(t *testing.T) {
		e.offset.Store(int64(-time.Hour))
		defer e.offset.Store(0)
		r := c.ssh(nil, c.direct(e.login, "web1"), "true")
		if r.code != 255 || !strings.Contains(r.stderr, "not valid yet") {
			t.Fatalf("got code %d stderr %q", r.code, r.stderr)
		}
	})
	t.Run("fail/own-certificate-at-target", func(t *testing.T) {
		// Targets trust only the session CA: the user's certificate is
		// useless without the bastion.
		id := sshdtest.WriteIdentity(t, "", key, cert)
		out, err := e.target.Command(context.Background(), id, "true").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Permission denied") {
			t.Fatalf("target accepted the user's own certificate: %v %s", err, out)
		}
	})
}

func TestUnsignedTargetRefused(t *testing.T) {
	e := newEnv(t, envOptions{unsigned: true})
	c := e.client(e.issue(certOptions{}))
	for _, args := range [][]string{c.direct(e.login, "web1"), c.jump(e.login, "web1")} {
		r := c.ssh(nil, args, "true")
		if r.code != 255 || !strings.Contains(r.stderr, "web1 offered no host certificate (it has no certificate from the host CA, and the policy pins no host key for it)") {
			t.Fatalf("got code %d stderr %q", r.code, r.stderr)
		}
	}
	// Each refused connection is audited with the reason the user saw.
	var n int
	waitFor(t, 5*time.Second, "two audited target failures (one per form)", func() bool {
		n = 0
		for _, ev := range e.audits(audit.TypeDeny) {
			if ev.Subject == e.login+"@web1" && strings.Contains(ev.Reason, "offered no host certificate (") && ev.Outcome == audit.OutcomeDenied {
				n++
			}
		}
		return n == 2
	})
}

// TestTrapOfferedKeyIsNotTheProvenKey: the client offers certificate A
// (the bastion answers PK_OK) but cannot sign with it, then signs with B.
// The session must be B's, never A's. OpenSSH does exactly this when a
// CertificateFile has no private key: it queries with it, fails to load
// the key, and goes on to the next identity.
func TestTrapOfferedKeyIsNotTheProvenKey(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, certA := e.issue(certOptions{}) // alice, infra: pty and forwarding
	keyB, certB := e.issue(certOptions{githubID: 1002, login: "rita"})
	c := e.client(keyB, certB)
	dir := t.TempDir()
	aCert := filepath.Join(dir, "a-cert.pub")
	if err := os.WriteFile(aCert, ssh.MarshalAuthorizedKey(certA), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-o", "CertificateFile=" + aCert, "-v"}, c.direct(e.login, "web1")...)
	r := c.ssh(nil, args, "echo ok")
	if r.code != 0 || r.stdout != "ok\n" {
		t.Fatalf("got code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "Server accepts key: "+aCert) && !strings.Contains(r.stderr, "Server accepts key: "+aCert+" ") {
		t.Logf("client log:\n%s", r.stderr)
		t.Fatal("the client never had certificate A accepted; the test did not exercise the trap")
	}
	starts := e.audits(audit.TypeSessionStart)
	if len(starts) != 1 || starts[0].Actor != "github:1002" || starts[0].Fields["serial"] != strconv.FormatUint(certB.Serial, 10) {
		t.Fatalf("session.start %+v; want rita's certificate %d", starts, certB.Serial)
	}
}

// TestTrapCertificates offers certificates each refused for one property,
// using the real client and ssh-keygen where they can make them.
func TestTrapCertificates(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, tc := range []struct {
		name    string
		kind    ca.Kind
		args    []string
		message string
	}{
		{"fail/no-principals", ca.KindUser, nil, "lists no principals"},
		{"fail/unknown-critical-option", ca.KindUser, []string{"-n", e.login, "-O", "critical:verify-required"}, `unknown critical option "verify-required"`},
		{"fail/host-certificate-from-user-ca", ca.KindUser, []string{"-h", "-n", e.login}, "is a host certificate"},
		{"fail/host-certificate-from-host-ca", ca.KindHost, []string{"-h", "-n", e.login}, "not by the Sallyport user CA"},
		{"fail/session-ca", ca.KindSession, []string{"-n", e.login}, "not by the Sallyport user CA"},
		{"fail/not-recorded", ca.KindUser, []string{"-n", e.login}, "was not issued by this Sallyport"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, cert := e.keygenCert(tc.kind, tc.name != "fail/not-recorded", tc.args...)
			if cert.CertType == ssh.HostCert {
				// OpenSSH will not offer a host certificate for user
				// authentication; x/crypto will.
				_, banner, err := e.xclientBanner(e.login+"@web1", certSigner(t, key, cert))
				if err == nil || !strings.Contains(banner, tc.message) {
					t.Fatalf("got %v, banner %q; want %q", err, banner, tc.message)
				}
				return
			}
			c := e.client(key, cert)
			r := c.ssh(nil, c.direct(e.login, "web1"), "true")
			if r.code != 255 || !strings.Contains(r.stderr, tc.message) {
				t.Fatalf("got code %d stderr %q; want %q", r.code, r.stderr, tc.message)
			}
		})
	}
}

// TestTrapSignedByCertificate: a certificate whose signature key is itself
// a certificate. x/crypto refuses to parse it; the bastion's own check
// refuses it too.
func TestTrapSignedByCertificate(t *testing.T) {
	e := newEnv(t, envOptions{})
	key, s := newSigner(t)
	// A certificate for the user CA key, so that the signature key is a
	// certificate of exactly the user CA's key.
	caCert := &ssh.Certificate{Key: e.keys.User.PublicKey(), Serial: 7, CertType: ssh.UserCert, KeyId: "ca", ValidPrincipals: []string{"x"}, ValidBefore: ssh.CertTimeInfinity}
	if err := caCert.SignCert(rand.Reader, e.keys.User); err != nil {
		t.Fatal(err)
	}
	c := &ssh.Certificate{Key: s.PublicKey(), Serial: 8, CertType: ssh.UserCert, KeyId: "alice github:1001", ValidPrincipals: []string{e.login}, ValidBefore: ssh.CertTimeInfinity, SignatureKey: caCert}
	c2 := *c
	b := c2.Marshal()
	sig, err := e.keys.User.Sign(rand.Reader, b[:len(b)-4])
	if err != nil {
		t.Fatal(err)
	}
	c.Signature = sig
	e.srv.init()
	if err := e.srv.checkIssuer(c); err == nil || !strings.Contains(err.Error(), "signed by a certificate") {
		t.Fatalf("checkIssuer: %v; want refused", err)
	}
	if _, err := e.xclient(e.login+"@web1", certSigner(t, key, c)); err == nil {
		t.Fatal("connected with a certificate signed by a certificate")
	}
}

// TestTrapRequestsToTheBastion: requests addressed to the bastion itself
// are refused and audited.
func TestTrapRequestsToTheBastion(t *testing.T) {
	e := newEnv(t, envOptions{})
	key, cert := e.issue(certOptions{})
	c := e.client(key, cert)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"fail/remote-forward", []string{"-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9"}},
		{"fail/remote-streamlocal", []string{"-o", "ExitOnForwardFailure=yes", "-R", filepath.Join(t.TempDir(), "s") + ":127.0.0.1:9"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, args := range [][]string{c.direct(e.login, "web1", tc.args...), c.jump(e.login, "web1", tc.args...)} {
				r := c.ssh(nil, args, "sleep 5")
				if r.code != 255 || !strings.Contains(r.stderr, "forwarding failed") {
					t.Fatalf("got code %d stderr %q", r.code, r.stderr)
				}
			}
			if d := e.lastDeny(); !strings.Contains(d, "not supported") {
				t.Fatalf("last deny %q", d)
			}
		})
	}

	s := certSigner(t, key, cert)
	cl, err := e.xclient(e.login+"@web1", s)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, typ := range []string{"tun@openssh.com", "direct-streamlocal@openssh.com", "x11", "auth-agent@openssh.com", "nonsense"} {
		if _, _, err := cl.OpenChannel(typ, nil); err == nil {
			t.Errorf("channel %s opened; want refused", typ)
		}
	}
	sess, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := sess.SendRequest("x11-req", true, ssh.Marshal(struct {
		Single        bool
		Proto, Cookie string
		Screen        uint32
	}{false, "MIT-MAGIC-COOKIE-1", "00", 0})); ok || err != nil {
		t.Errorf("x11-req: %v %v; want refused", ok, err)
	}
	if err := sess.RequestSubsystem("netconf"); err == nil {
		t.Error("subsystem netconf started; want refused")
	}
	if ok, err := sess.SendRequest("auth-agent-req@openssh.com", true, nil); ok || err != nil {
		t.Errorf("agent forwarding granted: %v %v; want refused (not in the grant)", ok, err)
	}

	// A connection naming no target serves no sessions, only ProxyJump.
	carrier, err := e.xclient("alice", s)
	if err != nil {
		t.Fatal(err)
	}
	defer carrier.Close()
	if _, err := carrier.NewSession(); err == nil || !strings.Contains(err.Error(), "names no target") {
		t.Fatalf("session on a carrier: %v; want refused", err)
	}
	for _, typ := range []string{"tun@openssh.com", "direct-streamlocal@openssh.com"} {
		if _, _, err := carrier.OpenChannel(typ, nil); err == nil {
			t.Errorf("carrier channel %s opened; want refused", typ)
		}
	}
	if ok, _, _ := carrier.SendRequest("tcpip-forward", true, ssh.Marshal(struct {
		Addr string
		Port uint32
	}{"127.0.0.1", 0})); ok {
		t.Error("tcpip-forward accepted on a carrier")
	}
	if _, err := carrier.Dial("tcp", "web1:2200"); err == nil {
		t.Error("jump to a port other than 22 accepted")
	}
}

// TestAgentForwardingRefused: the real client asks for agent forwarding;
// the grant does not permit it, so the target sees no agent.
func TestAgentForwardingRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	key, cert := e.issue(certOptions{})
	c := e.client(key, cert)
	sock := startAgent(t)
	args := c.direct(e.login, "web1", "-A", "-o", "IdentityAgent="+sock)
	r := c.ssh(nil, args, "echo agent=${SSH_AUTH_SOCK:-none}")
	if r.code != 0 || r.stdout != "agent=none\n" {
		t.Fatalf("got code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(e.lastDeny(), "agent forwarding is not permitted") {
		t.Fatalf("last deny %q", e.lastDeny())
	}
}

// startAgent runs a real ssh-agent for the test and returns its socket.
func startAgent(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	waitFor(t, 5*time.Second, "ssh-agent socket", func() bool { _, err := os.Stat(sock); return err == nil })
	return sock
}

// TestAgentForwardingGranted: with a grant that permits it, the user's own
// ssh-agent (real ssh-agent, real ssh -A) answers on the target, through
// both target forms.
func TestAgentForwardingGranted(t *testing.T) {
	e := newEnv(t, envOptions{policy: `
  - name: infra
    members:
      teams: [infra]
    principals: [%[1]s]
    hosts: [web1]
    permissions: [pty, agent-forwarding]
`})
	key, cert := e.issue(certOptions{perms: []ca.Permission{ca.PermitPTY, ca.PermitAgentForwarding}})
	c := e.client(key, cert)
	sock := startAgent(t)

	// A key only the agent holds: the target lists it through the
	// forwarded agent.
	_, held, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	heldFile := sshdtest.WriteIdentity(t, t.TempDir(), held, nil)
	add := exec.Command("ssh-add", heldFile)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v %s", err, out)
	}
	pub, err := ssh.NewPublicKey(held.Public())
	if err != nil {
		t.Fatal(err)
	}
	want := ssh.FingerprintSHA256(pub)
	for name, args := range map[string][]string{
		"direct": c.direct(e.login, "web1", "-A", "-o", "IdentityAgent="+sock),
		"jump":   c.jump(e.login, "web1", "-A", "-o", "IdentityAgent="+sock),
	} {
		r := c.ssh(nil, args, "ssh-add -l")
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("%s: ssh-add -l on the target: code %d stdout %q stderr %q; want %s listed", name, r.code, r.stdout, r.stderr, want)
		}
	}
}
