package bastion

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
)

// holdingListener plays a target that answers with an SSH banner and then
// holds each connection until the bastion closes it, counting them.
type holdingListener struct {
	addr        string
	open, total atomic.Int64
}

func newHoldingListener(t testing.TB) *holdingListener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &holdingListener{addr: l.Addr().String()}
	done := make(chan struct{})
	t.Cleanup(func() { l.Close(); <-done })
	go func() {
		defer close(done)
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			h.open.Add(1)
			h.total.Add(1)
			go func() {
				defer h.open.Add(-1)
				defer nc.Close()
				_, _ = nc.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
				_, _ = io.Copy(io.Discard, nc)
			}()
		}
	}()
	return h
}

// stallingSigner offers its certificate like any other, but signs only
// when released: a client that authenticates up to the signature and then
// waits.
type stallingSigner struct {
	ssh.Signer
	signing chan<- struct{} // told when Sign is reached
	release <-chan struct{}
}

func (s stallingSigner) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	s.signing <- struct{}{}
	<-s.release
	return nil, errors.New("released without signing")
}

// stalledLogin starts an inner login on the ProxyJump tunnel nc that
// offers signer's certificate, which the bastion accepts to be signed, and
// then stalls before signing until the test ends. It returns once the
// login stalls, or fails the test if it does not within 10s.
func stalledLogin(t *testing.T, nc net.Conn, user string, signer ssh.Signer) {
	t.Helper()
	signing, release := make(chan struct{}, 1), make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(release); nc.Close(); <-done })
	go func() {
		defer close(done)
		_, _, _, _ = ssh.NewClientConn(nc, "target:22", &ssh.ClientConfig{
			User:            user,
			Auth:            []ssh.AuthMethod{ssh.PublicKeys(stallingSigner{signer, signing, release})},
			HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		})
	}()
	select {
	case <-signing:
	case <-done:
		t.Fatal("the inner login ended before it was asked to sign")
	case <-time.After(10 * time.Second):
		t.Fatal("the inner login was never asked to sign")
	}
}

// web2Roles grants team infra the test's login on web2 too.
const web2Roles = defaultRoles + `
  - name: web2ops
    members:
      teams: [infra]
    principals: [%[1]s]
    hosts: [web2]
    permissions: []
`

// TestTunnelPendingLimits: a ProxyJump tunnel makes the bastion connect to
// its target only once the inner client offers the carrier's certificate,
// for at most maxPreconnectsPerUser tunnels of one identity at a time; and
// one identity has at most MaxPendingTunnelsPerUser tunnels whose inner
// login has not succeeded, across its connections: more wait for a slot,
// and are refused if none frees in time.
func TestTunnelPendingLimits(t *testing.T) {
	web2 := newHoldingListener(t)
	const pending = 7
	e := newEnv(t, envOptions{
		extraHost: "  - name: web2\n    address: " + web2.addr + "\n",
		policy:    web2Roles,
		configure: func(s *Server) { s.MaxPendingTunnelsPerUser = pending; s.pendingWait = time.Second },
	})
	key, cert := e.issue(certOptions{})
	signer := certSigner(t, key, cert)
	carrier, err := e.xclient("alice", signer)
	if err != nil {
		t.Fatal(err)
	}
	defer carrier.Close()

	var idle []net.Conn
	t.Run("ok/tunnels-alone-dial-nothing", func(t *testing.T) {
		for range 2 {
			nc, err := carrier.Dial("tcp", "web2:22")
			if err != nil {
				t.Fatalf("tunnel: %v", err)
			}
			idle = append(idle, nc)
		}
		time.Sleep(300 * time.Millisecond)
		if n := web2.total.Load(); n != 0 {
			t.Fatalf("web2 saw %d connections from the bastion for tunnels without a login; want 0", n)
		}
	})
	outer := t
	t.Run("ok/preconnects-bounded", func(t *testing.T) {
		for i := range pending - len(idle) {
			nc, err := carrier.Dial("tcp", "web2:22")
			if err != nil {
				t.Fatalf("tunnel %d: %v", i, err)
			}
			stalledLogin(outer, nc, e.login, signer)
		}
		waitFor(t, 5*time.Second, fmt.Sprintf("%d connections to web2 opened ahead", maxPreconnectsPerUser), func() bool {
			return web2.open.Load() == maxPreconnectsPerUser
		})
		time.Sleep(300 * time.Millisecond)
		if n := web2.total.Load(); n != maxPreconnectsPerUser {
			t.Fatalf("web2 saw %d connections; want %d", n, maxPreconnectsPerUser)
		}
	})
	want := fmt.Sprintf("too many ProxyJump tunnels not yet logged in for github:1001 (at most %d)", pending)
	t.Run("fail/too-many-pending", func(t *testing.T) {
		start := time.Now()
		_, err := carrier.Dial("tcp", "web2:22")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("tunnel beyond the limit: %v; want refused with %q", err, want)
		}
		if d := time.Since(start); d < time.Second {
			t.Fatalf("tunnel beyond the limit refused after %s; want it to wait for a slot first", d)
		}
		// The limit is the identity's, not the connection's.
		other, err := e.xclient("alice", signer)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		if _, err := other.Dial("tcp", "web2:22"); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("tunnel on another connection: %v; want refused with %q", err, want)
		}
		if d := e.lastDeny(); d != want {
			t.Fatalf("last deny %q; want %q", d, want)
		}
	})
	t.Run("ok/others-unaffected", func(t *testing.T) {
		rc := e.client(e.issue(certOptions{githubID: 1002, login: "rita"}))
		if r := rc.ssh(nil, rc.jump(e.login, "web1"), "echo in"); r.code != 0 || r.stdout != "in\n" {
			t.Fatalf("rita: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("ok/waits-for-a-closed-tunnel's-slot", func(t *testing.T) {
		// The tunnel beyond the limit waits; closing another frees
		// its slot for it.
		got := make(chan error, 1)
		go func() {
			nc, err := carrier.Dial("tcp", "web2:22")
			if err == nil {
				nc.Close()
			}
			got <- err
		}()
		time.Sleep(200 * time.Millisecond)
		idle[0].Close()
		if err := <-got; err != nil {
			t.Fatalf("tunnel waiting for a slot: %v", err)
		}
	})
}

// TestTunnelsCannotStarveTarget: a member holding many ProxyJump tunnels
// whose logins stall cannot fill the target sshd's MaxStartups, so that
// another person still reaches the same target.
func TestTunnelsCannotStarveTarget(t *testing.T) {
	// A hard MaxStartups of 10: OpenSSH's default (10:30:100) starts
	// refusing at random from 10 unauthenticated connections on.
	e := newEnv(t, envOptions{targetExtra: []string{"MaxStartups 10"}})
	key, cert := e.issue(certOptions{})
	signer := certSigner(t, key, cert)
	held, refused := 0, 0
	for range 4 {
		carrier, err := e.xclient("alice", signer)
		if err != nil {
			t.Fatal(err)
		}
		defer carrier.Close()
		for range 6 {
			nc, err := carrier.Dial("tcp", "web1:22")
			if err != nil {
				if !strings.Contains(err.Error(), "too many ProxyJump tunnels") {
					t.Fatalf("tunnel: %v", err)
				}
				refused++
				continue
			}
			stalledLogin(t, nc, e.login, signer)
			held++
		}
	}
	t.Logf("alice holds %d stalled tunnels to web1 (%d refused)", held, refused)
	time.Sleep(500 * time.Millisecond)
	rc := e.client(e.issue(certOptions{githubID: 1002, login: "rita"}))
	for i, args := range [][]string{rc.direct(e.login, "web1"), rc.jump(e.login, "web1"), rc.direct(e.login, "web1")} {
		if r := rc.ssh(nil, args, "echo in"); r.code != 0 || r.stdout != "in\n" {
			t.Fatalf("rita, attempt %d: code %d stdout %q stderr %q", i, r.code, r.stdout, r.stderr)
		}
	}
}

// TestTunnelOpenRate: a client opening and closing tunnels in a loop gets
// tunnelBurst of them at once and then tunnelRate a second, makes the
// bastion connect to nothing, and writes a bounded number of audit events;
// tunnels that would wait too long for their turn are refused.
func TestTunnelOpenRate(t *testing.T) {
	web2 := newHoldingListener(t)
	e := newEnv(t, envOptions{extraHost: "  - name: web2\n    address: " + web2.addr + "\n", policy: web2Roles})
	key, cert := e.issue(certOptions{})
	signer := certSigner(t, key, cert)
	carrier, err := e.xclient("alice", signer)
	if err != nil {
		t.Fatal(err)
	}
	defer carrier.Close()
	before := len(e.audits(""))
	const loop = 2 * time.Second
	start := time.Now()
	opened := 0
	for time.Since(start) < loop {
		nc, err := carrier.Dial("tcp", "web2:22")
		if err != nil {
			// Closed tunnels may still count as not logged in, and
			// as channels, for the moment the bastion takes to notice.
			if !strings.Contains(err.Error(), "too many ProxyJump tunnels not yet logged in") && !strings.Contains(err.Error(), "too many channels on this connection") {
				t.Fatalf("tunnel: %v", err)
			}
			continue
		}
		nc.Close()
		opened++
	}
	elapsed := time.Since(start)
	if most := tunnelBurst + int(elapsed.Seconds()*tunnelRate) + 1; opened > most {
		t.Fatalf("%d tunnels opened in %s; want at most %d", opened, elapsed, most)
	}
	t.Logf("%d tunnels opened in %s", opened, elapsed)
	time.Sleep(500 * time.Millisecond)
	if n := web2.total.Load(); n != 0 {
		t.Fatalf("web2 saw %d connections from the bastion; want 0", n)
	}

	t.Run("fail/waiting-too-long", func(t *testing.T) {
		// Many connections at once, each opening a tunnel: those whose
		// turn would come after maxTunnelWait are refused.
		const n = 2*tunnelRate*int(maxTunnelWait/time.Second) + 10
		carriers := make([]*ssh.Client, n)
		for i := range carriers {
			if carriers[i], err = e.xclient("alice", signer); err != nil {
				t.Fatal(err)
			}
			defer carriers[i].Close()
		}
		// Use up what the budget regained meanwhile.
		for {
			if wait, ok := e.srv.reserveTunnel("github:1001"); !ok || wait > 0 {
				break
			}
		}
		want := fmt.Sprintf("too many ProxyJump tunnels opened by github:1001 (at most %d a second); try again shortly", tunnelRate)
		errs := make(chan error, n)
		for _, cl := range carriers {
			go func() {
				nc, err := cl.Dial("tcp", "web2:22")
				if err == nil {
					nc.Close()
				}
				errs <- err
			}()
		}
		refused := 0
		for range n {
			if err := <-errs; err != nil && strings.Contains(err.Error(), want) {
				refused++
			}
		}
		if refused == 0 {
			t.Fatalf("no tunnel of %d opened at once was refused with %q", n, want)
		}
		if d := e.lastDeny(); d != want {
			t.Fatalf("last deny %q; want %q", d, want)
		}
	})

	// The carrier is not closed for any of it.
	if _, _, err := carrier.SendRequest("keepalive@openssh.com", true, nil); err != nil {
		t.Fatalf("carrier: %v", err)
	}
	// Per kind of event (opened, closed before a login, refused) at most
	// tunnelAuditBudget's burst and one per refill; the rest in one
	// summary each, written at the latest when the server stops.
	if n, most := len(e.audits(""))-before, 3*(tunnelAuditBudget.burst+1); n > most {
		t.Fatalf("the tunnels wrote %d audit events; want at most %d", n, most)
	}
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	sums := map[string]int{}
	for _, ev := range e.audits("")[before:] {
		if ev.Fields["suppressed"] != "" {
			sums[ev.Type+" "+ev.Outcome]++
			if !strings.Contains(ev.Reason, "like this were not audited one by one") || ev.Actor != "github:1001" {
				t.Errorf("summary %+v", ev)
			}
		}
	}
	if sums[audit.TypePortForward+" "+audit.OutcomeOK] != 1 || sums[audit.TypePortForward+" "+audit.OutcomeError] != 1 {
		t.Fatalf("summaries %v; want one of the tunnels opened and one of those closed before a login", sums)
	}
}

// TestTunnelsAudited: a ProxyJump tunnel is audited under the carrier's
// identity and certificate when it opens, and again when it closes before
// its inner login succeeded; a refused inner login is audited as such,
// naming the carrier's certificate.
func TestTunnelsAudited(t *testing.T) {
	e := newEnv(t, envOptions{})
	key, cert := e.issue(certOptions{})
	c := e.client(key, cert)
	serial := fmt.Sprint(cert.Serial)
	tunnelEvents := func(outcome string) []audit.Event {
		var out []audit.Event
		for _, ev := range e.audits(audit.TypePortForward) {
			if ev.Fields["kind"] == "proxyjump" && ev.Outcome == outcome {
				out = append(out, ev)
			}
		}
		return out
	}
	t.Run("ok/opened", func(t *testing.T) {
		if r := c.ssh(nil, c.jump(e.login, "web1"), "true"); r.code != 0 {
			t.Fatalf("code %d stderr %q", r.code, r.stderr)
		}
		evs := tunnelEvents(audit.OutcomeOK)
		if len(evs) != 1 || evs[0].Actor != "github:1001" || evs[0].Subject != "web1" || evs[0].Fields["serial"] != serial ||
			evs[0].Fields["destination"] != "web1:22" || evs[0].Reason != "ProxyJump tunnel to web1 opened, for one of its certificate's logins" || evs[0].Fields["allowed_login"] == "" {
			t.Fatalf("tunnel events %+v; want one for alice's serial %s to web1:22", evs, serial)
		}
	})
	t.Run("fail/no-login", func(t *testing.T) {
		carrier, err := e.xclient("alice", certSigner(t, key, cert))
		if err != nil {
			t.Fatal(err)
		}
		defer carrier.Close()
		nc, err := carrier.Dial("tcp", "web1:22")
		if err != nil {
			t.Fatal(err)
		}
		nc.Close()
		const want = "ProxyJump tunnel to web1 closed before a login succeeded: the client closed it"
		waitFor(t, 5*time.Second, "the audit of the tunnel closed before its login", func() bool {
			for _, ev := range tunnelEvents(audit.OutcomeError) {
				if ev.Reason == want && ev.Actor == "github:1001" && ev.Fields["serial"] == serial {
					return true
				}
			}
			return false
		})
	})
	t.Run("fail/login-refused", func(t *testing.T) {
		// Audited as a refused login, naming the carrier's certificate.
		other, ocert := e.issue(certOptions{})
		c := e.client(other, ocert)
		r := c.ssh(nil, []string{"-F", c.config, "-o", fmt.Sprintf("ProxyCommand=ssh -F %s -p %d -W %%h:%%p jumper@127.0.0.1", e.client(key, cert).config, e.port), "-l", "nobody", "web1"}, "true")
		const want = `is not valid for login "nobody"`
		if r.code != 255 || !strings.Contains(r.stderr, want) {
			t.Fatalf("code %d stderr %q; want refused with %q", r.code, r.stderr, want)
		}
		d := e.audits(audit.TypeDeny)
		if last := d[len(d)-1]; !strings.Contains(last.Reason, want) || last.Fields["serial"] != fmt.Sprint(ocert.Serial) || last.Fields["carrier_serial"] != serial {
			t.Fatalf("last deny %+v; want the refusal of serial %d through carrier serial %s", last, ocert.Serial, serial)
		}
	})
}

// TestJumpInnerIdentity: the login inside a ProxyJump tunnel must be the
// carrier's identity (any of its certificates), and its refusals name the
// carrier's certificate. The real client is given one certificate for the
// jump and another inside with ProxyCommand.
func TestJumpInnerIdentity(t *testing.T) {
	e := newEnv(t, envOptions{})
	alice := e.client(e.issue(certOptions{}))
	alice2 := e.client(e.issue(certOptions{}))
	rita := e.client(e.issue(certOptions{githubID: 1002, login: "rita"}))
	through := func(inner, jump *client) []string {
		return []string{"-F", inner.config, "-o", fmt.Sprintf("ProxyCommand=ssh -F %s -p %d -W %%h:%%p jumper@127.0.0.1", jump.config, e.port), "-l", e.login, "web1"}
	}
	t.Run("ok/same-person-other-certificate", func(t *testing.T) {
		if r := alice2.ssh(nil, through(alice2, alice), "echo in"); r.code != 0 || r.stdout != "in\n" {
			t.Fatalf("code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("fail/other-person", func(t *testing.T) {
		r := rita.ssh(nil, through(rita, alice), "echo in")
		want := "but the ProxyJump connection it came through is github:1001's"
		if r.code != 255 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "is github:1002's") {
			t.Fatalf("got code %d stdout %q stderr %q; want refused with %q", r.code, r.stdout, r.stderr, want)
		}
		d := e.audits(audit.TypeDeny)
		if last := d[len(d)-1]; last.Actor != "github:1002" || !strings.Contains(last.Reason, want) || last.Fields["carrier_serial"] == "" {
			t.Fatalf("last deny %+v; want rita's refusal naming the carrier's serial", last)
		}
	})
}

// TestJumpLoginNotCounted: the login inside a ProxyJump tunnel does not
// count against MaxConnectionsPerUser as a connection (the carrier does),
// so ssh -J does not halve it; logins through ProxyJump are bounded by it
// apart, and must be the carrier's person.
func TestJumpLoginNotCounted(t *testing.T) {
	e := newEnv(t, envOptions{configure: func(s *Server) { s.MaxConnectionsPerUser = 2 }})
	key, cert := e.issue(certOptions{})
	carrier, err := e.xclient("alice", certSigner(t, key, cert))
	if err != nil {
		t.Fatal(err)
	}
	defer carrier.Close()
	checker := &ssh.CertChecker{IsHostAuthority: func(k ssh.PublicKey, _ string) bool { return true }}
	login := func() (*ssh.Client, error) {
		nc, err := carrier.Dial("tcp", "web1:22")
		if err != nil {
			return nil, err
		}
		c, chans, reqs, err := ssh.NewClientConn(nc, "web1:22", &ssh.ClientConfig{
			User: e.login, Auth: []ssh.AuthMethod{ssh.PublicKeys(certSigner(t, key, cert))},
			HostKeyCallback: checker.CheckHostKey, Timeout: 10 * time.Second,
		})
		if err != nil {
			return nil, err
		}
		cl := ssh.NewClient(c, chans, reqs)
		s, err := cl.NewSession()
		if err != nil {
			cl.Close()
			return nil, err
		}
		defer s.Close()
		out, err := s.Output("echo in")
		if err == nil && string(out) != "in\n" {
			err = fmt.Errorf("output %q", out)
		}
		if err != nil {
			cl.Close()
			return nil, err
		}
		return cl, nil
	}
	// The carrier is one connection; two logins through it are held.
	var held []*ssh.Client
	for i := range 2 {
		cl, err := login()
		if err != nil {
			t.Fatalf("login %d through the carrier: %v", i, err)
		}
		held = append(held, cl)
	}
	// A third login through ProxyJump is refused while two are held.
	const wantInner = "too many logins through ProxyJump for github:1001 (at most 2)"
	if cl, err := login(); err == nil || !strings.Contains(err.Error(), wantInner) {
		if cl != nil {
			cl.Close()
		}
		t.Fatalf("a third login through ProxyJump: %v; want refused with %q", err, wantInner)
	}
	for _, cl := range held {
		cl.Close()
	}
	waitFor(t, 5*time.Second, "the logins through ProxyJump to end", func() bool {
		e.srv.mu.Lock()
		defer e.srv.mu.Unlock()
		return e.srv.innerConns["github:1001"] == 0
	})
	// The real client, alone (a jump connection and a login), is the
	// second connection.
	c := e.client(key, cert)
	if r := c.ssh(nil, c.jump(e.login, "web1"), "echo in"); r.code != 0 || r.stdout != "in\n" {
		t.Fatalf("ssh -J: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	waitFor(t, 5*time.Second, "the ssh -J connection to end", func() bool {
		e.srv.mu.Lock()
		defer e.srv.mu.Unlock()
		return e.srv.userConns["github:1001"] == 1
	})
	// A third connection to the bastion is refused while two are held.
	second, err := e.xclient("alice", certSigner(t, key, cert))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	const want = "too many connections for github:1001 (at most 2)"
	if r := c.ssh(nil, c.direct(e.login, "web1"), "true"); r.code != 255 || !strings.Contains(r.stderr, want) {
		t.Fatalf("a third connection: code %d stderr %q; want refused with %q", r.code, r.stderr, want)
	}
	if d := e.lastDeny(); d != want {
		t.Fatalf("last deny %q; want %q", d, want)
	}
}
