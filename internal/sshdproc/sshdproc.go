// Package sshdproc runs OpenSSH's sshd as a child process on a free
// loopback port. The demo target of `sallyport dev` and the test targets of
// internal/sshdtest both start sshd through it.
package sshdproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNotInstalled means OpenSSH's sshd was not found.
var ErrNotInstalled = errors.New("OpenSSH sshd is not installed (Debian: apt-get install openssh-server)")

// errBind reports that sshd could not listen on its port.
var errBind = errors.New("sshd could not bind its port")

// bindAttempts is how many ports Start tries: another process may take a
// port between the probe and sshd's bind.
const bindAttempts = 5

// Path finds sshd by absolute path: sshd re-executes itself only when
// started that way, and /usr/sbin is often missing from PATH.
func Path() (string, error) {
	for _, p := range []string{"/usr/sbin/sshd", "/usr/local/sbin/sshd"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	p, err := exec.LookPath("sshd")
	if err != nil {
		return "", ErrNotInstalled
	}
	return filepath.Abs(p)
}

// PrepareRoot creates /run/sshd when running as root: Debian's sshd chroots
// its pre-authentication child there, the init script creates it at boot,
// and containers often lack it.
func PrepareRoot() error {
	if os.Geteuid() != 0 {
		return nil
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return fmt.Errorf("create privilege separation directory: %w", err)
	}
	return nil
}

// Process is a running sshd.
type Process struct {
	Cmd  *exec.Cmd
	Addr string // 127.0.0.1:Port
	Port int
	// Exited receives cmd.Wait's result when sshd exits.
	Exited <-chan error
}

// Start runs sshd bin in the foreground, in its own process group, on a
// free 127.0.0.1 port: config returns the sshd_config for that port, which
// Start writes to confPath (0600) and checks with sshd -t. sshd logs to
// logPath, which each attempt truncates. When sshd cannot bind, another port
// is tried. Start returns once sshd has logged that it listens on its port
// and answers with an SSH banner there, within timeout per attempt.
func Start(ctx context.Context, bin, confPath, logPath string, config func(addr string, port int) []byte, timeout time.Duration) (*Process, error) {
	var lastErr error
	for range bindAttempts {
		port, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("pick a port: %w", err)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err := os.WriteFile(confPath, config(addr, port), 0o600); err != nil {
			return nil, err
		}
		if out, err := exec.CommandContext(ctx, bin, "-t", "-f", confPath).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s -t -f %s: %v: %s", bin, confPath, err, strings.TrimSpace(string(out)))
		}
		p, err := start(bin, confPath, logPath, addr, port, timeout)
		if err == nil {
			return p, nil
		}
		lastErr = err
		if !errors.Is(err, errBind) {
			break
		}
	}
	return nil, lastErr
}

func start(bin, confPath, logPath, addr string, port int, timeout time.Duration) (*Process, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	// -D: stay in the foreground, so the caller owns the process; -E: log
	// to a file (what sshd prints before logging is set up goes to stderr,
	// the same file).
	cmd := exec.Command(bin, "-D", "-E", logPath, "-f", confPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	dieWithParent(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	readLog := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	listening := fmt.Sprintf("Server listening on 127.0.0.1 port %d.", port)
	deadline := time.Now().Add(timeout)
	for {
		select {
		case err := <-exited:
			log := readLog()
			if strings.Contains(log, "Cannot bind any address") {
				return nil, fmt.Errorf("%w %s: %v", errBind, addr, err)
			}
			return nil, fmt.Errorf("sshd exited (%v): %s", err, lastLines(log, 5))
		default:
		}
		// Another process may have taken the port since freePort; only a
		// banner after sshd logged its own bind counts.
		err := errors.New("sshd has not logged that it is listening")
		if strings.Contains(readLog(), listening) {
			err = banner(addr)
		}
		if err == nil {
			return &Process{Cmd: cmd, Addr: addr, Port: port, Exited: exited}, nil
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
			return nil, fmt.Errorf("no SSH banner on %s after %v: %v: %s", addr, timeout, err, lastLines(readLog(), 5))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// banner reports whether addr accepts TCP and sends an SSH version line.
func banner(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return err
	}
	l, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read banner: %w", err)
	}
	if !strings.HasPrefix(l, "SSH-2.0-") {
		return fmt.Errorf("unexpected banner %q", l)
	}
	return nil
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
