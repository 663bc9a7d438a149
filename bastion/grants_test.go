package bastion

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/store"
)

// forcedRoles grants alice (team infra) a forced command that prints what
// the target's sshd saw asked for: sshd puts the command the bastion sent
// in SSH_ORIGINAL_COMMAND when a forced command is in effect.
const forcedRoles = `
  - name: infra
    members:
      teams: [infra]
    principals: [%[1]s]
    hosts: [web1]
    permissions: [pty]
    force_command: echo forced "$SSH_ORIGINAL_COMMAND"
`

// TestForceCommandEnforcedByBastion: the bastion itself replaces what the
// client asked for with the forced command, from the policy or from the
// user's certificate, so the target never sees the user's command even if
// it did not enforce the session certificate's force-command.
func TestForceCommandEnforcedByBastion(t *testing.T) {
	const forced = `echo forced "$SSH_ORIGINAL_COMMAND"`
	want := "forced " + forced + "\n"
	for _, tc := range []struct {
		name   string
		roles  string
		certFC string
	}{
		{"policy", forcedRoles, ""},
		{"certificate", defaultRoles, forced},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{policy: tc.roles})
			c := e.client(e.issue(certOptions{force: tc.certFC}))
			for _, args := range [][]string{c.direct(e.login, "web1"), c.jump(e.login, "web1")} {
				// An exec of another command and a shell (no command).
				for _, remote := range [][]string{{"id"}, nil} {
					r := c.ssh(strings.NewReader("id\n"), args, remote...)
					if r.code != 0 || r.stdout != want {
						t.Fatalf("ssh %v %v: code %d stdout %q stderr %q; want %q", args, remote, r.code, r.stdout, r.stderr, want)
					}
				}
			}
			waitFor(t, 5*time.Second, "four audited exec events with the forced command", func() bool {
				n := 0
				for _, ev := range e.audits(audit.TypeExec) {
					if ev.Fields["force_command"] == forced {
						n++
					}
				}
				return n == 4
			})
		})
	}
}

// TestExecAudited: every exec is audited with its command line before it
// runs.
func TestExecAudited(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(e.issue(certOptions{}))
	r := c.ssh(nil, c.jump(e.login, "web1"), "echo", "audited-$((6*7))")
	if r.code != 0 || r.stdout != "audited-42\n" {
		t.Fatalf("code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	evs := e.audits(audit.TypeExec)
	if len(evs) != 1 || evs[0].Fields["command"] != "echo audited-$((6*7))" || evs[0].Actor != "github:1001" || evs[0].Subject != e.login+"@web1" {
		t.Fatalf("exec events %+v", evs)
	}
}

// TestCertificatePermitsNarrowPolicy: the policy grants pty and port
// forwarding, but a certificate without those extensions gets neither.
func TestCertificatePermitsNarrowPolicy(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(e.issue(certOptions{perms: []ca.Permission{}}))
	r := c.ssh(nil, c.direct(e.login, "web1", "-tt"), "tty")
	if r.code != 255 || !strings.Contains(r.stderr, "PTY allocation request failed") {
		t.Fatalf("pty: code %d stdout %q stderr %q; want refused", r.code, r.stdout, r.stderr)
	}
	r = c.ssh(nil, c.jump(e.login, "web1", "-o", "ExitOnForwardFailure=yes", "-L", "127.0.0.1:0:127.0.0.1:9"), "true")
	if r.code == 0 {
		t.Fatalf("ssh -L: code 0 stderr %q; want the forward refused", r.stderr)
	}
	// The same user with the extensions has both.
	c2 := e.client(e.issue(certOptions{}))
	if r := c2.ssh(nil, c2.direct(e.login, "web1", "-tt"), "tty"); r.code != 0 || !strings.Contains(r.stdout, "/dev/pts/") {
		t.Fatalf("pty with permit-pty: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}

// TestSessionCertificate reads back, on the target, the certificate the
// bastion minted for the connection (sshd's ExposeAuthInfo) and checks
// every field the issue names.
func TestSessionCertificate(t *testing.T) {
	e := newEnv(t, envOptions{targetExtra: []string{"ExposeAuthInfo yes"}, policy: `
  - name: infra
    members:
      teams: [infra]
    principals: [%[1]s]
    hosts: [web1]
    permissions: [pty, agent-forwarding]
`})
	c := e.client(e.issue(certOptions{}))
	start := time.Now()
	r := c.ssh(nil, c.jump(e.login, "web1"), `cat "$SSH_USER_AUTH"`)
	if r.code != 0 {
		t.Fatalf("code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	// "publickey <type> <base64>" for the one method that succeeded.
	f := strings.Fields(r.stdout)
	if len(f) != 3 || f[0] != "publickey" {
		t.Fatalf("SSH_USER_AUTH: %q", r.stdout)
	}
	b, err := base64.StdEncoding.DecodeString(f[2])
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.ParsePublicKey(b)
	if err != nil {
		t.Fatal(err)
	}
	cert, ok := k.(*ssh.Certificate)
	if !ok {
		t.Fatalf("bastion authenticated with %s, not a certificate", k.Type())
	}
	if !bytes.Equal(cert.SignatureKey.Marshal(), e.keys.Session.PublicKey().Marshal()) {
		t.Error("not signed by the session CA")
	}
	if cert.CertType != ssh.UserCert || len(cert.ValidPrincipals) != 1 || cert.ValidPrincipals[0] != e.login {
		t.Errorf("type %d principals %q; want a user certificate for %q only", cert.CertType, cert.ValidPrincipals, e.login)
	}
	after, before := time.Unix(int64(cert.ValidAfter), 0), time.Unix(int64(cert.ValidBefore), 0)
	if before.Sub(after) > SessionCertTTL+time.Minute || before.Before(start) || after.After(time.Now()) {
		t.Errorf("valid %v to %v; want at most %v around now", after, before, SessionCertTTL)
	}
	// Permissions: the policy's (pty, agent forwarding) within the user
	// certificate's; port forwarding is in the user's certificate but not
	// granted.
	var exts []string
	for name := range cert.Extensions {
		exts = append(exts, name)
	}
	slices.Sort(exts)
	if !slices.Equal(exts, []string{"permit-agent-forwarding", "permit-pty"}) {
		t.Errorf("extensions %q; want permit-agent-forwarding and permit-pty", exts)
	}
	if len(cert.CriticalOptions) != 0 {
		t.Errorf("critical options %v; want none", cert.CriticalOptions)
	}
	starts := e.audits(audit.TypeSessionStart)
	if len(starts) != 1 {
		t.Fatalf("session.start events %+v", starts)
	}
	if want := "alice github:1001 session=" + starts[0].Fields["connection"] + " serial="; !strings.HasPrefix(cert.KeyId, want) {
		t.Errorf("key ID %q; want it to start with %q", cert.KeyId, want)
	}

	// With a forced command it is in the certificate too.
	e.setPolicy(forcedRoles, "")
	r = c.ssh(nil, c.direct(e.login, "web1"), "true")
	if !strings.HasPrefix(r.stdout, "forced ") {
		t.Fatalf("code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}

// TestSourceAddress: a certificate's source-address and a role's
// source_addresses are both enforced by the bastion, with a clear reason.
func TestSourceAddress(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, tc := range []struct {
		name    string
		sources []netip.Prefix
		roles   string
		want    string // "" means allowed
	}{
		{"certificate/allowed", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, defaultRoles, ""},
		{"certificate/refused", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, defaultRoles, "may not be used from 127.0.0.1"},
		{"policy/allowed", nil, strings.Replace(defaultRoles, "permissions: [pty, port-forwarding]", "permissions: [pty]\n    source_addresses: [127.0.0.1/32]", 1), ""},
		{"policy/refused", nil, strings.Replace(defaultRoles, "permissions: [pty, port-forwarding]", "permissions: [pty]\n    source_addresses: [10.0.0.0/8]", 1),
			"connections from 127.0.0.1 are not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.setPolicy(tc.roles, "")
			c := e.client(e.issue(certOptions{sources: tc.sources}))
			for _, args := range [][]string{c.direct(e.login, "web1"), c.jump(e.login, "web1")} {
				r := c.ssh(nil, args, "echo in")
				switch {
				case tc.want == "" && (r.code != 0 || r.stdout != "in\n"):
					t.Fatalf("ssh %v: code %d stdout %q stderr %q; want allowed", args, r.code, r.stdout, r.stderr)
				case tc.want != "" && (r.code != 255 || !strings.Contains(r.stderr, tc.want)):
					t.Fatalf("ssh %v: code %d stdout %q stderr %q; want refused with %q", args, r.code, r.stdout, r.stderr, tc.want)
				}
			}
		})
	}
}

// TestRecordInput: keystrokes of a pty session are recorded only when the
// policy's record_input says so.
func TestRecordInput(t *testing.T) {
	for _, record := range []bool{false, true} {
		roles := defaultRoles
		if record {
			roles = strings.Replace(roles, "permissions: [pty, port-forwarding]", "permissions: [pty]\n    record_input: true", 1)
		}
		e := newEnv(t, envOptions{policy: roles})
		c := e.client(e.issue(certOptions{}))
		r := c.ssh(strings.NewReader("echo typed-in\nexit\n"), c.direct(e.login, "web1", "-tt"))
		if r.code != 0 || !strings.Contains(r.stdout, "typed-in") {
			t.Fatalf("code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
		waitFor(t, 5*time.Second, "session.end", func() bool { return len(e.audits(audit.TypeSessionEnd)) == 1 })
		recs, err := e.store.Recordings(context.Background(), store.RecordingFilter{})
		if err != nil || len(recs) != 1 {
			t.Fatalf("recordings: %v %v", recs, err)
		}
		b, err := os.ReadFile(filepath.Join(e.recDir, filepath.FromSlash(recs[0].Path)))
		if err != nil {
			t.Fatal(err)
		}
		if got := bytes.Contains(b, []byte(`, "i", "`)); got != record {
			t.Fatalf("record_input %t: input events in the recording: %t\n%s", record, got, b)
		}
	}
}

// TestTargetRefusesSessionCA: a target that does not trust the session CA
// is named as the one refusing, audited as an error (not a denial).
func TestTargetRefusesSessionCA(t *testing.T) {
	e := newEnv(t, envOptions{untrusting: true})
	c := e.client(e.issue(certOptions{}))
	const want = `web1 refused the bastion's session certificate for "`
	for _, args := range [][]string{c.direct(e.login, "web1"), c.jump(e.login, "web1")} {
		r := c.ssh(nil, args, "true")
		if r.code != 255 || !strings.Contains(r.stderr, want) {
			t.Fatalf("code %d stderr %q; want %q", r.code, r.stderr, want)
		}
	}
	waitFor(t, 5*time.Second, "two audited target failures", func() bool {
		n := 0
		for _, ev := range e.audits(audit.TypeDeny) {
			if strings.Contains(ev.Reason, want) && ev.Outcome == audit.OutcomeError {
				n++
			}
		}
		return n == 2
	})
}

// TestExpiredCertificateChannels: once the certificate has expired, new
// channels are refused, audited once per connection and not counted
// toward closing it, so a live session goes on; a connection left with
// nothing open is ended, so that a multiplexing master gives way.
func TestExpiredCertificateChannels(t *testing.T) {
	e := newEnv(t, envOptions{configure: func(s *Server) { s.SweepInterval = time.Hour }})
	t.Cleanup(func() { e.offset.Store(0) })
	key, cert := e.issue(certOptions{ttl: time.Minute})
	cl, err := e.xclient(e.login+"@web1", certSigner(t, key, cert))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	live, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := live.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := live.Start("echo started; exec sleep 3"); err != nil {
		t.Fatal(err)
	}
	if _, err := stdout.Read(make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	// A session channel opened before expiry starts nothing after it.
	early, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	e.offset.Store(int64(2 * time.Minute))
	if out, err := early.CombinedOutput("echo ran"); err == nil || strings.Contains(string(out), "ran") || !strings.Contains(string(out), "has expired") {
		t.Fatalf("exec on a channel opened before expiry: %q, %v; want refused as expired", out, err)
	}
	for i := range 2 * maxRefusals {
		if _, err := cl.Dial("tcp", "127.0.0.1:9"); err == nil || !strings.Contains(err.Error(), "has expired") {
			t.Fatalf("forward %d after expiry: %v; want refused as expired", i, err)
		}
	}
	// The live session goes on to its end.
	liveDone := make(chan error, 1)
	go func() { liveDone <- live.Wait() }()
	n := 0
	for _, ev := range e.audits(audit.TypeDeny) {
		if strings.Contains(ev.Reason, "has expired") {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d expiry refusals audited; want 1 per connection", n)
	}
	select {
	case err := <-liveDone:
		if err != nil {
			t.Fatalf("live session: %v; want it to end by itself", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("live session still running")
	}
	// With nothing open, the next refusal ends the connection.
	waitFor(t, 5*time.Second, "the session's end", func() bool { return len(e.audits(audit.TypeSessionEnd)) == 1 })
	if s, err := cl.NewSession(); err == nil {
		_ = s.Run("true")
	}
	closed := make(chan struct{})
	go func() { _ = cl.Wait(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("connection with nothing open still up after an expired certificate's refusal")
	}
}

// TestForceCommandChangedOnIdleConnection: the target enforces the forced
// command minted into the connection's session certificate. Once the
// policy's forced command differs (removed, added or changed), a
// connection with no session open cannot go on either: the bastion would
// audit and record one command while the target runs another. Its next
// session is refused and the connection ended, with the reason.
func TestForceCommandChangedOnIdleConnection(t *testing.T) {
	withForced := forcedRoles
	without := strings.Replace(forcedRoles, "    force_command: echo forced \"$SSH_ORIGINAL_COMMAND\"\n", "", 1)
	changed := strings.Replace(forcedRoles, `echo forced "$SSH_ORIGINAL_COMMAND"`, "echo other", 1)
	withRC := strings.Replace(without, "permissions: [pty]", "permissions: [pty, user-rc]", 1)
	for _, tc := range []struct {
		name, before, after, why string
		perms                    []ca.Permission // the user certificate's; nil: the usual
	}{
		{"fail/removed", withForced, without, "the forced command changed", nil},
		{"fail/added", without, withForced, "the forced command changed", nil},
		{"fail/changed", withForced, changed, "the forced command changed", nil},
		// The same for the permission to run ~/.ssh/rc.
		{"fail/user-rc-removed", withRC, without, "~/.ssh/rc is no longer permitted", []ca.Permission{ca.PermitPTY, ca.PermitUserRC}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{policy: tc.before})
			cl := e.webClient(certOptions{perms: tc.perms})
			s, err := cl.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Output("true"); err != nil {
				t.Fatalf("first session: %v", err)
			}
			e.setPolicy(tc.after, "")
			// A refused session is told why on stderr, which stock ssh
			// shows, and exits 255.
			s, err = cl.NewSession()
			if err != nil {
				if strings.Contains(err.Error(), tc.why) {
					return
				}
				t.Fatalf("second session: %v", err)
			}
			out, err := s.CombinedOutput("echo hello")
			var ee *ssh.ExitError
			if !errors.As(err, &ee) || ee.ExitStatus() != 255 || !strings.Contains(string(out), tc.why) || strings.Contains(string(out), "hello") {
				t.Fatalf("second session: %q, %v; want refused because %s", out, err, tc.why)
			}
		})
	}
}
