package bastion

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"strings"
	"sync"
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
