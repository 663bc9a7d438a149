package bastion

import (
	"fmt"
	"sync"
	"testing"
)

// TestMultiplexedExitStatus: sessions multiplexed over one connection
// (ssh -o ControlMaster) get their own exit status, every time.
func TestMultiplexedExitStatus(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(e.issue(certOptions{}))
	for _, jump := range []bool{false, true} {
		form := c.direct
		if jump {
			form = c.jump
		}
		master, mux := multiplexer(t)
		liveSession(t, c, form(e.login, "web1", master...))
		// At most 8 at once, with the master's session: sshd's MaxSessions
		// is 10 per connection, and the bastion uses one to the target.
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		errs := make(chan string, 40)
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				r := c.ssh(nil, form(e.login, "web1", mux...), fmt.Sprintf("echo out-%d; exit %d", i, 3+i%5))
				if r.code != 3+i%5 || r.stdout != fmt.Sprintf("out-%d\n", i) {
					errs <- fmt.Sprintf("jump %t session %d: code %d stdout %q stderr %q", jump, i, r.code, r.stdout, r.stderr)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for s := range errs {
			t.Error(s)
		}
	}
}
