package bastion

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sallyport/sallyport/audit"
)

// slowRead reads r at about rate bytes a second until it ends and returns
// how many bytes it read and whether all of them were zero.
func slowRead(r io.Reader, rate int) (n int64, zeros bool) {
	buf := make([]byte, 16<<10)
	start := time.Now()
	zeros = true
	for {
		k, err := r.Read(buf)
		for _, b := range buf[:k] {
			zeros = zeros && b == 0
		}
		n += int64(k)
		if err != nil {
			return n, zeros
		}
		// Pacing, not synchronisation: a reader this slow keeps the
		// windows of the client and the bastion full.
		if d := time.Duration(n)*time.Second/time.Duration(rate) - time.Since(start); d > 0 {
			time.Sleep(d)
		}
	}
}

// slowClient is a real ssh client whose output goes through a pipe read
// at about rate bytes a second.
type slowClient struct {
	cmd    *exec.Cmd
	stderr syncBuffer
	got    int64
	zeros  bool
	err    error // from Wait
	done   chan struct{}
}

func startSlowClient(t *testing.T, args []string, command string, rate int) *slowClient {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	sc := &slowClient{cmd: exec.CommandContext(ctx, "ssh", append(args, "--", command)...), done: make(chan struct{})}
	sc.cmd.Stdout, sc.cmd.Stderr = pw, &sc.stderr
	if err := sc.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	pw.Close()
	go func() {
		defer close(sc.done)
		defer cancel()
		sc.got, sc.zeros = slowRead(pr, rate)
		pr.Close()
		sc.err = sc.cmd.Wait()
	}()
	t.Cleanup(func() { cancel(); <-sc.done })
	return sc
}

// TestSlowReaderGetsAllOutput: a command whose output the client takes
// slowly ends at the target long before the client has it all; the
// bastion delivers every byte, then the exit status, through both target
// forms.
func TestSlowReaderGetsAllOutput(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(e.issue(certOptions{}))
	const size = 6000000
	forms := map[string][]string{"direct": c.direct(e.login, "web1"), "jump": c.jump(e.login, "web1")}
	clients := map[string]*slowClient{}
	for name, args := range forms {
		clients[name] = startSlowClient(t, args, "head -c 6000000 /dev/zero", 512<<10)
	}
	for name, sc := range clients {
		<-sc.done
		if sc.got != size || !sc.zeros || sc.err != nil {
			t.Errorf("%s: received %d bytes (all zero: %t), exit %v; want %d and exit 0; stderr %q", name, sc.got, sc.zeros, sc.err, size, sc.stderr.String())
		}
	}
}

// liveSessions returns the sessions open on the bastion.
func (e *env) liveSessions() []*session {
	e.srv.mu.Lock()
	var ts []*targetConn
	for t := range e.srv.live {
		ts = append(ts, t)
	}
	e.srv.mu.Unlock()
	var out []*session
	for _, t := range ts {
		t.mu.Lock()
		for se := range t.sessions {
			out = append(out, se)
		}
		t.mu.Unlock()
	}
	return out
}

// TestTargetGoneOutputDelivered: the target's whole connection ends (its
// sshd goes away) after the command finished and its output was sent, while
// the bastion still holds output a slow client has not taken: the client
// gets all of it and the exit status before its connection is closed,
// through both target forms.
func TestTargetGoneOutputDelivered(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(e.issue(certOptions{}))
	// Less than the bastion's and the client's windows hold, so that the
	// target sends it all, and closes the channel, at once.
	const size = 3000000
	forms := map[string][]string{"direct": c.direct(e.login, "web1"), "jump": c.jump(e.login, "web1")}
	clients := map[string]*slowClient{}
	for name, args := range forms {
		clients[name] = startSlowClient(t, args, "head -c 3000000 /dev/zero", 512<<10)
	}
	waitFor(t, 20*time.Second, "both sessions to see the target close their channels", func() bool {
		ss := e.liveSessions()
		for _, se := range ss {
			select {
			case <-se.upClosed:
			default:
				return false
			}
		}
		return len(ss) == len(forms)
	})
	for name, sc := range clients {
		select {
		case <-sc.done:
			t.Fatalf("%s: the client ended before the target went away", name)
		default:
		}
	}
	if err := e.target.Close(); err != nil {
		t.Logf("target close: %v", err)
	}
	for name, sc := range clients {
		<-sc.done
		if sc.got != size || !sc.zeros || sc.err != nil {
			t.Errorf("%s: received %d bytes (all zero: %t), exit %v; want %d and exit 0; stderr %q", name, sc.got, sc.zeros, sc.err, size, sc.stderr.String())
		}
	}
}

// TestStalledReaderCutOff: a client that stops taking the output of a
// finished command is cut off once it has taken nothing for IdleTimeout,
// although other sessions keep its connection busy; the end of the session
// is audited with the exit status the client never got.
func TestStalledReaderCutOff(t *testing.T) {
	const idle = 3 * time.Second
	e := newEnv(t, envOptions{configure: func(s *Server) { s.IdleTimeout = idle }})
	c := e.client(e.issue(certOptions{}))
	master, mux := multiplexer(t)

	// The master's session keeps the connection active.
	busy := exec.Command("ssh", append(c.direct(e.login, "web1", master...), "--", "while :; do echo tick; sleep 0.2; done")...)
	var ticks syncBuffer
	busy.Stdout = &ticks
	if err := busy.Start(); err != nil {
		t.Fatal(err)
	}
	busyDone := make(chan struct{})
	go func() { busy.Wait(); close(busyDone) }()
	// The master ends last: it holds the multiplexed client's stderr.
	t.Cleanup(func() { busy.Process.Kill(); <-busyDone })
	waitFor(t, 10*time.Second, "the busy session", func() bool { return strings.Contains(ticks.String(), "tick") })

	// The multiplexed client reads one line, then nothing more. The
	// output fits in the windows of the client and the bastion, so that
	// the target sends all of it and closes the channel at once.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stalled := exec.Command("ssh", append(c.direct(e.login, "web1", mux...), "--", "echo started; head -c 3000000 /dev/zero; exit 3")...)
	var stderr syncBuffer
	stalled.Stdout, stalled.Stderr = pw, &stderr
	if err := stalled.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	stalledDone := make(chan struct{})
	go func() { stalled.Wait(); close(stalledDone) }()
	t.Cleanup(func() { stalled.Process.Kill(); busy.Process.Kill(); <-stalledDone; pr.Close() })
	_ = pr.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, err := bufio.NewReader(pr).ReadString('\n'); line != "started\n" {
		t.Fatalf("first line %q (%v); stderr %q", line, err, stderr.String())
	}
	stopped := time.Now()

	var end audit.Event
	waitFor(t, 4*idle+5*time.Second, "the stalled session to be cut off", func() bool {
		evs := e.audits(audit.TypeSessionEnd)
		if len(evs) > 0 {
			end = evs[0]
		}
		return len(evs) > 0
	})
	// The target may have closed the channel a moment before the first
	// line was read: the bound is loose.
	took := time.Since(stopped)
	if took < idle/2 {
		t.Errorf("cut off %s after the client stopped reading; want no sooner than IdleTimeout (%s)", took, idle)
	}
	if end.Fields["exit_status"] != "3" || end.Fields["cut_off"] == "" {
		t.Errorf("session.end %+v; want exit status 3 and why the output was cut off", end)
	}
	// The connection itself lives on: its other session still runs.
	before := len(ticks.String())
	waitFor(t, 5*time.Second, "more output of the busy session", func() bool { return len(ticks.String()) > before })
	select {
	case <-busyDone:
		t.Fatal("the busy session ended with the stalled one")
	default:
	}
}
