package bastion

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sallyport/sallyport/policy"
)

// TestReauthoriseKeepsNewestTerms: a decision for a new channel that read
// the policy before a reload, and is slower than the re-evaluation after
// the reload, does not put the older terms back in force.
func TestReauthoriseKeepsNewestTerms(t *testing.T) {
	var (
		hold    atomic.Bool
		reading = make(chan struct{})
		release = make(chan struct{})
	)
	var e *env
	e = newEnv(t, envOptions{configure: func(s *Server) {
		s.SweepInterval = time.Hour
		s.Policy = func() *policy.Policy {
			p := e.pol.Load()
			if hold.CompareAndSwap(true, false) {
				// This decision has read the policy; it goes on once
				// the test lets it.
				close(reading)
				<-release
			}
			return p
		}
	}})
	e.webClient(certOptions{})
	var tc *targetConn
	waitFor(t, 5*time.Second, "the connection to be live", func() bool {
		e.srv.mu.Lock()
		defer e.srv.mu.Unlock()
		for t := range e.srv.live {
			tc = t
		}
		return tc != nil
	})
	if !tc.currentTerms().perms.Has(policy.PortForwarding) {
		t.Fatal("port forwarding not granted to begin with")
	}

	// A new channel's decision reads the policy that grants forwarding...
	hold.Store(true)
	decided := make(chan string, 1)
	go func() { reason, _ := e.srv.reauthorise(tc, nil); decided <- reason }()
	<-reading
	// ...then the policy is reloaded without it, and re-evaluated.
	e.setPolicy(`
  - name: infra
    members:
      teams: [infra]
    principals: [%[1]s]
    hosts: [web1]
    permissions: [pty]
`, "")
	if n := e.srv.ReevaluateNow(context.Background(), "policy reloaded"); n != 0 {
		t.Fatalf("re-evaluation ended %d connections; want none (nothing relies on forwarding)", n)
	}
	if tc.currentTerms().perms.Has(policy.PortForwarding) {
		t.Fatal("port forwarding still in force after the re-evaluation")
	}
	close(release)
	if reason := <-decided; reason != "" {
		t.Fatalf("the slow decision refused the connection: %s", reason)
	}
	if tc.currentTerms().perms.Has(policy.PortForwarding) {
		t.Error("the slow decision put back the terms of the policy before the reload")
	}
}
