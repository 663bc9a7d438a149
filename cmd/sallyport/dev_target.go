package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/internal/sshdproc"
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
	proc  *sshdproc.Process
}

// startDemoTarget starts sshd with its files in dir (its host key is made
// once and kept; its host certificate is issued by authority at each
// start). It waits, at most ten seconds, until sshd answers.
func startDemoTarget(ctx context.Context, dir string, keys ca.Keys, authority *ca.Authority) (*demoTarget, error) {
	bin, err := sshdproc.Path()
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
	if err := sshdproc.PrepareRoot(); err != nil {
		return nil, err
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
	conf := func(addr string, _ int) []byte { return demoSSHDConfig(addr, dir, hostKeyPath, trusted) }
	p, err := sshdproc.Start(ctx, bin, filepath.Join(dir, "sshd_config"), filepath.Join(dir, "sshd.log"), conf, 10*time.Second)
	if err != nil {
		return nil, err
	}
	return &demoTarget{Addr: p.Addr, Login: u.Username, dir: dir, proc: p}, nil
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

// Close stops sshd; sessions still open end with it. It waits at most
// five seconds.
func (t *demoTarget) Close() {
	if t == nil || t.proc == nil {
		return
	}
	pid := t.proc.Cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-t.proc.Exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-t.proc.Exited
	}
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
