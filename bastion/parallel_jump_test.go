package bastion

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// parallelJumps runs n real "ssh -J" at once as one person through the
// client c, and fails the test for each that does not succeed.
func parallelJumps(t *testing.T, e *env, c *client, n int) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var fails []string
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := run(t, nil, "ssh", append(c.jump(e.login, "web1"), "--", fmt.Sprintf("echo %d", i))...)
			if r.code != 0 || r.stdout != fmt.Sprintf("%d\n", i) {
				mu.Lock()
				fails = append(fails, fmt.Sprintf("code %d stdout %q stderr %q", r.code, r.stdout, r.stderr))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("%d parallel ssh -J in %s", n, time.Since(start))
	if len(fails) > 0 {
		t.Fatalf("%d of %d parallel ssh -J failed, e.g. %s", len(fails), n, fails[0])
	}
}

// TestParallelJump: one person running 40 separate "ssh -J" at once (CI,
// ansible's forks) gets every one of them, with the default limits.
func TestParallelJump(t *testing.T) {
	e := newEnv(t, envOptions{targetExtra: []string{"MaxStartups 200", "MaxSessions 100"}})
	parallelJumps(t, e, e.client(e.issue(certOptions{})), 40)
}

// TestParallelJumpWaitsForPendingSlot: tunnels beyond
// MaxPendingTunnelsPerUser wait for a slot instead of being refused.
func TestParallelJumpWaitsForPendingSlot(t *testing.T) {
	e := newEnv(t, envOptions{
		targetExtra: []string{"MaxStartups 200", "MaxSessions 100"},
		configure:   func(s *Server) { s.MaxPendingTunnelsPerUser = 3 },
	})
	parallelJumps(t, e, e.client(e.issue(certOptions{})), 20)
}

// TestParallelJumpMultiplexed: parallel "ssh -J" whose jump connections
// share one ControlMaster connection to the bastion all succeed, their
// tunnels opened over the one carrier and waiting there for pending
// slots. (Each takes two of the carrier's MaxChannelsPerConn channels:
// its tunnel and the session inside.)
func TestParallelJumpMultiplexed(t *testing.T) {
	e := newEnv(t, envOptions{
		targetExtra: []string{"MaxStartups 200", "MaxSessions 100"},
		configure:   func(s *Server) { s.MaxPendingTunnelsPerUser = 3 },
	})
	c := e.client(e.issue(certOptions{}))
	// A short directory: socket paths are limited to about 100 bytes.
	dir, err := os.MkdirTemp("", "cm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	b, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}
	mux := "Host 127.0.0.1\nControlMaster auto\nControlPath " + filepath.Join(dir, "%C") + "\nControlPersist 30\n"
	if err := os.WriteFile(c.config, []byte(mux+string(b)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		run(t, nil, "ssh", "-F", c.config, "-O", "exit", "-p", fmt.Sprint(e.port), "jumper@127.0.0.1")
	})
	if r := c.ssh(nil, c.jump(e.login, "web1"), "true"); r.code != 0 {
		t.Fatalf("first ssh -J: code %d stderr %q", r.code, r.stderr)
	}
	parallelJumps(t, e, c, 12)
}
