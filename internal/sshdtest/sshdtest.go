// Package sshdtest runs a real OpenSSH sshd on a loopback port for tests, and
// the real OpenSSH ssh client against it.
//
// It owns nothing of Sallyport itself: it lets the ca tests check that stock
// OpenSSH accepts what the CA issues (TrustedUserCAKeys, RevokedKeys,
// force-command, permit-* extensions, host certificates), and gives the
// bastion tests real targets to dial.
//
// The server is started per test in a temporary directory, listens only on
// 127.0.0.1, and logs in as the account running the test (os/user.Current):
// sshd running as a non-root user can authenticate no one else. A missing
// sshd fails the test; it never skips, because CI installs openssh-server.
//
// Authentication is by certificate only: AuthorizedKeysFile is none, so a
// plain key is always refused, and a certificate is accepted when it is
// signed by one of Config.TrustedUserCAKeys and lists the user as a principal
// (or, with Config.AuthorizedPrincipals, a principal in the user's file).
// Password and keyboard-interactive authentication and PAM are off.
package sshdtest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/internal/sshdproc"
)

// startTimeout bounds how long Start waits for sshd to present its banner.
const startTimeout = 10 * time.Second

// Config describes the sshd to start. The zero value is a server that trusts
// no user CA and so lets nobody in.
type Config struct {
	// TrustedUserCAKeys are written, one per line, to the file named by
	// sshd's TrustedUserCAKeys. Empty means no CA is trusted.
	TrustedUserCAKeys []ssh.PublicKey

	// RevokedKeysFile is the path sshd reads for RevokedKeys: a KRL
	// (ssh-keygen -k, or exported by the ca package) or a list of public
	// keys. sshd rereads it on every authentication, so a test may rewrite
	// it between connections. If the file does not exist at Start it is
	// created empty (revoking nothing), because sshd refuses every key when
	// the file is missing. Empty means no RevokedKeys line.
	RevokedKeysFile string

	// HostKey is the host private key, written in OpenSSH format with mode
	// 0600 (the types ssh.MarshalPrivateKey accepts: ed25519.PrivateKey,
	// *ecdsa.PrivateKey, *rsa.PrivateKey). Nil means a fresh ed25519 key;
	// its public half is in Server.HostKey either way.
	HostKey crypto.Signer

	// HostCertificate, if not nil, is served with HostKey (sshd's
	// HostCertificate). Its Key must be HostKey's public key, so a caller
	// wanting a host certificate also supplies HostKey. Nil means the plain
	// host key only.
	HostCertificate *ssh.Certificate

	// AuthorizedPrincipals, if not nil, turns on AuthorizedPrincipalsFile:
	// each user's file holds the given lines, one principal per line,
	// optionally preceded by options (for example
	// `command="/bin/true" deploy`), as in sshd(8). A user absent from the
	// map has no file, and sshd then accepts no certificate for them. Nil
	// means sshd requires the user's own name among the certificate's
	// principals.
	AuthorizedPrincipals map[string][]string

	// Extra are sshd_config lines written before the helper's own settings.
	// sshd uses the first value it reads for most keywords, so Extra can
	// override a default (say "LogLevel DEBUG3" or "PermitRootLogin no").
	// From the first line starting with "Match" on, Extra is written at the
	// end of the file instead, where Match blocks must be.
	Extra []string
}

// Server is a running sshd. Start stops it when the test ends.
type Server struct {
	// Addr is the listening address, "127.0.0.1:port".
	Addr string
	// Host is the listening IP address, always "127.0.0.1".
	Host string
	// Port is the listening TCP port.
	Port int
	// Dir is the temporary directory holding sshd_config, the host key,
	// the CA and principals files, the log, and files the client helpers
	// write.
	Dir string
	// ConfigFile is the path of sshd_config, for reading in failure output.
	ConfigFile string
	// HostKey is the public host key, for pinning in known_hosts or
	// ssh.FixedHostKey, or for signing a host certificate. With a host
	// certificate configured, sshd offers the certificate first, so an
	// x/crypto client pinning HostKey must set
	// ssh.ClientConfig.HostKeyAlgorithms to []string{HostKey.Type()}.
	HostKey ssh.PublicKey
	// User is the account to log in as: the user running the test.
	User string

	logFile string
	cmd     *exec.Cmd
	exited  <-chan error // receives cmd.Wait's result
	stop    sync.Once
	stopErr error
}

// Start starts sshd with cfg and waits until it presents its SSH banner on
// 127.0.0.1. It fails the test, with sshd's log, if sshd is not installed,
// the configuration is invalid, or the server does not come up within ten
// seconds. t.Cleanup stops the server.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	bin, err := sshdproc.Path()
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("sshdtest: current user: %v", err)
	}
	if err := sshdproc.PrepareRoot(); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}

	s := &Server{Host: "127.0.0.1", Dir: t.TempDir(), User: u.Username}
	s.ConfigFile = filepath.Join(s.Dir, "sshd_config")
	s.logFile = filepath.Join(s.Dir, "sshd.log")
	files, err := s.writeFiles(cfg)
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}

	conf := func(addr string, port int) []byte {
		s.Addr, s.Port = addr, port
		return s.config(cfg, files)
	}
	p, err := sshdproc.Start(context.Background(), bin, s.ConfigFile, s.logFile, conf, startTimeout)
	if err != nil {
		t.Fatalf("sshdtest: start %s: %v\nsshd log:\n%s", bin, err, s.Log())
	}
	s.cmd, s.exited = p.Cmd, p.Exited
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("sshdtest: stop sshd: %v", err)
		}
	})
	return s
}

// serverFiles are the paths of the files writeFiles created.
type serverFiles struct {
	hostKey, hostCert, trustedCAs, principalsDir string
}

func (s *Server) writeFiles(cfg Config) (serverFiles, error) {
	var f serverFiles
	key := cfg.HostKey
	if key == nil {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return f, fmt.Errorf("generate host key: %w", err)
		}
		key = k
	}
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		return f, fmt.Errorf("host key: %w", err)
	}
	s.HostKey = pub
	f.hostKey = filepath.Join(s.Dir, "ssh_host_key")
	if err := writePrivateKey(f.hostKey, key); err != nil {
		return f, fmt.Errorf("host key: %w", err)
	}

	if c := cfg.HostCertificate; c != nil {
		if c.CertType != ssh.HostCert {
			return f, fmt.Errorf("host certificate: type %d; want ssh.HostCert", c.CertType)
		}
		if !bytes.Equal(c.Key.Marshal(), pub.Marshal()) {
			return f, errors.New("host certificate: certifies a key other than Config.HostKey")
		}
		f.hostCert = f.hostKey + "-cert.pub"
		if err := os.WriteFile(f.hostCert, ssh.MarshalAuthorizedKey(c), 0o644); err != nil {
			return f, err
		}
	}

	var cas bytes.Buffer
	for _, k := range cfg.TrustedUserCAKeys {
		cas.Write(ssh.MarshalAuthorizedKey(k))
	}
	f.trustedCAs = filepath.Join(s.Dir, "trusted_user_ca_keys")
	if err := os.WriteFile(f.trustedCAs, cas.Bytes(), 0o644); err != nil {
		return f, err
	}

	if cfg.RevokedKeysFile != "" {
		fh, err := os.OpenFile(cfg.RevokedKeysFile, os.O_RDONLY|os.O_CREATE, 0o644)
		if err != nil {
			return f, fmt.Errorf("revoked keys file: %w", err)
		}
		fh.Close()
	}

	if cfg.AuthorizedPrincipals != nil {
		f.principalsDir = filepath.Join(s.Dir, "principals")
		if err := os.Mkdir(f.principalsDir, 0o755); err != nil {
			return f, err
		}
		for name, lines := range cfg.AuthorizedPrincipals {
			if name == "" || strings.ContainsAny(name, `/\%`) || name == "." || name == ".." {
				return f, fmt.Errorf("authorized principals: bad user name %q", name)
			}
			var b strings.Builder
			for _, l := range lines {
				b.WriteString(l)
				b.WriteByte('\n')
			}
			if err := os.WriteFile(filepath.Join(f.principalsDir, name), []byte(b.String()), 0o644); err != nil {
				return f, err
			}
		}
	}
	return f, nil
}

// config renders sshd_config. Paths are quoted because t.TempDir names derive
// from test names.
func (s *Server) config(cfg Config, f serverFiles) []byte {
	var b bytes.Buffer
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	var match []string
	for i, l := range cfg.Extra {
		if k, _, _ := strings.Cut(strings.TrimSpace(l), " "); strings.EqualFold(k, "Match") {
			match = cfg.Extra[i:]
			break
		}
		line("%s", l)
	}
	line("# written by sshdtest")
	line("ListenAddress %s", s.Addr)
	line("PidFile %q", filepath.Join(s.Dir, "sshd.pid"))
	line("HostKey %q", f.hostKey)
	if f.hostCert != "" {
		line("HostCertificate %q", f.hostCert)
	}
	line("LogLevel DEBUG1")
	line("UsePAM no")
	line("StrictModes no")
	line("PermitRootLogin prohibit-password")
	line("PubkeyAuthentication yes")
	line("PasswordAuthentication no")
	line("KbdInteractiveAuthentication no")
	line("HostbasedAuthentication no")
	line("GSSAPIAuthentication no")
	line("AuthorizedKeysFile none")
	line("TrustedUserCAKeys %q", f.trustedCAs)
	if cfg.RevokedKeysFile != "" {
		p, err := filepath.Abs(cfg.RevokedKeysFile)
		if err != nil {
			p = cfg.RevokedKeysFile
		}
		line("RevokedKeys %q", p)
	}
	if f.principalsDir != "" {
		// %% keeps a literal percent in the directory name from being read as
		// a token; %u is the user logging in.
		line("AuthorizedPrincipalsFile %q", strings.ReplaceAll(f.principalsDir, "%", "%%")+"/%u")
	}
	line("PrintMotd no")
	line("PrintLastLog no")
	line("UseDNS no")
	line("Subsystem sftp internal-sftp")
	for _, l := range match {
		line("%s", l)
	}
	return b.Bytes()
}

// writePrivateKey writes key in OpenSSH format with mode 0600; ssh and sshd
// ignore private key files others can read.
func writePrivateKey(path string, key crypto.PrivateKey) error {
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(block), 0o600)
}

// Log returns what sshd has logged so far, for failure messages. sshd logs
// at DEBUG1, which includes why a key or certificate was refused.
func (s *Server) Log() string {
	b, err := os.ReadFile(s.logFile)
	if err != nil {
		return fmt.Sprintf("(cannot read sshd log: %v)", err)
	}
	return string(b)
}
