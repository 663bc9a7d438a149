package bastion

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/sallyport/sallyport/audit"
)

// TestRelayExactSmallBuffer: a message that exactly fills the relay's
// first read buffer, followed by a wait for the answer (SFTP, git, agent
// and database protocols all do this), is passed on at once, both ways.
func TestRelayExactSmallBuffer(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, n := range []int{firstReadSize - 1, firstReadSize, firstReadSize + 1} {
		t.Run("ok/output-"+strconv.Itoa(n), func(t *testing.T) {
			se := e.webSession(certOptions{})
			out, _ := se.StdoutPipe()
			if err := se.Start("head -c " + strconv.Itoa(n) + " /dev/zero | tr '\\0' x; sleep 10; echo end"); err != nil {
				t.Fatal(err)
			}
			got := make(chan error, 1)
			go func() { _, err := io.ReadFull(out, make([]byte, n)); got <- err }()
			select {
			case err := <-got:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%d bytes of output held back until the next output", n)
			}
			se.Close()
		})
		t.Run("ok/input-"+strconv.Itoa(n), func(t *testing.T) {
			se := e.webSession(certOptions{})
			in, _ := se.StdinPipe()
			out, _ := se.StdoutPipe()
			if err := se.Start("head -c " + strconv.Itoa(n) + " >/dev/null; echo got; sleep 10"); err != nil {
				t.Fatal(err)
			}
			if _, err := in.Write(bytes.Repeat([]byte("y"), n)); err != nil {
				t.Fatal(err)
			}
			got := make(chan string, 1)
			go func() { b := make([]byte, 4); k, _ := io.ReadFull(out, b); got <- string(b[:k]) }()
			select {
			case s := <-got:
				if s != "got\n" {
					t.Fatalf("answer %q", s)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("a %d-byte request held back until more input", n)
			}
			se.Close()
		})
	}
}

// TestForwardTargetRefusalsKeepConnection: forwards the target cannot open
// (a service behind ssh -L restarting, a browser through ssh -D) are the
// target's answer, not the user's misbehaviour: the connection and its
// sessions go on, and their audit is bounded.
func TestForwardTargetRefusalsKeepConnection(t *testing.T) {
	e := newEnv(t, envOptions{})
	cl := e.webClient(certOptions{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	before := len(e.audits(audit.TypePortForward))
	const tries = 3 * maxRefusals
	for range tries {
		c, err := cl.Dial("tcp", addr)
		if err == nil {
			c.Close()
			t.Fatal("a forward to a closed port opened")
		}
	}
	se, err := cl.NewSession()
	if err != nil {
		t.Fatalf("after %d forwards the target refused, the connection is gone: %v", tries, err)
	}
	if out, err := se.Output("echo alive"); err != nil || string(out) != "alive\n" {
		t.Fatalf("session after the refusals: %q, %v", out, err)
	}
	if n := len(e.audits(audit.TypePortForward)) - before; n == 0 || n > maxRefusals+1 {
		t.Fatalf("%d port.forward events for %d refusals; want some, at most %d", n, tries, maxRefusals+1)
	}
}
