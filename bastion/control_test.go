package bastion

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/policy"
	"github.com/sallyport/sallyport/store"
)

// syncBuffer is a bytes.Buffer safe for one writer and readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// liveSession starts the real client running a long command and returns
// it with its stderr and a channel closed when it exits.
func liveSession(t *testing.T, c *client, args []string) (*exec.Cmd, *syncBuffer, chan struct{}) {
	t.Helper()
	cmd := exec.Command("ssh", append(args, "--", "echo started; sleep 60")...)
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	waitFor(t, 10*time.Second, "the session to start", func() bool {
		select {
		case <-done:
			t.Fatalf("client exited early: %s", stderr.String())
		default:
		}
		return strings.Contains(stdout.String(), "started")
	})
	return cmd, &stderr, done
}

// TestContinuousAuthorisation: revocation, a policy change and a team
// change each end a live session, with a message and an audit record.
func TestContinuousAuthorisation(t *testing.T) {
	e := newEnv(t, envOptions{configure: func(s *Server) { s.SweepInterval = time.Hour }})
	for _, tc := range []struct {
		name, message string
		change        func(cert *ssh.Certificate)
		undo          func()
	}{
		{"revocation", "has been revoked", func(cert *ssh.Certificate) {
			if err := e.store.Revoke(context.Background(), store.Revocation{Serial: cert.Serial, Reason: "left the project", Actor: "test"}); err != nil {
				t.Fatal(err)
			}
		}, func() {}},
		{"policy", "no role", func(*ssh.Certificate) {
			e.setPolicy(`
  - name: others
    members:
      teams: [others]
    principals: [%[1]s]
    hosts: [web1]
`, "")
		}, func() { e.setPolicy(defaultRoles, "") }},
		{"teams", "not a current member", func(*ssh.Certificate) {
			e.dirs.set(1001, policy.Identity{}, false)
		}, func() { e.dirs.set(1001, policy.Identity{Login: "alice", Teams: []string{"infra"}}, true) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, jump := range []bool{false, true} {
				key, cert := e.issue(certOptions{})
				c := e.client(key, cert)
				args := c.direct(e.login, "web1")
				if jump {
					args = c.jump(e.login, "web1")
				}
				_, stderr, done := liveSession(t, c, args)
				tc.change(cert)
				start := time.Now()
				e.srv.Reevaluate(tc.name + " changed")
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					t.Fatal("session still running 10s after the change")
				}
				if !strings.Contains(stderr.String(), "session ended: ") || !strings.Contains(stderr.String(), tc.message) {
					t.Fatalf("stderr %q; want the reason %q", stderr.String(), tc.message)
				}
				t.Logf("ended %s after the change", time.Since(start))
				if d := e.lastDeny(); !strings.Contains(d, "live session ended") || !strings.Contains(d, tc.message) {
					t.Fatalf("last deny %q", d)
				}
				tc.undo()
			}
		})
	}
}

// TestPeriodicSweep: without any notification, a policy change ends a
// live session within the sweep interval.
func TestPeriodicSweep(t *testing.T) {
	e := newEnv(t, envOptions{configure: func(s *Server) { s.SweepInterval = 300 * time.Millisecond }})
	c := e.client(e.issue(certOptions{}))
	_, stderr, done := liveSession(t, c, c.direct(e.login, "web1"))
	e.pol.Store(nil)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("session still running after the policy was withdrawn")
	}
	if !strings.Contains(stderr.String(), "no policy is loaded") {
		t.Fatalf("stderr %q", stderr.String())
	}
}

func TestLimits(t *testing.T) {
	t.Run("sessions-per-user", func(t *testing.T) {
		e := newEnv(t, envOptions{configure: func(s *Server) { s.MaxSessionsPerUser = 1 }})
		key, cert := e.issue(certOptions{})
		c := e.client(key, cert)
		liveSession(t, c, c.direct(e.login, "web1"))
		r := c.ssh(nil, c.direct(e.login, "web1"), "true")
		if r.code != 255 || !strings.Contains(r.stderr, "too many open sessions") {
			t.Fatalf("got code %d stderr %q", r.code, r.stderr)
		}
	})
	t.Run("forwards-per-user", func(t *testing.T) {
		e := newEnv(t, envOptions{configure: func(s *Server) { s.MaxForwardsPerUser = 1 }})
		key, cert := e.issue(certOptions{})
		dest := "127.0.0.1:" + strconv.Itoa(e.target.Port)
		var cls [2]*ssh.Client
		for i := range cls {
			cl, err := e.xclient(e.login+"@web1", certSigner(t, key, cert))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			cls[i] = cl
		}
		// A forward held open on one connection counts against a new one
		// on another.
		first, err := cls[0].Dial("tcp", dest)
		if err != nil {
			t.Fatalf("first forward: %v", err)
		}
		if _, err := cls[1].Dial("tcp", dest); err == nil || !strings.Contains(err.Error(), "too many open port forwards") {
			t.Fatalf("second forward: %v; want refused", err)
		}
		waitFor(t, 5*time.Second, "the refusal's audit record", func() bool {
			for _, ev := range e.audits(audit.TypeDeny) {
				if strings.Contains(ev.Reason, "too many open port forwards") {
					return true
				}
			}
			return false
		})
		// Closing the first forward frees its place.
		first.Close()
		waitFor(t, 5*time.Second, "a forward after the first closed", func() bool {
			c, err := cls[1].Dial("tcp", dest)
			if err != nil {
				return false
			}
			c.Close()
			return true
		})
	})
	t.Run("channels-per-connection", func(t *testing.T) {
		e := newEnv(t, envOptions{configure: func(s *Server) { s.MaxChannelsPerConn = 2 }})
		key, cert := e.issue(certOptions{})
		cl, err := e.xclient(e.login+"@web1", certSigner(t, key, cert))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for i := range 2 {
			if _, err := cl.NewSession(); err != nil {
				t.Fatalf("session %d: %v", i, err)
			}
		}
		if _, err := cl.NewSession(); err == nil || !strings.Contains(err.Error(), "too many channels") {
			t.Fatalf("third session: %v; want refused", err)
		}
	})
	t.Run("connections", func(t *testing.T) {
		e := newEnv(t, envOptions{configure: func(s *Server) { s.MaxConnections = 1 }})
		first, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		first.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := first.Read(make([]byte, 8)); err != nil {
			t.Fatalf("first connection: %v", err)
		}
		second, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer second.Close()
		second.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := second.Read(make([]byte, 8)); err == nil {
			t.Fatalf("second connection got %d bytes; want closed", n)
		}
	})
	t.Run("handshake-timeout", func(t *testing.T) {
		e := newEnv(t, envOptions{configure: func(s *Server) { s.HandshakeTimeout = 300 * time.Millisecond }})
		conn, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		buf := make([]byte, 1024)
		for {
			if _, err := conn.Read(buf); err != nil {
				break
			}
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("silent client held the connection for %s", d)
		}
	})
	t.Run("idle-timeout", func(t *testing.T) {
		e := newEnv(t, envOptions{configure: func(s *Server) { s.IdleTimeout = 500 * time.Millisecond }})
		c := e.client(e.issue(certOptions{}))
		r := c.ssh(nil, c.direct(e.login, "web1"), "sleep 20")
		if r.code != 255 || !strings.Contains(r.stderr, "idle for more than") {
			t.Fatalf("got code %d stderr %q", r.code, r.stderr)
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
}

// multiplexer returns ssh arguments making a client the ControlMaster of a
// control socket, and arguments making it a multiplexed client of it.
func multiplexer(t *testing.T) (master, slave []string) {
	t.Helper()
	// Unix socket paths are short: not under t.TempDir().
	dir, err := os.MkdirTemp("", "spcm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "m")
	return []string{"-o", "ControlMaster=yes", "-o", "ControlPath=" + path, "-o", "ControlPersist=no"},
		[]string{"-o", "ControlMaster=no", "-o", "ControlPath=" + path}
}

// TestNewChannelRechecked: a session opened over an existing connection
// (ssh -o ControlMaster) is refused once the certificate expired, or was
// revoked, even before any re-evaluation: with one line saying why, an
// audit record, and the end of the sessions already open.
func TestNewChannelRechecked(t *testing.T) {
	e := newEnv(t, envOptions{configure: func(s *Server) { s.SweepInterval = time.Hour }})
	for _, tc := range []struct {
		name   string
		change func(cert *ssh.Certificate) (reason string)
		undo   func()
		// endsLive says the sessions already open end too: not for
		// expiry, which a live session outlives, as with OpenSSH.
		endsLive bool
	}{
		{"fail/expired", func(cert *ssh.Certificate) string {
			e.offset.Store(int64(2 * time.Minute))
			return fmt.Sprintf("certificate serial %d has expired; sign in again with 'sallyport login'", cert.Serial)
		}, func() { e.offset.Store(0) }, false},
		{"fail/revoked", func(cert *ssh.Certificate) string {
			if err := e.store.Revoke(context.Background(), store.Revocation{Serial: cert.Serial, Reason: "laptop lost", Actor: "test"}); err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf(`certificate serial %d has been revoked ("laptop lost")`, cert.Serial)
		}, func() {}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, jump := range []bool{false, true} {
				key, cert := e.issue(certOptions{ttl: time.Minute})
				c := e.client(key, cert)
				master, mux := multiplexer(t)
				form := c.direct
				if jump {
					form = c.jump
				}
				_, stderr, done := liveSession(t, c, form(e.login, "web1", master...))
				if r := c.ssh(nil, form(e.login, "web1", mux...), "echo second"); r.code != 0 || r.stdout != "second\n" {
					t.Fatalf("second session before the change: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
				}
				reason := tc.change(cert)
				r := c.ssh(nil, form(e.login, "web1", mux...), "echo third")
				if want := "sallyport: " + reason + "\r\n"; r.code != 255 || r.stdout != "" || r.stderr != want {
					t.Fatalf("third session: code %d stdout %q stderr %q; want 255 and stderr %q", r.code, r.stdout, r.stderr, want)
				}
				if !tc.endsLive {
					// Nor does a re-evaluation end it.
					if n := e.srv.ReevaluateNow(context.Background(), "test"); n != 0 {
						t.Fatalf("re-evaluation ended %d connections; want none", n)
					}
					select {
					case <-done:
						t.Fatalf("the first session ended: %s", stderr.String())
					case <-time.After(500 * time.Millisecond):
					}
				} else {
					select {
					case <-done:
					case <-time.After(10 * time.Second):
						t.Fatal("the first session still runs")
					}
					if !strings.Contains(stderr.String(), "session ended: "+reason) {
						t.Fatalf("first session's stderr %q; want the reason", stderr.String())
					}
				}
				var refused, ended bool
				for _, ev := range e.audits(audit.TypeDeny) {
					refused = refused || ev.Reason == reason && ev.Fields["serial"] == strconv.FormatUint(cert.Serial, 10)
					ended = ended || ev.Reason == "live session ended: "+reason && ev.Fields["trigger"] == "new session channel"
				}
				if !refused || ended != tc.endsLive {
					t.Fatalf("audited the refusal %t, the end of the live session %t; want true, %t", refused, ended, tc.endsLive)
				}
				tc.undo()
			}
		})
	}
}

// failingStore is the real store whose revocation list, or suspensions
// and login pins, cannot be read while the matching flag is set.
type failingStore struct {
	Store
	revocations, standing atomic.Bool
}

func (f *failingStore) Revocations(ctx context.Context) ([]store.Revocation, error) {
	if f.revocations.Load() {
		return nil, errors.New("store: revocations: database is locked")
	}
	return f.Store.Revocations(ctx)
}

func (f *failingStore) Standing(ctx context.Context, identity, login string, githubID int64, source string) (store.Standing, error) {
	if f.standing.Load() {
		return store.Standing{}, errors.New("store: standing: database is locked")
	}
	return f.Store.Standing(ctx, identity, login, githubID, source)
}

// TestReevaluateWithoutStore: when the revocation list, or suspensions and
// pins, cannot be read, re-evaluation ends nothing for the store's failure
// alone, a new channel is refused (its connection going on), and the
// policy and the directory are still applied.
func TestReevaluateWithoutStore(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(*failingStore) *atomic.Bool
	}{
		{"revocations", func(f *failingStore) *atomic.Bool { return &f.revocations }},
		{"standing", func(f *failingStore) *atomic.Bool { return &f.standing }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &failingStore{}
			e := newEnv(t, envOptions{configure: func(s *Server) {
				s.SweepInterval = time.Hour
				st.Store = s.Store
				s.Store = st
			}})
			key, cert := e.issue(certOptions{})
			c := e.client(key, cert)
			cl, err := e.xclient(e.login+"@web1", certSigner(t, key, cert))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			_, stderr, done := liveSession(t, c, c.direct(e.login, "web1"))
			tc.fail(st).Store(true)
			if n := e.srv.ReevaluateNow(context.Background(), "test"); n != 0 {
				t.Fatalf("ended %d connections for a store failure; want 0", n)
			}
			if se, err := cl.NewSession(); err == nil {
				se.Close()
				t.Fatal("a new session opened while the store could not be read")
			}
			select {
			case <-done:
				t.Fatalf("session ended: %s", stderr.String())
			case <-time.After(200 * time.Millisecond):
			}
			e.setPolicy(`
  - name: others
    members:
      teams: [others]
    principals: [%[1]s]
    hosts: [web1]
`, "")
			defer e.setPolicy(defaultRoles, "")
			if n := e.srv.ReevaluateNow(context.Background(), "policy reloaded"); n < 1 {
				t.Fatalf("ended %d connections after the policy change; want the live session's", n)
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("session still running after the policy change")
			}
			if !strings.Contains(stderr.String(), "session ended: ") || !strings.Contains(stderr.String(), "no role") {
				t.Fatalf("stderr %q; want the policy's reason", stderr.String())
			}
			if d := e.lastDeny(); !strings.Contains(d, "live session ended") || !strings.Contains(d, "no role") {
				t.Fatalf("last deny %q", d)
			}
		})
	}
}

// stalledSession starts the real client running a command that writes
// more than the SSH windows hold, reads its first line and then no more,
// so that the client stops reading from the bastion. It returns a channel
// closed when the client exits.
func stalledSession(t *testing.T, args []string) chan struct{} {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ssh", append(args, "--", "echo started; head -c 32000000 /dev/zero; sleep 60")...)
	var stderr syncBuffer
	cmd.Stdout, cmd.Stderr = pw, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done; pr.Close() })
	_ = pr.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(pr).ReadString('\n')
	if line != "started\n" {
		t.Fatalf("first line %q (%v); stderr %q", line, err, stderr.String())
	}
	return done
}

// TestEndStalledSessions: sessions whose clients stopped reading, several
// on each of several connections, all end within a few seconds, although
// telling each one why may take up to a second.
func TestEndStalledSessions(t *testing.T) {
	e := newEnv(t, envOptions{configure: func(s *Server) { s.SweepInterval = time.Hour }})
	c := e.client(e.issue(certOptions{}))
	const conns, perConn = 2, 4
	var dones []chan struct{}
	for range conns {
		master, mux := multiplexer(t)
		dones = append(dones, stalledSession(t, c.direct(e.login, "web1", master...)))
		for range perConn - 1 {
			dones = append(dones, stalledSession(t, c.direct(e.login, "web1", mux...)))
		}
	}
	// Let the output fill the windows.
	time.Sleep(time.Second)
	e.pol.Store(nil)
	defer e.setPolicy(defaultRoles, "")
	start := time.Now()
	if n := e.srv.ReevaluateNow(context.Background(), "policy withdrawn"); n != conns {
		t.Fatalf("ended %d connections; want %d", n, conns)
	}
	took := time.Since(start)
	const bound = 6 * time.Second // told one by one, at least 8s; at once, about 1s
	for i, done := range dones {
		select {
		case <-done:
		case <-time.After(bound - time.Since(start)):
			t.Fatalf("client %d still running %s after the policy was withdrawn", i, time.Since(start))
		}
	}
	t.Logf("re-evaluation took %s, all %d clients gone after %s", took, len(dones), time.Since(start))
}

// TestNarrowedTerms: a policy change that takes away something an open
// channel relies on ends the connection with a message to reconnect;
// narrower terms nothing relies on, and wider terms, change nothing.
func TestNarrowedTerms(t *testing.T) {
	e := newEnv(t, envOptions{configure: func(s *Server) { s.SweepInterval = time.Hour }})
	c := e.client(e.issue(certOptions{}))
	const infraPerms = "permissions: [pty, port-forwarding]"
	infra := func(with string) string { return strings.Replace(defaultRoles, infraPerms, with, 1) }
	for _, tc := range []struct {
		name    string
		roles   string
		pty     bool // the session has a terminal
		forward bool // a port forward is open
		message string
	}{
		{"fail/force-command-added", infra(infraPerms + "\n    force_command: echo forced"), false, false, "the forced command changed"},
		{"fail/record-input-required", infra(infraPerms + "\n    record_input: true"), false, false, "input must now be recorded"},
		{"fail/port-forwarding-removed-while-forwarding", infra("permissions: [pty]"), false, true, "port forwarding is no longer permitted"},
		{"fail/pty-removed-from-terminal", infra("permissions: [port-forwarding]"), true, false, "terminals are no longer permitted"},
		{"ok/port-forwarding-removed-unused", infra("permissions: [pty]"), true, false, ""},
		{"ok/pty-removed-without-terminal", infra("permissions: [port-forwarding]"), false, true, ""},
		{"ok/wider", infra("permissions: [pty, port-forwarding, agent-forwarding]"), true, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer e.setPolicy(defaultRoles, "")
			var extra []string
			if tc.pty {
				extra = append(extra, "-tt")
			}
			port := freePort(t)
			if tc.forward {
				extra = append(extra, "-o", "ExitOnForwardFailure=yes", "-L", fmt.Sprintf("127.0.0.1:%d:%s", port, e.target.Addr))
			}
			_, stderr, done := liveSession(t, c, c.direct(e.login, "web1", extra...))
			if tc.forward {
				conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				if b, err := bufio.NewReader(conn).ReadString('\n'); !strings.HasPrefix(b, "SSH-2.0-") {
					t.Fatalf("through the forward: %q, %v; want the target's banner", b, err)
				}
			}
			e.setPolicy(tc.roles, "")
			n := e.srv.ReevaluateNow(context.Background(), "policy reloaded")
			if tc.message == "" {
				if n != 0 {
					t.Fatalf("ended %d connections; want 0", n)
				}
				select {
				case <-done:
					t.Fatalf("session ended: %s", stderr.String())
				case <-time.After(200 * time.Millisecond):
				}
				return
			}
			if n != 1 {
				t.Fatalf("ended %d connections; want 1", n)
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("session still running after the policy change")
			}
			want := fmt.Sprintf("session ended: access to %s@web1 changed (%s); reconnect", e.login, tc.message)
			if !strings.Contains(stderr.String(), want) {
				t.Fatalf("stderr %q; want %q", stderr.String(), want)
			}
			if d := e.lastDeny(); !strings.Contains(d, "live session ended: access to") || !strings.Contains(d, tc.message) {
				t.Fatalf("last deny %q", d)
			}
		})
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
