package sshdtest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Close stops sshd and every process it started for connections and
// sessions still open, and waits for sshd to exit. Start arranges for Close
// to run when the test ends; calling it earlier lets a test see a target go
// away. Close is safe to call more than once.
func (s *Server) Close() error {
	s.stop.Do(func() {
		pid := s.cmd.Process.Pid
		// The listener stays alive until its children are gone, so it
		// reaps them.
		killTree(pid, 5*time.Second)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		select {
		case <-s.exited:
		case <-time.After(startTimeout):
			s.stopErr = fmt.Errorf("sshd (pid %d) did not exit", pid)
		}
	})
	return s.stopErr
}

// killTree kills the processes below pid, leaves first, so that each is
// reaped by its own sshd parent rather than orphaned to an init that may not
// reap (as in some containers). sshd's connection and session children call
// setsid, so signalling sshd's process group would miss them. It gives up
// after timeout; where /proc is unavailable it does nothing.
func killTree(pid int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		procs := readProcs()
		below := procs.below(pid)
		if len(below) == 0 {
			return
		}
		for _, p := range below {
			if !procs.zombie[p] && !procs.hasLiveChild(p) {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// descendants lists the processes below pid.
func descendants(pid int) []int { return readProcs().below(pid) }

// procTable is a snapshot of /proc: children by parent, and which are
// zombies.
type procTable struct {
	children map[int][]int
	zombie   map[int]bool
}

func readProcs() procTable {
	t := procTable{children: map[int][]int{}, zombie: map[int]bool{}}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return t
	}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command name in parentheses may contain spaces and
		// parentheses; after the last ')' come: state ppid ...
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 {
			continue
		}
		ppid, err := strconv.Atoi(fields[1])
		if err != nil {
			continue
		}
		t.children[ppid] = append(t.children[ppid], p)
		t.zombie[p] = fields[0] == "Z"
	}
	return t
}

func (t procTable) below(pid int) []int {
	var out []int
	queue := append([]int(nil), t.children[pid]...)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, p)
		queue = append(queue, t.children[p]...)
	}
	return out
}

func (t procTable) hasLiveChild(pid int) bool {
	for _, c := range t.children[pid] {
		if !t.zombie[c] {
			return true
		}
	}
	return false
}
