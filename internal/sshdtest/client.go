package sshdtest

import (
	"context"
	"crypto"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"

	"golang.org/x/crypto/ssh"
)

// ClientOptions configure a run of the OpenSSH ssh client.
type ClientOptions struct {
	// Identity is the private key file (see WriteIdentity). If a file
	// named Identity+"-cert.pub" exists, it is offered as the key's
	// certificate. Empty means no identity, so authentication fails.
	Identity string

	// KnownHosts is the complete known_hosts content the client verifies
	// the server against, such as CertAuthorityLine(hostCA). Empty means
	// the server's host key pinned (Server.KnownHostsLine). There is no
	// trust on first use: StrictHostKeyChecking is yes.
	KnownHosts string

	// User is the remote user name. Empty means Server.User.
	User string

	// HostKeyAlias, if set, is the name the client looks up in KnownHosts
	// and requires among a host certificate's principals, instead of
	// "127.0.0.1" (KnownHosts entries then name the alias without a port).
	HostKeyAlias string

	// Args are extra ssh arguments placed before the helper's own, such as
	// "-tt" or "-o", "RequestTTY=force". ssh uses the first value given for
	// an option, so Args can override the helper's settings.
	Args []string
}

// Command returns an unstarted ssh client command that logs in to s with
// the private key file identity (and its certificate beside it, see
// ClientOptions.Identity), verifies the pinned host key, and runs
// remoteCommand (a shell when empty). It is shorthand for
// ClientCommand(ctx, ClientOptions{Identity: identity}, remoteCommand...).
func (s *Server) Command(ctx context.Context, identity string, remoteCommand ...string) *exec.Cmd {
	return s.ClientCommand(ctx, ClientOptions{Identity: identity}, remoteCommand...)
}

// ClientCommand returns an unstarted ssh client command for s configured by
// opts. The client reads no ssh_config (-F none), no agent and no key but
// opts.Identity, never prompts (BatchMode), and writes nothing outside
// s.Dir. ssh joins remoteCommand with spaces and the remote shell parses the
// result.
//
// If writing the known_hosts file fails, the returned command's Err is set
// and running it returns that error, as with exec.Command.
func (s *Server) ClientCommand(ctx context.Context, opts ClientOptions, remoteCommand ...string) *exec.Cmd {
	knownHosts := opts.KnownHosts
	if knownHosts == "" {
		knownHosts = s.KnownHostsLine()
	}
	khFile, err := s.writeTemp("known_hosts-*", knownHosts)
	user := opts.User
	if user == "" {
		user = s.User
	}
	args := append([]string(nil), opts.Args...)
	option := func(k, v string) { args = append(args, "-o", k+"="+v) }
	option("BatchMode", "yes")
	option("IdentitiesOnly", "yes")
	option("IdentityAgent", "none")
	if opts.Identity != "" {
		option("IdentityFile", opts.Identity)
		if _, err := os.Stat(opts.Identity + "-cert.pub"); err == nil {
			option("CertificateFile", opts.Identity+"-cert.pub")
		}
	} else {
		option("IdentityFile", "none")
	}
	option("UserKnownHostsFile", khFile)
	option("GlobalKnownHostsFile", "none")
	option("StrictHostKeyChecking", "yes")
	option("UpdateHostKeys", "no")
	option("CheckHostIP", "no")
	if opts.HostKeyAlias != "" {
		option("HostKeyAlias", opts.HostKeyAlias)
	}
	option("ControlMaster", "no")
	option("ControlPath", "none")
	option("ConnectTimeout", "10")
	option("PasswordAuthentication", "no")
	option("KbdInteractiveAuthentication", "no")
	args = append(args, "-F", "none", "-p", strconv.Itoa(s.Port), "-l", user, s.Host)
	if len(remoteCommand) > 0 {
		// ssh parses options after the destination too; "--" stops that,
		// so a remote command may start with "-".
		args = append(args, "--")
		args = append(args, remoteCommand...)
	}
	cmd := exec.CommandContext(ctx, "ssh", args...)
	if err != nil && cmd.Err == nil {
		cmd.Err = err
	}
	return cmd
}

// KnownHostsLine returns a known_hosts line pinning s's host key for the
// address the client dials, "[127.0.0.1]:port".
func (s *Server) KnownHostsLine() string {
	return knownhostsLine(net.JoinHostPort(s.Host, strconv.Itoa(s.Port)), s.HostKey)
}

// CertAuthorityLine returns a known_hosts line trusting hostCA for host
// certificates of every host: "@cert-authority * <hostCA>". The host
// certificate must list the name the client dials, "127.0.0.1" (or
// ClientOptions.HostKeyAlias), among its principals.
func CertAuthorityLine(hostCA ssh.PublicKey) string {
	return "@cert-authority * " + string(ssh.MarshalAuthorizedKey(hostCA))
}

func knownhostsLine(addr string, key ssh.PublicKey) string {
	host, port, err := net.SplitHostPort(addr)
	if err == nil && port != "22" {
		host = "[" + host + "]:" + port
	}
	return host + " " + string(ssh.MarshalAuthorizedKey(key))
}

func (s *Server) writeTemp(pattern, content string) (string, error) {
	f, err := os.CreateTemp(s.Dir, pattern)
	if err != nil {
		return "", fmt.Errorf("sshdtest: %w", err)
	}
	_, err = f.WriteString(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("sshdtest: write %s: %w", f.Name(), err)
	}
	return f.Name(), nil
}

// WriteIdentity writes key as an OpenSSH private key file with mode 0600 in
// dir (a new t.TempDir if dir is empty), its public key beside it as
// path+".pub", and, if cert is not nil, the certificate as path+"-cert.pub",
// where the ssh client finds it. It returns the private key's path, for
// ClientOptions.Identity. key is any type ssh.MarshalPrivateKey accepts,
// such as ed25519.PrivateKey.
func WriteIdentity(t testing.TB, dir string, key crypto.Signer, cert *ssh.Certificate) string {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	f, err := os.CreateTemp(dir, "id-*")
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	path := f.Name()
	f.Close()
	if err := writePrivateKey(path, key); err != nil {
		t.Fatalf("sshdtest: write identity: %v", err)
	}
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		t.Fatalf("sshdtest: write identity: %v", err)
	}
	if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(pub), 0o644); err != nil {
		t.Fatalf("sshdtest: write identity: %v", err)
	}
	if cert != nil {
		if err := os.WriteFile(path+"-cert.pub", ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
			t.Fatalf("sshdtest: write identity: %v", err)
		}
	}
	return path
}
