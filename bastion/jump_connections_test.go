package bastion

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestJumpPersistentMasters: a person may keep as many persistent "ssh -J"
// ControlMaster connections (ansible's default ssh_args, one per host) as
// MaxConnectionsPerUser allows connections: the login inside a tunnel is
// not counted as a connection of its own.
func TestJumpPersistentMasters(t *testing.T) {
	const limit = 6
	e := newEnv(t, envOptions{configure: func(s *Server) { s.MaxConnectionsPerUser = limit }})
	c := e.client(e.issue(certOptions{}))
	// A short directory: socket paths are limited to about 100 bytes.
	dir, err := os.MkdirTemp("", "cp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for i := range limit {
		cp := filepath.Join(dir, fmt.Sprint(i))
		args := c.jump(e.login, "web1", "-o", "ControlMaster=auto", "-o", "ControlPath="+cp, "-o", "ControlPersist=30")
		t.Cleanup(func() { run(t, nil, "ssh", "-o", "ControlPath="+cp, "-O", "exit", "x") })
		if r := c.ssh(nil, args, "echo in"); r.code != 0 || r.stdout != "in\n" {
			t.Fatalf("master %d of %d: code %d stdout %q stderr %q", i+1, limit, r.code, r.stdout, r.stderr)
		}
	}
	// The limit still holds for connections to the bastion.
	if r := c.ssh(nil, c.direct(e.login, "web1"), "true"); r.code != 255 {
		t.Fatalf("a connection beyond %d: code %d stderr %q; want refused", limit, r.code, r.stderr)
	}
}
