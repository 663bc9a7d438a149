package bastion

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/internal/gpgtest"
	"github.com/sallyport/sallyport/policy"
	"github.com/sallyport/sallyport/store"
	"github.com/sallyport/sallyport/trust"
)

// nobody is the directory while GitHub is down: it knows no one.
type nobody struct{}

func (nobody) Identity(int64) (policy.Identity, bool) { return policy.Identity{}, false }

// web2 is a second host of the policy, never reached: every test refuses
// it before dialling.
const web2 = `  - name: web2
    address: 127.0.0.1:1
`

const ciRoles = `
  - name: deploy
    members:
      ci:
        - repository: example/site
          ref: refs/heads/main
          environment: prod
    principals: [%[1]s]
    hosts: [web1]
    permissions: [pty]
  - name: release
    members:
      ci:
        - repository: example/site
          ref: refs/tags/v*
          workflow: Release site
    principals: [%[1]s]
    hosts: [web1]
    permissions: []
`

// issueCI issues a CI certificate recorded under identity, as web does
// for a verified Actions token.
func (e *env) issueCI(identity string, principals ...string) (ed25519.PrivateKey, *ssh.Certificate) {
	e.t.Helper()
	k, s := newSigner(e.t)
	c, err := e.auth.IssueUser(context.Background(), ca.UserRequest{
		PublicKey: s.PublicKey(), Principals: principals, TTL: 15 * time.Minute, MaxTTL: time.Hour,
		Permissions: []ca.Permission{ca.PermitPTY, ca.PermitPortForwarding},
		KeyID:       "ci example/site", Identity: identity,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return k, c
}

// TestCICertificate: a GitHub Actions certificate reaches what the policy
// grants its repository, ref, environment and workflow through the real
// ssh, and nothing else; the old identity form is refused.
func TestCICertificate(t *testing.T) {
	e := newEnv(t, envOptions{policy: ciRoles, extraHost: web2, configure: func(s *Server) { s.Directory = nobody{} }})
	prod := policy.CIClaims{Repository: "example/site", Ref: "refs/heads/main", Environment: "prod", Workflow: "Deploy"}
	release := policy.CIClaims{Repository: "example/site", Ref: "refs/tags/v1.2.0", Workflow: "Release site"}
	otherWorkflow := policy.CIClaims{Repository: "example/site", Ref: "refs/tags/v1.2.0", Workflow: "Nightly"}
	branch := policy.CIClaims{Repository: "example/site", Ref: "refs/heads/feature", Environment: "prod"}
	other := policy.CIClaims{Repository: "example/other", Ref: "refs/heads/main", Environment: "prod"}

	type form func(c *client, login, host string, args ...string) []string
	direct := func(c *client, login, host string, args ...string) []string { return c.direct(login, host, args...) }
	jump := func(c *client, login, host string, args ...string) []string { return c.jump(login, host, args...) }
	for _, tc := range []struct {
		name        string
		identity    string
		login, host string
		form        form
		want        string // in stderr when refused
	}{
		{name: "ok/direct", identity: prod.IdentityString(), host: "web1", form: direct},
		{name: "ok/jump", identity: prod.IdentityString(), host: "web1", form: jump},
		{name: "ok/workflow-role", identity: release.IdentityString(), host: "web1", form: direct},
		{name: "fail/other-host", identity: prod.IdentityString(), host: "web2", form: direct, want: "no role of ci example/site ref refs/heads/main environment prod"},
		{name: "fail/other-host-jump", identity: prod.IdentityString(), host: "web2", form: jump, want: "no role of ci example/site ref refs/heads/main environment prod"},
		{name: "fail/other-principal", identity: prod.IdentityString(), login: "deploy", host: "web1", form: direct, want: "grants principal \"deploy\""},
		{name: "fail/other-workflow", identity: otherWorkflow.IdentityString(), host: "web1", form: direct, want: "no role applies"},
		{name: "fail/other-branch", identity: branch.IdentityString(), host: "web1", form: direct, want: "no role applies"},
		{name: "fail/other-repository", identity: other.IdentityString(), host: "web1", form: direct, want: "no role applies"},
		{name: "fail/old-form", identity: "github-actions:example/site:refs/heads/main:prod", host: "web1", form: direct, want: "CI identity in an old or invalid form"},
		{name: "fail/old-form-jump", identity: "github-actions:example/site:refs/heads/main", host: "web1", form: jump, want: "CI identity in an old or invalid form"},
		{name: "fail/not-canonical", identity: "github-actions:repository=example%2Fsite&ref=refs%2Fheads%2Fmain&environment=prod", host: "web1", form: direct, want: "old or invalid form"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			login := tc.login
			if login == "" {
				login = e.login
			}
			c := e.client(e.issueCI(tc.identity, e.login, "deploy"))
			r := c.ssh(nil, tc.form(c, login, tc.host), "echo deployed")
			if tc.want == "" {
				if r.code != 0 || r.stdout != "deployed\n" {
					t.Fatalf("got code %d stdout %q stderr %q; want deployed", r.code, r.stdout, r.stderr)
				}
				return
			}
			if r.code == 0 || strings.Contains(r.stdout, "deployed") || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("got code %d stdout %q stderr %q; want refused with %q", r.code, r.stdout, r.stderr, tc.want)
			}
			if d := e.lastDeny(); d == "" {
				t.Fatal("no deny event")
			}
		})
	}

	// Sessions are audited under the CI identity, and recorded.
	var starts int
	for _, ev := range e.audits(audit.TypeSessionStart) {
		if ev.Actor == prod.IdentityString() || ev.Actor == release.IdentityString() {
			starts++
		}
	}
	if starts != 3 {
		t.Fatalf("got %d session.start events of CI identities; want 3", starts)
	}
	if d := e.lastDeny(); !strings.Contains(d, "old or invalid form") {
		t.Fatalf("last deny %q", d)
	}

	// Revocation and the current policy apply to CI certificates too.
	k, cert := e.issueCI(prod.IdentityString(), e.login)
	c := e.client(k, cert)
	if r := c.ssh(nil, c.direct(e.login, "web1"), "true"); r.code != 0 {
		t.Fatalf("before revocation: code %d stderr %q", r.code, r.stderr)
	}
	if err := e.store.Revoke(context.Background(), store.Revocation{Serial: cert.Serial, Reason: "leaked from a build log", Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	if r := c.ssh(nil, c.direct(e.login, "web1"), "true"); r.code == 0 || !strings.Contains(r.stderr, "revoked") {
		t.Fatalf("after revocation: code %d stderr %q; want revoked", r.code, r.stderr)
	}
	c = e.client(e.issueCI(prod.IdentityString(), e.login))
	e.setPolicy(strings.Replace(ciRoles, "environment: prod", "environment: staging", 1), web2)
	if r := c.ssh(nil, c.direct(e.login, "web1"), "true"); r.code == 0 || !strings.Contains(r.stderr, "no role applies") {
		t.Fatalf("after the policy changed: code %d stderr %q; want refused", r.code, r.stderr)
	}
}

// glassAdmin is a one-key web of trust whose root admin signs break-glass
// requests with the real gpg.
type glassAdmin struct {
	gpg *gpgtest.Home
	fpr string
	dir string // trust folder
}

func newGlassAdmin(t *testing.T) *glassAdmin {
	t.Helper()
	g := gpgtest.New(t)
	a := &glassAdmin{gpg: g, dir: filepath.Join(t.TempDir(), "trust")}
	a.fpr = g.GenKey("root (github:root/4242) <root@example.org>", "1y")
	if err := trust.InitFolder(a.dir, []trust.Fingerprint{trust.Fingerprint(a.fpr)}); err != nil {
		t.Fatal(err)
	}
	if _, err := trust.AddKeys(a.dir, g.Export(a.fpr)); err != nil {
		t.Fatal(err)
	}
	return a
}

// breakGlass makes a break-glass certificate end to end: a request for
// principal@host, clear-signed by the admin with gpg, turned into a
// certificate by trust.BreakGlass with the environment's CA and store.
func (e *env) breakGlass(a *glassAdmin, principal, host string) (ed25519.PrivateKey, *ssh.Certificate) {
	e.t.Helper()
	k, s := newSigner(e.t)
	now := time.Now()
	r, err := trust.NewRequest(principal, host, "GitHub is down and web1 is on fire", 30*time.Minute, s.PublicKey(), now)
	if err != nil {
		e.t.Fatal(err)
	}
	path := filepath.Join(e.t.TempDir(), "request.txt")
	if err := os.WriteFile(path, r.Marshal(), 0o600); err != nil {
		e.t.Fatal(err)
	}
	signed := a.gpg.ClearSign(a.fpr, path)
	f, err := trust.LoadFolder(a.dir)
	if err != nil {
		e.t.Fatal(err)
	}
	admins, err := trust.ComputeAdmins(f, trust.Options{Threshold: 1, Now: now.Add(time.Second)})
	if err != nil {
		e.t.Fatal(err)
	}
	bg := &trust.BreakGlass{Admins: admins, Authority: e.auth, Ledger: e.store, Audit: e.store, Actor: "offline:test"}
	cert, _, err := bg.Issue(context.Background(), signed)
	if err != nil {
		e.t.Fatal(err)
	}
	return k, cert
}

// TestBreakGlass: with GitHub down (the directory knows nobody), a
// break-glass certificate from trust.BreakGlass reaches its principal on
// its host through the real ssh, with a terminal only and input recorded,
// loudly audited; everything else is refused, and so is the certificate
// once revoked.
func TestBreakGlass(t *testing.T) {
	e := newEnv(t, envOptions{extraHost: web2, configure: func(s *Server) { s.Directory = nobody{} }})
	a := newGlassAdmin(t)
	k, cert := e.breakGlass(a, e.login, "web1")
	if !strings.HasPrefix(cert.KeyId, "breakglass:") || !strings.Contains(cert.KeyId, " host=web1 by=github:4242 serial=") {
		t.Fatalf("key ID %q", cert.KeyId)
	}
	c := e.client(k, cert)

	// GitHub is down: a person's certificate is refused.
	uc := e.client(e.issue(certOptions{}))
	if r := uc.ssh(nil, uc.direct(e.login, "web1"), "true"); r.code == 0 || !strings.Contains(r.stderr, "not a current member") {
		t.Fatalf("user certificate: code %d stderr %q; want refused", r.code, r.stderr)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string // in stderr when refused
	}{
		{name: "ok/direct", args: c.direct(e.login, "web1")},
		{name: "ok/jump", args: c.jump(e.login, "web1")},
		{name: "fail/other-host", args: c.direct(e.login, "web2"), want: "valid only for " + e.login + "@web1"},
		{name: "fail/other-host-jump", args: c.jump(e.login, "web2"), want: "valid only for host web1"},
		{name: "fail/other-principal", args: c.direct("other-user", "web1"), want: "not valid for login \"other-user\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.ssh(nil, tc.args, "echo glass")
			if tc.want == "" {
				if r.code != 0 || r.stdout != "glass\n" {
					t.Fatalf("got code %d stdout %q stderr %q; want glass", r.code, r.stdout, r.stderr)
				}
				return
			}
			if r.code == 0 || strings.Contains(r.stdout, "glass") || !strings.Contains(r.stderr+e.lastDeny(), tc.want) {
				t.Fatalf("got code %d stdout %q stderr %q (last deny %q); want refused with %q", r.code, r.stdout, r.stderr, e.lastDeny(), tc.want)
			}
			denies := e.audits(audit.TypeDeny)
			if d := denies[len(denies)-1]; d.Fields["breakglass"] != "true" || d.Actor != "breakglass:"+strings.TrimPrefix(strings.Fields(cert.KeyId)[0], "breakglass:") {
				t.Fatalf("deny event %+v; want breakglass=true by the break-glass identity", d)
			}
		})
	}

	t.Run("ok/pty-input-recorded", func(t *testing.T) {
		before, err := e.store.Recordings(context.Background(), store.RecordingFilter{})
		if err != nil {
			t.Fatal(err)
		}
		r := c.ssh(strings.NewReader("echo typed-$((40+2))\nexit 3\n"), c.direct(e.login, "web1", "-tt"))
		if r.code != 3 || !strings.Contains(r.stdout, "typed-42") {
			t.Fatalf("got code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
		var recs []store.Recording
		waitFor(t, 5*time.Second, "the recording", func() bool {
			recs, err = e.store.Recordings(context.Background(), store.RecordingFilter{})
			return err == nil && len(recs) == len(before)+1 && recs[0].ExitStatus == 3
		})
		rec := recs[0]
		if !rec.InputRecorded || !rec.PTY || rec.Identity != "breakglass:"+strings.Split(strings.Fields(cert.KeyId)[0], ":")[1] {
			t.Fatalf("recording %+v; want a pty session with input recorded", rec)
		}
		b, err := os.ReadFile(filepath.Join(e.recDir, filepath.FromSlash(rec.Path)))
		if err != nil || !strings.Contains(string(b), `"i"`) || !strings.Contains(string(b), "$((40+2))") {
			t.Fatalf("recording %s: %v\n%s", rec.Path, err, b)
		}
	})

	t.Run("fail/forwarding", func(t *testing.T) {
		cl, err := e.xclient(e.login+"@web1", certSigner(t, k, cert))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if conn, err := cl.Dial("tcp", e.target.Addr); err == nil {
			conn.Close()
			t.Fatal("port forwarding allowed; want refused")
		}
		fwd := e.audits(audit.TypePortForward)
		if len(fwd) == 0 || fwd[len(fwd)-1].Outcome != audit.OutcomeDenied || fwd[len(fwd)-1].Fields["breakglass"] != "true" {
			t.Fatalf("port.forward events %+v; want a denial with breakglass=true", fwd)
		}
		s, err := cl.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if ok, err := s.SendRequest("auth-agent-req@openssh.com", true, nil); ok || err != nil {
			t.Fatalf("agent forwarding: got %v %v; want refused", ok, err)
		}
		x11 := ssh.Marshal(struct {
			Single        bool
			Proto, Cookie string
			Screen        uint32
		}{false, "MIT-MAGIC-COOKIE-1", "00112233445566778899aabbccddeeff", 0})
		if ok, err := s.SendRequest("x11-req", true, x11); ok || err != nil {
			t.Fatalf("x11 forwarding: got %v %v; want refused", ok, err)
		}
	})

	// Every accepted login and session is audited with breakglass=true.
	logins := e.audits(audit.TypeLogin)
	var glassLogins int
	for _, ev := range logins {
		if ev.Fields["breakglass"] == "true" && ev.Fields["host"] == "web1" && ev.Fields["signed_by"] == "github:4242" {
			glassLogins++
		}
	}
	if glassLogins < 4 {
		t.Fatalf("got %d break-glass login events; want at least 4 (%+v)", glassLogins, logins)
	}
	for _, ev := range e.audits(audit.TypeSessionStart) {
		if ev.Fields["breakglass"] != "true" {
			t.Fatalf("session.start %+v lacks breakglass=true", ev)
		}
	}

	// A live session ends when the certificate expires.
	_, _, done := liveSession(t, c, c.direct(e.login, "web1"))
	e.offset.Store(int64(time.Hour))
	if n := e.srv.ReevaluateNow(context.Background(), "test"); n != 1 {
		t.Fatalf("ReevaluateNow ended %d sessions; want 1", n)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("break-glass session still running after its certificate expired")
	}
	if r := c.ssh(nil, c.direct(e.login, "web1"), "true"); r.code == 0 || !strings.Contains(r.stderr, "expired") {
		t.Fatalf("after expiry: code %d stderr %q; want expired", r.code, r.stderr)
	}
	e.offset.Store(0)

	// Revoked: refused.
	if err := e.store.Revoke(context.Background(), store.Revocation{Serial: cert.Serial, Reason: "emergency over", Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	if r := c.ssh(nil, c.direct(e.login, "web1"), "echo glass"); r.code == 0 || !strings.Contains(r.stderr, "revoked") {
		t.Fatalf("after revocation: code %d stdout %q stderr %q; want revoked", r.code, r.stdout, r.stderr)
	}

	// A break-glass certificate for a host the policy does not know
	// reaches nothing.
	gc := e.client(e.breakGlass(a, e.login, "db9"))
	if r := gc.ssh(nil, gc.direct(e.login, "db9"), "true"); r.code == 0 || !strings.Contains(r.stderr+e.lastDeny(), "no host named \"db9\"") {
		t.Fatalf("unknown host: code %d stderr %q (last deny %q)", r.code, r.stderr, e.lastDeny())
	}
}

// TestBreakGlassShape: only certificates of exactly the shape
// trust.BreakGlass issues are taken for break-glass certificates.
func TestBreakGlassShape(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef"
	good := func() *ssh.Certificate {
		return &ssh.Certificate{
			Serial:          42,
			KeyId:           "breakglass:" + id + " host=web1 by=github:7 serial=42",
			ValidPrincipals: []string{"root"},
			ValidAfter:      1000,
			ValidBefore:     1000 + 3600 + 300,
			Permissions:     ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}},
		}
	}
	for _, tc := range []struct {
		name     string
		identity string
		mutate   func(*ssh.Certificate)
		want     string
	}{
		{name: "ok/issued-shape"},
		{name: "ok/no-pty", mutate: func(c *ssh.Certificate) { c.Extensions = nil }},
		{name: "fail/short-id", identity: "breakglass:0123", want: "request ID"},
		{name: "fail/upper-id", identity: "breakglass:" + strings.ToUpper(id), want: "request ID"},
		{name: "fail/other-request", mutate: func(c *ssh.Certificate) { c.KeyId = strings.Replace(c.KeyId, "0123", "3210", 1) }, want: "key ID"},
		{name: "fail/no-host", mutate: func(c *ssh.Certificate) { c.KeyId = "breakglass:" + id + " by=github:7 serial=42" }, want: "key ID"},
		{name: "fail/two-hosts", mutate: func(c *ssh.Certificate) { c.KeyId = "breakglass:" + id + " host=web1 host=web2 serial=42" }, want: "signing admin"},
		{name: "fail/bad-host", mutate: func(c *ssh.Certificate) { c.KeyId = strings.Replace(c.KeyId, "host=web1", "host=web_1", 1) }, want: "valid host"},
		{name: "fail/empty-host", mutate: func(c *ssh.Certificate) { c.KeyId = strings.Replace(c.KeyId, "host=web1", "host=", 1) }, want: "valid host"},
		{name: "fail/double-space", mutate: func(c *ssh.Certificate) { c.KeyId = strings.Replace(c.KeyId, " host", "  host", 1) }, want: "key ID"},
		{name: "fail/bad-admin", mutate: func(c *ssh.Certificate) { c.KeyId = strings.Replace(c.KeyId, "github:7", "github:07", 1) }, want: "signing admin"},
		{name: "fail/other-serial", mutate: func(c *ssh.Certificate) { c.Serial = 43 }, want: "another serial"},
		{name: "fail/two-principals", mutate: func(c *ssh.Certificate) { c.ValidPrincipals = []string{"root", "admin"} }, want: "exactly one principal"},
		{name: "fail/port-forwarding", mutate: func(c *ssh.Certificate) { c.Extensions["permit-port-forwarding"] = "" }, want: "terminal only"},
		{name: "fail/agent", mutate: func(c *ssh.Certificate) { c.Extensions["permit-agent-forwarding"] = "" }, want: "terminal only"},
		{name: "fail/too-long", mutate: func(c *ssh.Certificate) { c.ValidBefore = c.ValidAfter + 2*3600 }, want: "longer than 1h"},
		{name: "fail/forever", mutate: func(c *ssh.Certificate) { c.ValidBefore = ssh.CertTimeInfinity }, want: "longer than 1h"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			if tc.mutate != nil {
				tc.mutate(c)
			}
			identity := tc.identity
			if identity == "" {
				identity = "breakglass:" + id
			}
			g, err := parseBreakGlass(identity, c)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("got %v; want accepted", err)
				}
				if g.id != id || g.host != "web1" || g.principal != "root" || g.by != "github:7" {
					t.Fatalf("got %+v", g)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v; want an error with %q", err, tc.want)
			}
		})
	}
}
