package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/ca"
)

// demoHost is the policy name of the demo target of `sallyport dev`.
const demoHost = "demo"

// demoTarget is the demo target of `sallyport dev`: a real OpenSSH sshd on
// a free 127.0.0.1 port, trusting only the session CA (so only the bastion
// gets in) and presenting a host certificate from the host CA. It logs in
// as the account running dev: sshd not running as root can authenticate no
// one else.
type demoTarget struct {
	Addr  string // 127.0.0.1:port
	Login string // the account to log in as
	dir   string
	log   string
	cmd   *exec.Cmd
	done  chan struct{}
}

// errNoSSHD means OpenSSH's sshd is not installed.
var errNoSSHD = errors.New("OpenSSH sshd is not installed (Debian: apt-get install openssh-server)")

// sshdPath finds sshd by absolute path (sshd re-executes itself only when
// started that way; /usr/sbin is often missing from PATH).
func sshdPath() (string, error) {
	for _, p := range []string{"/usr/sbin/sshd", "/usr/local/sbin/sshd"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	p, err := exec.LookPath("sshd")
	if err != nil {
		return "", errNoSSHD
	}
	return filepath.Abs(p)
}

// startDemoTarget starts sshd with its files in dir (its host key is made
// once and kept; its host certificate is issued by authority at each
// start). It waits, at most ten seconds, until sshd answers.
func startDemoTarget(ctx context.Context, dir string, keys ca.Keys, authority *ca.Authority) (*demoTarget, error) {
	bin, err := sshdPath()
	if err != nil {
		return nil, err
	}
	u, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("current user: %w", err)
	}
	if err := ca.ValidatePrincipal(u.Username); err != nil {
		return nil, fmt.Errorf("the account %q cannot be a certificate principal: %w", u.Username, err)
	}
	if os.Geteuid() == 0 {
		// Debian's sshd chroots its pre-authentication child into
		// /run/sshd, which the init script creates at boot; containers
		// often lack it.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			return nil, fmt.Errorf("create /run/sshd: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	hostKeyPath := filepath.Join(dir, "ssh_host_ed25519_key")
	hostKey, _, err := loadBastionHostKey(hostKeyPath)
	if err != nil {
		return nil, fmt.Errorf("demo target host key: %w", err)
	}
	cert, err := authority.IssueHost(ctx, ca.HostRequest{PublicKey: hostKey.PublicKey(), Hostnames: []string{demoHost, "127.0.0.1"},
		TTL: 30 * 24 * time.Hour, MaxTTL: 30 * 24 * time.Hour})
	if err != nil {
		return nil, fmt.Errorf("demo target host certificate: %w", err)
	}
	if err := os.WriteFile(hostKeyPath+"-cert.pub", ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
		return nil, err
	}
	trusted := filepath.Join(dir, "trusted_user_ca_keys")
	if err := os.WriteFile(trusted, ssh.MarshalAuthorizedKey(keys.Session.PublicKey()), 0o644); err != nil {
		return nil, err
	}
	t := &demoTarget{Login: u.Username, dir: dir, log: filepath.Join(dir, "sshd.log")}
	var lastErr error
	for range 5 { // another process may take the port between probe and bind
		port, err := freeLoopbackPort()
		if err != nil {
			return nil, err
		}
		t.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		conf := filepath.Join(dir, "sshd_config")
		if err := os.WriteFile(conf, demoSSHDConfig(t.Addr, dir, hostKeyPath, trusted), 0o600); err != nil {
			return nil, err
		}
		if out, err := exec.CommandContext(ctx, bin, "-t", "-f", conf).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s -t -f %s: %v: %s", bin, conf, err, strings.TrimSpace(string(out)))
		}
		if lastErr = t.start(bin, conf, port); lastErr == nil {
			return t, nil
		}
		if !errors.Is(lastErr, errBind) {
			break
		}
	}
	return nil, lastErr
}

func demoSSHDConfig(addr, dir, hostKey, trusted string) []byte {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("# The demo target of sallyport dev, written at each start.")
	line("ListenAddress %s", addr)
	line("PidFile %q", filepath.Join(dir, "sshd.pid"))
	line("HostKey %q", hostKey)
	line("HostCertificate %q", hostKey+"-cert.pub")
	line("# Only certificates from the session CA: only the bastion gets in.")
	line("TrustedUserCAKeys %q", trusted)
	line("AuthorizedKeysFile none")
	line("PubkeyAuthentication yes")
	line("PasswordAuthentication no")
	line("KbdInteractiveAuthentication no")
	line("HostbasedAuthentication no")
	line("GSSAPIAuthentication no")
	line("PermitRootLogin prohibit-password")
	line("UsePAM no")
	line("StrictModes no")
	line("PrintMotd no")
	line("PrintLastLog no")
	line("UseDNS no")
	line("Subsystem sftp internal-sftp")
	return []byte(b.String())
}

var errBind = errors.New("sshd could not bind its port")

func (t *demoTarget) start(bin, conf string, port int) error {
	logf, err := os.OpenFile(t.log, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	// -D: stay in the foreground, so dev owns the process; -E: log to a
	// file.
	cmd := exec.Command(bin, "-D", "-E", t.log, "-f", conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			log, _ := os.ReadFile(t.log)
			if strings.Contains(string(log), "Cannot bind any address") {
				return errBind
			}
			return fmt.Errorf("sshd exited: %s", lastLines(string(log), 5))
		default:
		}
		log, _ := os.ReadFile(t.log)
		if strings.Contains(string(log), fmt.Sprintf("Server listening on 127.0.0.1 port %d.", port)) && sshBanner(t.Addr) == nil {
			t.cmd, t.done = cmd, done
			return nil
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			return fmt.Errorf("sshd did not answer on %s within 10s: %s", t.Addr, lastLines(string(log), 5))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Close stops sshd; sessions still open end with it. It waits at most
// five seconds.
func (t *demoTarget) Close() {
	if t == nil || t.cmd == nil {
		return
	}
	_ = syscall.Kill(-t.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-t.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-t.cmd.Process.Pid, syscall.SIGKILL)
		<-t.done
	}
}

func sshBanner(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	l, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(l, "SSH-2.0-") {
		return fmt.Errorf("unexpected banner %q", l)
	}
	return nil
}

func freeLoopbackPort() (int, error) {
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

// demoMarker marks the demo host's address line in the dev policy, which
// dev rewrites at each start (the demo target's port changes).
const demoMarker = "# the demo target: sallyport dev sets this address at each start"

var demoAddressLine = regexp.MustCompile(`(?m)^(\s*address:\s*)\S+(\s+` + regexp.QuoteMeta(demoMarker) + `)\s*$`)

// withDemoTarget adds the demo host at addr to a policy, and a role giving
// the infra team (alice) login on it unless the infrastructure role
// already grants it.
func withDemoTarget(policy []byte, addr, login string) ([]byte, error) {
	s := string(policy)
	const hosts, tests = "\nhosts:\n", "\ntests:\n"
	i, j := strings.Index(s, hosts), strings.Index(s, tests)
	if i < 0 || j < i {
		return nil, errors.New("the dev policy has no hosts: or tests: section")
	}
	host := fmt.Sprintf("  - name: %s\n    address: %s   %s\n    labels: [demo]\n", demoHost, addr, demoMarker)
	role := ""
	if login != "root" && login != "deploy" {
		role = fmt.Sprintf(`
  - name: demo-target
    members:
      teams: [infra]
    principals: [%s]                  # the account running sallyport dev
    hosts: [%s]
    permissions: [pty, port-forwarding]
`, login, demoHost)
	}
	out := s[:i+len(hosts)] + host + s[i+len(hosts):j] + role + s[j:]
	return []byte(out), nil
}

// setDemoAddress points the demo host of an existing dev policy at addr; a
// policy whose demo host was removed is left alone.
func setDemoAddress(policy []byte, addr string) []byte {
	return demoAddressLine.ReplaceAll(policy, []byte("${1}"+addr+"${2}"))
}
