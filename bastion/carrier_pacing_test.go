package bastion

import (
	"bufio"
	"io"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// TestCarrierPacingDoesNotStall: while a burst of ProxyJump tunnels waits
// for its turn (reserveTunnel), the carrier connection keeps taking
// channel requests and moving data: a session through one of its
// tunnels echoes at once.
func TestCarrierPacingDoesNotStall(t *testing.T) {
	e := newEnv(t, envOptions{})
	key, cert := e.issue(certOptions{})
	carrier, err := e.xclient("alice", certSigner(t, key, cert))
	if err != nil {
		t.Fatal(err)
	}
	defer carrier.Close()
	nc, err := carrier.Dial("tcp", "web1:22")
	if err != nil {
		t.Fatal(err)
	}
	checker := &ssh.CertChecker{IsHostAuthority: func(k ssh.PublicKey, _ string) bool { return true }}
	c, chans, reqs, err := ssh.NewClientConn(nc, "web1:22", &ssh.ClientConfig{
		User: e.login, Auth: []ssh.AuthMethod{ssh.PublicKeys(certSigner(t, key, cert))},
		HostKeyCallback: checker.CheckHostKey, Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	inner := ssh.NewClient(c, chans, reqs)
	defer inner.Close()
	sess, err := inner.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	stdin, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Start("cat"); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewReader(stdout)
	echo := func() time.Duration {
		start := time.Now()
		if _, err := io.WriteString(stdin, "ping\n"); err != nil {
			t.Fatal(err)
		}
		if l, err := lines.ReadString('\n'); err != nil || l != "ping\n" {
			t.Fatalf("echo: %q, %v", l, err)
		}
		return time.Since(start)
	}
	echo()

	// Use up the tunnel budget, so that every further tunnel waits.
	for {
		if wait, ok := e.srv.reserveTunnel("github:1001"); !ok || wait > 0 {
			break
		}
	}
	// As many tunnels as the connection's channels allow (two are the
	// tunnel and session above), each waiting its turn.
	const burst = DefaultMaxChannelsPerConn - 2
	done := make(chan struct{}, burst)
	for range burst {
		go func() {
			defer func() { done <- struct{}{} }()
			if nc, err := carrier.Dial("tcp", "web1:22"); err == nil {
				nc.Close()
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	if d := echo(); d > 250*time.Millisecond {
		t.Fatalf("an echo through the carrier took %s while its new tunnels waited for their turn", d)
	}
	for range burst {
		<-done
	}
}
