package bastion

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/ca"
)

// hostileTarget is an SSH server with a host certificate from the host CA
// for its name, which accepts any session certificate and runs onExec for
// each exec request on its connection.
func hostileTarget(t *testing.T, e *env, name string, onExec func(sc *ssh.ServerConn)) (addr string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, hk := newSigner(t)
	hc, err := e.auth.IssueHost(context.Background(), ca.HostRequest{PublicKey: hk.PublicKey(), Hostnames: []string{name}, TTL: time.Hour, MaxTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	hcs, err := ssh.NewCertSigner(hc, hk)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil }}
	cfg.AddHostKey(hcs)
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				sc, chans, reqs, err := ssh.NewServerConn(nc, cfg)
				if err != nil {
					return
				}
				defer sc.Close()
				go ssh.DiscardRequests(reqs)
				for nch := range chans {
					if nch.ChannelType() != "session" {
						_ = nch.Reject(ssh.Prohibited, "no")
						continue
					}
					_, creqs, err := nch.Accept()
					if err != nil {
						continue
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						for r := range creqs {
							_ = r.Reply(true, nil)
							if r.Type == "exec" {
								wg.Add(1)
								go func() { defer wg.Done(); onExec(sc) }()
							}
						}
					}()
				}
			}()
		}
	}()
	return l.Addr().String()
}

// TestAgentChannelsBounded: a target the user forwarded their agent to
// opens agent channels without end. Only maxAgentChannels are open at
// once, the use of the agent is audited once and the refusals once, and
// the target's use of the agent does not keep an idle connection alive.
func TestAgentChannelsBounded(t *testing.T) {
	const idle = 5 * time.Second // well over the flood's time
	const flood = 5 * maxAgentChannels
	type result struct {
		opened   int
		refusals map[string]int
		listed   error // from listing keys through an open channel
	}
	results := make(chan result, 1)
	e := newEnv(t, envOptions{configure: func(s *Server) { s.IdleTimeout = idle }})
	evil := hostileTarget(t, e, "evil", func(sc *ssh.ServerConn) {
		res := result{refusals: map[string]int{}}
		var held []ssh.Channel
		for range flood {
			ch, reqs, err := sc.OpenChannel("auth-agent@openssh.com", nil)
			var oe *ssh.OpenChannelError
			switch {
			case errors.As(err, &oe):
				res.refusals[oe.Message]++
				continue
			case err != nil:
				res.refusals[err.Error()]++
				continue
			}
			go ssh.DiscardRequests(reqs)
			held = append(held, ch)
		}
		res.opened = len(held)
		if len(held) > 0 {
			_, res.listed = agent.NewClient(held[0]).List()
		}
		for _, ch := range held {
			ch.Close()
		}
		results <- res
		// Then use the agent again and again, one channel at a time,
		// until the connection ends.
		for {
			ch, reqs, err := sc.OpenChannel("auth-agent@openssh.com", nil)
			if err != nil {
				var oe *ssh.OpenChannelError
				if !errors.As(err, &oe) {
					return
				}
			} else {
				go ssh.DiscardRequests(reqs)
				_, _ = agent.NewClient(ch).List()
				ch.Close()
			}
			time.Sleep(100 * time.Millisecond) // the target's pace
		}
	})
	e.setPolicy(`
  - name: infra
    members:
      teams: [infra]
    principals: [%[1]s]
    hosts: [evil]
    permissions: [agent-forwarding]
`, "  - name: evil\n    address: "+evil+"\n")

	key, cert := e.issue(certOptions{perms: []ca.Permission{ca.PermitAgentForwarding}})
	c := e.client(key, cert)
	sock := startAgent(t)
	cmd := exec.Command("ssh", append(c.direct(e.login, "evil", "-A", "-o", "IdentityAgent="+sock), "--", "anything")...)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	started := time.Now()

	var res result
	select {
	case res = <-results:
	case <-time.After(30 * time.Second):
		t.Fatalf("the target did not finish opening agent channels; stderr %q", stderr.String())
	}
	if res.opened != maxAgentChannels || res.listed != nil {
		t.Errorf("the target opened %d agent channels at once (listing keys: %v); want %d, and the agent answering", res.opened, res.listed, maxAgentChannels)
	}
	for msg, n := range res.refusals {
		if !strings.Contains(msg, "too many agent channels") {
			t.Errorf("%d agent channels refused with %q; want too many agent channels", n, msg)
		}
	}

	// The target's use of the agent moves no data of the user's: the
	// connection still ends for idleness.
	select {
	case <-done:
	case <-time.After(3*idle + 10*time.Second):
		t.Fatalf("the connection outlived IdleTimeout (%s) by %s while the target used the agent", idle, time.Since(started)-idle)
	}
	if !strings.Contains(stderr.String(), "idle for more than") {
		t.Errorf("stderr %q; want the idle timeout", stderr.String())
	}

	var used, refused int
	for _, ev := range e.audits("") {
		switch {
		case ev.Type == audit.TypePortForward && ev.Fields["kind"] == "agent" && ev.Outcome == audit.OutcomeOK:
			used++
		case ev.Type == audit.TypeDeny && strings.Contains(ev.Reason, "too many agent channels"):
			refused++
		}
	}
	if used != 1 || refused != 1 {
		t.Errorf("audited %d agent uses and %d agent refusals; want one of each for the connection", used, refused)
	}
}

// TestCopyBufferIdle: a relay waiting for data holds no copy buffer, so
// that idle sessions and agent channels cost little memory; what arrives
// is copied exactly, in whatever pieces.
func TestCopyBufferIdle(t *testing.T) {
	const relays = 64
	runtime.GC()
	runtime.GC() // empties copyBuffers
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)

	type relay struct {
		w    *io.PipeWriter
		dst  syncBuffer
		done chan struct{}
	}
	waiting := make(chan struct{}, relays)
	rs := make([]*relay, relays)
	for i := range rs {
		pr, pw := io.Pipe()
		r := &relay{w: pw, done: make(chan struct{})}
		rs[i] = r
		src := readerFunc(func(p []byte) (int, error) {
			waiting <- struct{}{}
			return pr.Read(p)
		})
		go func() {
			defer close(r.done)
			_ = copyBuffer(&r.dst, src, nil, nil, nil)
		}()
	}
	for range relays {
		<-waiting
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > relays*copyBufferSize/4 {
		t.Errorf("%d idle relays hold %d KiB; want well under one copy buffer (%d KiB) each", relays, grew>>10, copyBufferSize>>10)
	}

	// Pieces of every size around the relay's reads.
	go func() {
		for range waiting {
		}
	}()
	defer close(waiting)
	var want bytes.Buffer
	for i, n := range []int{1, 100, 2047, 2048, 2049, 4096, 32 << 10, copyBufferSize, copyBufferSize + 1, 3 * copyBufferSize} {
		p := bytes.Repeat([]byte{byte('a' + i)}, n)
		want.Write(p)
		for _, r := range rs {
			if _, err := r.w.Write(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, r := range rs {
		r.w.Close()
		<-r.done
		if got := r.dst.String(); got != want.String() {
			t.Fatalf("copied %d bytes; want %d identical", len(got), want.Len())
		}
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
