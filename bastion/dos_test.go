package bastion

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/policy"
	"github.com/sallyport/sallyport/store"
)

// logLines is a Logger sink that keeps the lines and copies them to the
// test log.
type logLines struct {
	t   testing.TB
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.buf.Write(p)
	l.mu.Unlock()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// count returns how many lines contain s.
func (l *logLines) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

// dialFrom opens a raw TCP connection to addr from the loopback address
// from.
func dialFrom(t testing.TB, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// holdRaw opens a raw TCP connection from from and waits for the
// bastion's version line, so that the connection is being served; it
// then sends nothing, as an attacker holding a slot would.
func holdRaw(t testing.TB, from, addr string) net.Conn {
	t.Helper()
	nc, err := tryHold(t, from, addr)
	if err != nil {
		t.Fatal(err)
	}
	return nc
}

// tryHold is holdRaw, returning an error when the bastion does not serve
// the connection.
func tryHold(t testing.TB, from, addr string) (net.Conn, error) {
	t.Helper()
	nc := dialFrom(t, from, addr)
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(nc).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "SSH-2.0-") {
		nc.Close()
		return nil, fmt.Errorf("connection from %s: got %q, %v; want the SSH version line", from, line, err)
	}
	return nc, nil
}

// refusedRaw checks that a raw TCP connection from from is closed at once,
// before the bastion says anything.
func refusedRaw(t testing.TB, from, addr string) {
	t.Helper()
	nc := dialFrom(t, from, addr)
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := nc.Read(make([]byte, 64)); err == nil || isTimeout(err) {
		t.Fatalf("connection from %s: read %d bytes, %v; want closed at once", from, n, err)
	}
	nc.Close()
}

// waitingRaw opens a raw TCP connection from from that the bastion keeps
// waiting for a handshake slot: it says nothing for a while. ready is
// closed when the version line arrives (a slot was taken).
func waitingRaw(t testing.TB, from, addr string) (ready chan struct{}) {
	t.Helper()
	nc := dialFrom(t, from, addr)
	ready = make(chan struct{})
	go func() {
		_ = nc.SetReadDeadline(time.Now().Add(20 * time.Second))
		line, err := bufio.NewReader(nc).ReadString('\n')
		if err == nil && strings.HasPrefix(line, "SSH-2.0-") {
			close(ready)
		}
	}()
	select {
	case <-ready:
		t.Fatalf("connection from %s served at once; want it to wait for a slot", from)
	case <-time.After(300 * time.Millisecond):
	}
	return ready
}

func TestStartupLimits(t *testing.T) {
	t.Run("per-source", func(t *testing.T) {
		logs := &logLines{t: t}
		e := newEnv(t, envOptions{configure: func(s *Server) {
			s.MaxStartupsPerSource = 3
			s.Logger = slog.New(slog.NewTextHandler(logs, nil))
		}})
		// An attacker holds every slot of 127.0.0.1 with idle TCP
		// connections; as many more wait for a slot, and more than
		// that are refused, logged once.
		held := make([]net.Conn, 3)
		for i := range held {
			held[i] = holdRaw(t, "127.0.0.1", e.addr)
		}
		var waiting []chan struct{}
		for range 3 {
			waiting = append(waiting, waitingRaw(t, "127.0.0.1", e.addr))
		}
		for range 5 {
			refusedRaw(t, "127.0.0.1", e.addr)
		}
		if n := logs.count("from one source"); n != 1 {
			t.Fatalf("got %d log lines about the refusals; want 1", n)
		}
		// A user from another address still gets in.
		c := e.client(e.issue(certOptions{}))
		r := c.ssh(nil, c.direct(e.login, "web1", "-b", "127.0.0.2"), "echo in")
		if r.code != 0 || r.stdout != "in\n" {
			t.Fatalf("login from 127.0.0.2 while 127.0.0.1 holds its slots: got code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
		// A slot that frees goes to a waiting connection.
		held[0].Close()
		select {
		case <-waiting[0]:
		case <-waiting[1]:
		case <-waiting[2]:
		case <-time.After(10 * time.Second):
			t.Fatal("no waiting connection was served after a slot freed")
		}
	})
	t.Run("burst", func(t *testing.T) {
		// Stock clients from one address, more at once than may be in
		// their handshake (ansible with many forks): all get in. Two
		// idle connections hold both slots first, so the clients must
		// wait for them.
		e := newEnv(t, envOptions{configure: func(s *Server) { s.MaxStartupsPerSource = 2 }})
		held := []net.Conn{holdRaw(t, "127.0.0.1", e.addr), holdRaw(t, "127.0.0.1", e.addr)}
		c := e.client(e.issue(certOptions{}))
		var wg sync.WaitGroup
		errs := make(chan string, 2)
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := c.ssh(nil, c.direct(e.login, "web1"), fmt.Sprintf("echo in-%d", i))
				if r.code != 0 || r.stdout != fmt.Sprintf("in-%d\n", i) {
					errs <- fmt.Sprintf("client %d: code %d stdout %q stderr %q", i, r.code, r.stdout, r.stderr)
				}
			}()
		}
		time.Sleep(500 * time.Millisecond)
		for _, nc := range held {
			nc.Close()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	})
	t.Run("total", func(t *testing.T) {
		e := newEnv(t, envOptions{configure: func(s *Server) { s.MaxStartups = 2 }})
		first := holdRaw(t, "127.0.0.3", e.addr)
		// An authenticated connection holds no startup slot.
		key, cert := e.issue(certOptions{})
		cl, err := e.xclient(e.login+"@web1", certSigner(t, key, cert))
		if err != nil {
			t.Fatalf("login with one slot free: %v", err)
		}
		defer cl.Close()
		// The server may release the slot just after the client sees
		// its login succeed.
		waitFor(t, 5*time.Second, "the slot of the authenticated connection", func() bool {
			_, err := tryHold(t, "127.0.0.4", e.addr)
			return err == nil
		})
		// Both slots are held: the next connection waits, and is served
		// once one frees.
		ready := waitingRaw(t, "127.0.0.5", e.addr)
		first.Close()
		select {
		case <-ready:
		case <-time.After(10 * time.Second):
			t.Fatal("the waiting connection was not served after a slot freed")
		}
	})
	t.Run("timeout", func(t *testing.T) {
		e := newEnv(t, envOptions{configure: func(s *Server) { s.MaxStartups = 1 }})
		if err := e.srv.init(); err != nil { // Serve may not have yet
			t.Fatal(err)
		}
		a := &net.TCPAddr{IP: net.ParseIP("127.0.0.8"), Port: 1}
		release, _, _ := e.srv.startup(context.Background(), a)
		if release == nil {
			t.Fatal("no slot for the first connection")
		}
		// No slot frees within the deadline: refused, with the cause.
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		got, rl, why := e.srv.startup(ctx, &net.TCPAddr{IP: net.ParseIP("127.0.0.9"), Port: 1})
		if got != nil || rl == nil || why != "too many connections not yet authenticated" {
			t.Fatalf("got %v, %v, %q; want refused after the deadline", got != nil, rl != nil, why)
		}
		// As many may wait as may be in their handshake; one more is
		// refused at once.
		waiter := make(chan func(), 1)
		go func() {
			got, _, _ := e.srv.startup(context.Background(), &net.TCPAddr{IP: net.ParseIP("127.0.0.10"), Port: 1})
			waiter <- got
		}()
		waitFor(t, 5*time.Second, "a connection waiting", func() bool {
			e.srv.startMu.Lock()
			defer e.srv.startMu.Unlock()
			return e.srv.nwaiting == 1
		})
		start := time.Now()
		ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel2()
		if got, _, why := e.srv.startup(ctx2, &net.TCPAddr{IP: net.ParseIP("127.0.0.11"), Port: 1}); got != nil || why == "" || time.Since(start) > 5*time.Second {
			t.Fatalf("a second waiter: got a slot %v, %q after %v; want refused at once", got != nil, why, time.Since(start))
		}
		release()
		release() // more than once is harmless
		second := <-waiter
		if second == nil {
			t.Fatal("the waiting connection got no slot when the first was released")
		}
		second()
		if got, _, _ := e.srv.startup(context.Background(), a); got == nil {
			t.Fatal("no slot after the first was released")
		}
	})
}

func TestSourceOf(t *testing.T) {
	for _, tc := range []struct {
		name   string
		remote net.Addr
		want   string
	}{
		{"ok/ipv4", &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 1}, "192.0.2.7"},
		{"ok/ipv4-mapped", &net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 1}, "192.0.2.7"},
		{"ok/ipv6-by-64", &net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), Port: 1}, "2001:db8:1:2::"},
		{"ok/ipv6-zone", &net.TCPAddr{IP: net.ParseIP("fe80::1"), Zone: "eth0", Port: 1}, "fe80::"},
		{"fail/unix", &net.UnixAddr{Name: "/run/s", Net: "unix"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := sourceOf(tc.remote)
			if want := tc.want != ""; ok != want || (ok && got != netip.MustParseAddr(tc.want)) {
				t.Fatalf("got %v %v; want %q", got, ok, tc.want)
			}
		})
	}
}

// countingListener counts the TCP connections made to it.
type countingListener struct {
	addr    string
	accepts atomic.Int64
}

func newCountingListener(t testing.TB) *countingListener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	cl := &countingListener{addr: l.Addr().String()}
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			cl.accepts.Add(1)
			nc.Close()
		}
	}()
	return cl
}

// TestTunnelNeedsGrant: the bastion dials a ProxyJump target only for a
// carrier granted a login there; others are refused at once.
func TestTunnelNeedsGrant(t *testing.T) {
	web2 := newCountingListener(t)
	e := newEnv(t, envOptions{
		extraHost: "  - name: web2\n    address: " + web2.addr + "\n",
		policy: defaultRoles + `
  - name: web2ops
    members:
      teams: [infra]
    principals: [%[1]s]
    hosts: [web2]
    permissions: []
`,
	})

	t.Run("fail/no-grant", func(t *testing.T) {
		// rita (team readers) is granted web1 only.
		c := e.client(e.issue(certOptions{githubID: 1002, login: "rita"}))
		r := c.ssh(nil, c.jump(e.login, "web2"), "true")
		// At the tunnel, the inner login is not known yet: the message
		// names the certificate's logins, all of which were tried.
		want := "ProxyJump to web2 refused: none of the logins of certificate serial"
		if r.code != 255 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, e.login+"@web2 denied: no role of") {
			t.Fatalf("got code %d stderr %q; want 255 and %q", r.code, r.stderr, want)
		}
		if d := e.lastDeny(); !strings.Contains(d, want) {
			t.Fatalf("last deny %q; want %q", d, want)
		}
		time.Sleep(200 * time.Millisecond)
		if n := web2.accepts.Load(); n != 0 {
			t.Fatalf("web2 saw %d connections from the bastion; want 0", n)
		}
	})

	t.Run("ok/person-granted-dials-after-login", func(t *testing.T) {
		// alice's certificate names only a login granted nowhere on web2,
		// but alice is granted another there: the tunnel opens (her agent
		// may hold a newer certificate for the inner login), and the
		// target is not dialled for this certificate's offer.
		key, cert := e.issue(certOptions{principals: []string{"narrowonly"}})
		carrier, err := e.xclient("alice", certSigner(t, key, cert))
		if err != nil {
			t.Fatal(err)
		}
		defer carrier.Close()
		before := web2.accepts.Load()
		nc, err := carrier.Dial("tcp", "web2:22")
		if err != nil {
			t.Fatalf("tunnel to web2 for a person granted there: %v", err)
		}
		defer nc.Close()
		stalledLogin(t, nc, e.login, certSigner(t, key, cert))
		time.Sleep(300 * time.Millisecond)
		if n := web2.accepts.Load() - before; n != 0 {
			t.Fatalf("web2 saw %d connections from the bastion for a certificate with no login there; want 0", n)
		}
	})

	key, cert := e.issue(certOptions{})
	carrier, err := e.xclient("alice", certSigner(t, key, cert))
	if err != nil {
		t.Fatal(err)
	}
	defer carrier.Close()
	t.Run("ok/granted", func(t *testing.T) {
		nc, err := carrier.Dial("tcp", "web2:22")
		if err != nil {
			t.Fatalf("tunnel to web2: %v", err)
		}
		defer nc.Close()
		// The target is dialled once the inner login offers the
		// carrier's certificate (see TestTunnelPendingLimits).
		stalledLogin(t, nc, e.login, certSigner(t, key, cert))
		waitFor(t, 5*time.Second, "the bastion's connection to web2", func() bool { return web2.accepts.Load() == 1 })
	})
	t.Run("fail/no-longer-a-member", func(t *testing.T) {
		e.dirs.set(1001, policy.Identity{}, false)
		defer e.dirs.set(1001, policy.Identity{Login: "alice", Teams: []string{"infra"}}, true)
		before := web2.accepts.Load()
		if _, err := carrier.Dial("tcp", "web2:22"); err == nil || !strings.Contains(err.Error(), "not a current member") {
			t.Fatalf("tunnel after leaving the organisation: %v; want refused", err)
		}
		time.Sleep(200 * time.Millisecond)
		if n := web2.accepts.Load(); n != before {
			t.Fatalf("web2 saw %d new connections; want 0", n-before)
		}
	})
	t.Run("fail/revoked-since-login", func(t *testing.T) {
		if err := e.store.Revoke(context.Background(), store.Revocation{Serial: cert.Serial, Reason: "laptop lost", Actor: "test"}); err != nil {
			t.Fatal(err)
		}
		before := web2.accepts.Load()
		if _, err := carrier.Dial("tcp", "web2:22"); err == nil || !strings.Contains(err.Error(), "has been revoked") {
			t.Fatalf("tunnel after revocation: %v; want refused", err)
		}
		time.Sleep(200 * time.Millisecond)
		if n := web2.accepts.Load(); n != before {
			t.Fatalf("web2 saw %d new connections; want 0", n-before)
		}
	})
}

// TestJumpIdleTimeout: through ProxyJump, as directly, only session and
// forward data count as activity, not the client's keepalives.
func TestJumpIdleTimeout(t *testing.T) {
	e := newEnv(t, envOptions{configure: func(s *Server) { s.IdleTimeout = 3 * time.Second }})
	c := e.client(e.issue(certOptions{}))
	t.Run("fail/keepalives-only", func(t *testing.T) {
		start := time.Now()
		r := c.ssh(nil, c.jump(e.login, "web1", "-o", "ServerAliveInterval=1"), "sleep 20")
		if r.code != 255 || !strings.Contains(r.stderr, "idle for more than") {
			t.Fatalf("got code %d stderr %q after %s; want ended as idle", r.code, r.stderr, time.Since(start))
		}
		waitFor(t, 5*time.Second, "session.end with the idle reason", func() bool {
			for _, ev := range e.audits(audit.TypeSessionEnd) {
				if strings.Contains(ev.Reason, "idle") {
					return true
				}
			}
			return false
		})
	})
	t.Run("ok/data", func(t *testing.T) {
		r := c.ssh(nil, c.jump(e.login, "web1", "-o", "ServerAliveInterval=1"), "for i in 1 2 3 4 5 6 7 8; do echo $i; sleep 0.7; done")
		if r.code != 0 || r.stdout != "1\n2\n3\n4\n5\n6\n7\n8\n" {
			t.Fatalf("got code %d stdout %q stderr %q; want a session kept alive by its output", r.code, r.stdout, r.stderr)
		}
	})
}

// TestRefusalBudget: a client spamming refused requests gets
// maxRefusals of them audited, then one audit that the connection is
// closed, and the connection closed.
func TestRefusalBudget(t *testing.T) {
	const spam = 3 * maxRefusals
	for _, tc := range []struct {
		name string
		// session says the requests go to a session on a connection
		// naming web1, not to a ProxyJump carrier.
		session bool
		// perms are the certificate's; nil means the default.
		perms []ca.Permission
		// refuse sends one refused request; an error means the
		// connection is gone.
		refuse func(cl *ssh.Client, sess *ssh.Session, signer ssh.Signer) error
	}{
		{"fail/tcpip-forward-on-carrier", false, nil, func(cl *ssh.Client, _ *ssh.Session, _ ssh.Signer) error {
			_, _, err := cl.SendRequest("tcpip-forward", true, ssh.Marshal(struct {
				Addr string
				Port uint32
			}{"127.0.0.1", 0}))
			return err
		}},
		{"fail/channel-type-on-carrier", false, nil, func(cl *ssh.Client, _ *ssh.Session, _ ssh.Signer) error {
			_, _, err := cl.OpenChannel("tun@openssh.com", nil)
			var oe *ssh.OpenChannelError
			if errors.As(err, &oe) {
				return nil
			}
			return err
		}},
		{"fail/inner-login-through-tunnels", false, nil, func(cl *ssh.Client, _ *ssh.Session, signer ssh.Signer) error {
			// Each tunnel is granted; its inner connection asks for a
			// login the certificate does not hold.
			nc, err := cl.Dial("tcp", "web1:22")
			if err != nil {
				return err
			}
			defer nc.Close()
			_, _, _, err = ssh.NewClientConn(nc, "web1:22", &ssh.ClientConfig{
				User:            "nobody",
				Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
				HostKeyCallback: ssh.InsecureIgnoreHostKey(),
				Timeout:         5 * time.Second,
			})
			if err == nil {
				return errors.New("inner login as nobody accepted")
			}
			return nil
		}},
		{"fail/forward-not-permitted", true, []ca.Permission{ca.PermitPTY}, func(cl *ssh.Client, _ *ssh.Session, _ ssh.Signer) error {
			_, err := cl.Dial("tcp", "127.0.0.1:9")
			var oe *ssh.OpenChannelError
			if errors.As(err, &oe) {
				return nil
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			key, cert := e.issue(certOptions{perms: tc.perms})
			signer := certSigner(t, key, cert)
			user := "alice"
			if tc.session {
				user = e.login + "@web1"
			}
			cl, err := e.xclient(user, signer)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			var sess *ssh.Session
			if tc.session {
				if sess, err = cl.NewSession(); err != nil {
					t.Fatal(err)
				}
			}
			// Keepalives are answered, not refusals.
			for range spam {
				if _, _, err := cl.SendRequest("keepalive@openssh.com", true, nil); err != nil {
					t.Fatalf("keepalive: %v", err)
				}
			}
			sent := 0
			for sent < spam {
				if tc.refuse(cl, sess, signer) != nil {
					break
				}
				sent++
			}
			closed := make(chan struct{})
			go func() { _ = cl.Wait(); close(closed) }()
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
				t.Fatalf("connection still open after %d refused requests", sent)
			}
			serial := fmt.Sprint(cert.Serial)
			var refusals, closing int
			waitFor(t, 5*time.Second, "the audit of the closing", func() bool {
				refusals, closing = 0, 0
				for _, ev := range append(e.audits(audit.TypeDeny), e.audits(audit.TypePortForward)...) {
					switch {
					case ev.Fields["serial"] != serial || ev.Outcome != audit.OutcomeDenied:
					case strings.Contains(ev.Reason, "too many refused requests"):
						closing++
					default:
						refusals++
					}
				}
				return closing > 0
			})
			if refusals != maxRefusals || closing != 1 {
				t.Fatalf("got %d refusals and %d closings audited; want %d and 1", refusals, closing, maxRefusals)
			}
		})
	}
}

// TestConfiguredRequestsNotCounted: agent and X11 requests, which stock
// clients send on every session when configured to (ForwardAgent,
// ForwardX11, repeated by a ControlMaster for each session), are refused
// and audited once per session, and never close the connection.
func TestConfiguredRequestsNotCounted(t *testing.T) {
	e := newEnv(t, envOptions{})
	key, cert := e.issue(certOptions{perms: []ca.Permission{ca.PermitPTY}})
	cl, err := e.xclient(e.login+"@web1", certSigner(t, key, cert))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const sessions = 2 * maxRefusals
	for i := range sessions {
		sess, err := cl.NewSession()
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		for range 3 {
			if ok, err := sess.SendRequest("auth-agent-req@openssh.com", true, nil); ok || err != nil {
				t.Fatalf("session %d: agent request granted %t, %v; want refused", i, ok, err)
			}
			if ok, err := sess.SendRequest("x11-req", true, ssh.Marshal(struct {
				Single        bool
				Proto, Cookie string
				Screen        uint32
			}{false, "MIT-MAGIC-COOKIE-1", "00", 0})); ok || err != nil {
				t.Fatalf("session %d: x11 request granted %t, %v; want refused", i, ok, err)
			}
		}
		out, err := sess.Output("echo ok")
		if err != nil || string(out) != "ok\n" {
			t.Fatalf("session %d: %q %v", i, out, err)
		}
	}
	serial := fmt.Sprint(cert.Serial)
	var agent, x11 int
	for _, ev := range e.audits(audit.TypeDeny) {
		switch {
		case ev.Fields["serial"] != serial:
		case strings.Contains(ev.Reason, "agent forwarding is not permitted"):
			agent++
		case strings.Contains(ev.Reason, "X11 forwarding is not supported"):
			x11++
		default:
			t.Errorf("unexpected refusal %q", ev.Reason)
		}
	}
	if agent != sessions || x11 != sessions {
		t.Fatalf("audited %d agent and %d X11 refusals; want %d each (one per session)", agent, x11, sessions)
	}
}

// TestConnectionsPerUser: one identity holds at most MaxConnectionsPerUser
// authenticated connections; one more is refused with the reason on its
// first channel, audited, and others are not affected.
func TestConnectionsPerUser(t *testing.T) {
	e := newEnv(t, envOptions{configure: func(s *Server) { s.MaxConnectionsPerUser = 2 }})
	key, cert := e.issue(certOptions{})
	held := []*ssh.Client{}
	for range 2 {
		cl, err := e.xclient(e.login+"@web1", certSigner(t, key, cert))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		held = append(held, cl)
	}
	c := e.client(key, cert)
	const want = "too many connections for github:1001 (at most 2)"
	for _, args := range [][]string{c.direct(e.login, "web1"), c.jump(e.login, "web1")} {
		r := c.ssh(nil, args, "true")
		if r.code != 255 || !strings.Contains(r.stderr, want) {
			t.Fatalf("third connection: code %d stderr %q; want refused with %q", r.code, r.stderr, want)
		}
	}
	if d := e.lastDeny(); d != want {
		t.Fatalf("last deny %q; want %q", d, want)
	}
	// Another person is not affected.
	rc := e.client(e.issue(certOptions{githubID: 1002, login: "rita"}))
	if r := rc.ssh(nil, rc.direct(e.login, "web1"), "echo in"); r.code != 0 || r.stdout != "in\n" {
		t.Fatalf("another user: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	// A slot comes back when a connection ends.
	held[0].Close()
	waitFor(t, 5*time.Second, "a connection slot for alice again", func() bool {
		return c.ssh(nil, c.direct(e.login, "web1"), "true").code == 0
	})
}
