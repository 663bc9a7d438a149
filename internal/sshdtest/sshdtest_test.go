package sshdtest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func newKey(t *testing.T) (ed25519.PrivateKey, ssh.Signer) {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, s
}

var serial uint64

func sign(t *testing.T, ca ssh.Signer, key ssh.PublicKey, typ uint32, principals ...string) *ssh.Certificate {
	t.Helper()
	serial++
	now := time.Now()
	c := &ssh.Certificate{
		Key:             key,
		Serial:          serial,
		CertType:        typ,
		KeyId:           fmt.Sprintf("sshdtest-%d", serial),
		ValidPrincipals: principals,
		ValidAfter:      uint64(now.Add(-time.Minute).Unix()),
		ValidBefore:     uint64(now.Add(time.Hour).Unix()),
	}
	if typ == ssh.UserCert {
		c.Extensions = map[string]string{"permit-pty": ""}
	}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return c
}

// run runs the ssh client and returns its stdout, stderr and error.
func run(t *testing.T, cmd *exec.Cmd) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestUserCertificate(t *testing.T) {
	_, userCA := newKey(t)
	_, otherCA := newKey(t)
	s := Start(t, Config{TrustedUserCAKeys: []ssh.PublicKey{userCA.PublicKey()}})
	dir := t.TempDir()

	tests := []struct {
		name     string
		identity func() string
		wantOK   bool
	}{
		{"ok/certificate", func() string {
			k, sg := newKey(t)
			return WriteIdentity(t, dir, k, sign(t, userCA, sg.PublicKey(), ssh.UserCert, s.User))
		}, true},
		{"fail/unsigned-key", func() string {
			k, _ := newKey(t)
			return WriteIdentity(t, dir, k, nil)
		}, false},
		{"fail/no-identity", func() string { return "" }, false},
		{"fail/untrusted-ca", func() string {
			k, sg := newKey(t)
			return WriteIdentity(t, dir, k, sign(t, otherCA, sg.PublicKey(), ssh.UserCert, s.User))
		}, false},
		{"fail/other-principal", func() string {
			k, sg := newKey(t)
			return WriteIdentity(t, dir, k, sign(t, userCA, sg.PublicKey(), ssh.UserCert, s.User+"-not"))
		}, false},
		{"fail/host-certificate", func() string {
			k, sg := newKey(t)
			return WriteIdentity(t, dir, k, sign(t, userCA, sg.PublicKey(), ssh.HostCert, s.User))
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, err := run(t, s.Command(ctx(t), tt.identity(), "echo", "hello"))
			if tt.wantOK {
				if err != nil || out != "hello\n" {
					t.Fatalf("ssh echo hello: got %q, %v; want \"hello\\n\"\nssh stderr:\n%s\nsshd log:\n%s", out, err, errOut, s.Log())
				}
				return
			}
			if err == nil {
				t.Fatalf("ssh echo hello: got %q, success; want refusal\nsshd log:\n%s", out, s.Log())
			}
			if !strings.Contains(errOut, "Permission denied") {
				t.Fatalf("ssh stderr: got %q; want Permission denied", errOut)
			}
		})
	}
}

func TestHostCertificate(t *testing.T) {
	_, userCA := newKey(t)
	_, hostCA := newKey(t)
	_, otherCA := newKey(t)
	hostKey, hostSigner := newKey(t)
	s := Start(t, Config{
		TrustedUserCAKeys: []ssh.PublicKey{userCA.PublicKey()},
		HostKey:           hostKey,
		HostCertificate:   sign(t, hostCA, hostSigner.PublicKey(), ssh.HostCert, "127.0.0.1", "web1"),
	})
	if !bytes.Equal(s.HostKey.Marshal(), hostSigner.PublicKey().Marshal()) {
		t.Fatalf("Server.HostKey is not Config.HostKey's public key")
	}
	k, sg := newKey(t)
	id := WriteIdentity(t, "", k, sign(t, userCA, sg.PublicKey(), ssh.UserCert, s.User))

	tests := []struct {
		name   string
		opts   ClientOptions
		wantOK bool
	}{
		{"ok/pinned-key", ClientOptions{}, true},
		{"ok/cert-authority", ClientOptions{KnownHosts: CertAuthorityLine(hostCA.PublicKey())}, true},
		{"ok/cert-authority-alias", ClientOptions{KnownHosts: CertAuthorityLine(hostCA.PublicKey()), HostKeyAlias: "web1"}, true},
		{"fail/other-ca", ClientOptions{KnownHosts: CertAuthorityLine(otherCA.PublicKey())}, false},
		{"fail/alias-not-principal", ClientOptions{KnownHosts: CertAuthorityLine(hostCA.PublicKey()), HostKeyAlias: "web2"}, false},
		{"fail/other-pinned-key", ClientOptions{KnownHosts: knownhostsLine(s.Addr, sg.PublicKey())}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Identity = id
			out, errOut, err := run(t, s.ClientCommand(ctx(t), tt.opts, "echo", "hello"))
			if tt.wantOK {
				if err != nil || out != "hello\n" {
					t.Fatalf("ssh echo hello: got %q, %v; want \"hello\\n\"\nssh stderr:\n%s", out, err, errOut)
				}
				return
			}
			if err == nil {
				t.Fatalf("ssh echo hello: got %q, success; want host key refused", out)
			}
			if !strings.Contains(errOut, "Host key verification failed") {
				t.Fatalf("ssh stderr: got %q; want Host key verification failed", errOut)
			}
		})
	}
}

func TestXCryptoClient(t *testing.T) {
	_, userCA := newKey(t)
	_, hostCA := newKey(t)
	hostKey, hostSigner := newKey(t)
	s := Start(t, Config{
		TrustedUserCAKeys: []ssh.PublicKey{userCA.PublicKey()},
		HostKey:           hostKey,
		HostCertificate:   sign(t, hostCA, hostSigner.PublicKey(), ssh.HostCert, "127.0.0.1"),
	})
	_, sg := newKey(t)
	certSigner, err := ssh.NewCertSigner(sign(t, userCA, sg.PublicKey(), ssh.UserCert, s.User), sg)
	if err != nil {
		t.Fatal(err)
	}
	checker := &ssh.CertChecker{
		IsHostAuthority: func(auth ssh.PublicKey, _ string) bool {
			return bytes.Equal(auth.Marshal(), hostCA.PublicKey().Marshal())
		},
	}

	tests := []struct {
		name     string
		hostKey  ssh.HostKeyCallback
		hostAlgs []string
		auth     ssh.Signer
		wantErr  string
	}{
		// A server with a host certificate offers it first; a client
		// pinning the plain key must ask for the plain algorithm.
		{"ok/fixed-host-key", ssh.FixedHostKey(s.HostKey), []string{s.HostKey.Type()}, certSigner, ""},
		{"ok/host-certificate", checker.CheckHostKey, []string{ssh.CertAlgoED25519v01}, certSigner, ""},
		{"fail/unsigned-key", checker.CheckHostKey, nil, sg, "unable to authenticate"},
		{"fail/host-certificate-unknown-ca", (&ssh.CertChecker{IsHostAuthority: func(ssh.PublicKey, string) bool { return false }}).CheckHostKey, nil, certSigner, "handshake failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ssh.Dial("tcp", s.Addr, &ssh.ClientConfig{
				User:              s.User,
				Auth:              []ssh.AuthMethod{ssh.PublicKeys(tt.auth)},
				HostKeyCallback:   tt.hostKey,
				HostKeyAlgorithms: tt.hostAlgs,
				Timeout:           10 * time.Second,
			})
			if tt.wantErr != "" {
				if err == nil {
					c.Close()
					t.Fatalf("ssh.Dial: got success; want error containing %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ssh.Dial: got %v; want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ssh.Dial: %v\nsshd log:\n%s", err, s.Log())
			}
			defer c.Close()
			sess, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer sess.Close()
			out, err := sess.CombinedOutput("echo hello")
			if err != nil || string(out) != "hello\n" {
				t.Fatalf("echo hello: got %q, %v; want \"hello\\n\"", out, err)
			}
		})
	}
}

func TestRevokedKeys(t *testing.T) {
	_, userCA := newKey(t)
	revoked := filepath.Join(t.TempDir(), "revoked")
	s := Start(t, Config{TrustedUserCAKeys: []ssh.PublicKey{userCA.PublicKey()}, RevokedKeysFile: revoked})
	k, sg := newKey(t)
	id := WriteIdentity(t, "", k, sign(t, userCA, sg.PublicKey(), ssh.UserCert, s.User))

	if out, errOut, err := run(t, s.Command(ctx(t), id, "true")); err != nil {
		t.Fatalf("before revocation: got %q, %v; want success\n%s\nsshd log:\n%s", out, err, errOut, s.Log())
	}
	// sshd rereads the file on each authentication.
	if err := os.WriteFile(revoked, ssh.MarshalAuthorizedKey(sg.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, s.Command(ctx(t), id, "true")); err == nil {
		t.Fatalf("after revocation: got success; want refusal\nsshd log:\n%s", s.Log())
	}
	if !strings.Contains(s.Log(), "revoked") {
		t.Fatalf("sshd log does not mention the revocation:\n%s", s.Log())
	}
}

func TestAuthorizedPrincipals(t *testing.T) {
	_, userCA := newKey(t)
	s := Start(t, Config{
		TrustedUserCAKeys:    []ssh.PublicKey{userCA.PublicKey()},
		AuthorizedPrincipals: map[string][]string{currentUser(t): {"deploy", `command="echo forced" forced`}},
	})
	tests := []struct {
		name      string
		principal string
		wantOut   string // "" means refused
	}{
		{"ok/listed", "deploy", "hello\n"},
		{"ok/forced-command", "forced", "forced\n"},
		{"fail/user-name-not-listed", s.User, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, sg := newKey(t)
			id := WriteIdentity(t, "", k, sign(t, userCA, sg.PublicKey(), ssh.UserCert, tt.principal))
			out, errOut, err := run(t, s.Command(ctx(t), id, "echo", "hello"))
			if tt.wantOut == "" {
				if err == nil {
					t.Fatalf("got %q, success; want refusal", out)
				}
				return
			}
			if err != nil || out != tt.wantOut {
				t.Fatalf("got %q, %v; want %q\n%s\nsshd log:\n%s", out, err, tt.wantOut, errOut, s.Log())
			}
		})
	}
}

func currentUser(t *testing.T) string {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

func TestExtraMatchBlock(t *testing.T) {
	_, userCA := newKey(t)
	u := currentUser(t)
	s := Start(t, Config{
		TrustedUserCAKeys: []ssh.PublicKey{userCA.PublicKey()},
		Extra: []string{
			"LogLevel DEBUG3", // overrides the helper's DEBUG1
			"Match User " + u,
			"\tForceCommand echo matched",
		},
	})
	k, sg := newKey(t)
	id := WriteIdentity(t, "", k, sign(t, userCA, sg.PublicKey(), ssh.UserCert, u))
	out, errOut, err := run(t, s.Command(ctx(t), id, "echo", "hello"))
	if err != nil || out != "matched\n" {
		t.Fatalf("got %q, %v; want \"matched\\n\"\n%s\nsshd log:\n%s", out, err, errOut, s.Log())
	}
	if !strings.Contains(s.Log(), "debug3:") {
		t.Fatalf("LogLevel DEBUG3 from Extra did not take effect")
	}
}

func TestPTY(t *testing.T) {
	_, userCA := newKey(t)
	s := Start(t, Config{TrustedUserCAKeys: []ssh.PublicKey{userCA.PublicKey()}})
	k, sg := newKey(t)
	id := WriteIdentity(t, "", k, sign(t, userCA, sg.PublicKey(), ssh.UserCert, s.User))
	out, errOut, err := run(t, s.ClientCommand(ctx(t), ClientOptions{Identity: id, Args: []string{"-tt"}}, "tty"))
	if err != nil || !strings.HasPrefix(out, "/dev/pts/") {
		t.Fatalf("ssh -tt tty: got %q, %v; want /dev/pts/N\n%s\nsshd log:\n%s", out, err, errOut, s.Log())
	}
}

func TestClose(t *testing.T) {
	_, userCA := newKey(t)
	s := Start(t, Config{TrustedUserCAKeys: []ssh.PublicKey{userCA.PublicKey()}})
	k, sg := newKey(t)
	id := WriteIdentity(t, "", k, sign(t, userCA, sg.PublicKey(), ssh.UserCert, s.User))

	// A session still open when the server stops must not outlive it.
	cmd := s.Command(ctx(t), id, "echo started; exec sleep 300")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len("started\n"))
	if _, err := stdout.Read(buf); err != nil {
		t.Fatalf("read session output: %v\nsshd log:\n%s", err, s.Log())
	}
	pid := s.cmd.Process.Pid
	below := descendants(pid)
	if len(below) == 0 {
		t.Fatalf("no processes below sshd %d with a session open", pid)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := cmd.Wait(); err == nil {
		t.Errorf("ssh session: got clean exit; want connection closed")
	}
	if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
		c.Close()
		t.Errorf("dial %s after Close: got connection; want refused", s.Addr)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range append(below, pid) {
		for processExists(p) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d still running after Close", p)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// processExists reports whether pid runs and is not a zombie.
func processExists(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || !bytes.HasPrefix(bytes.TrimSpace(b[i+1:]), []byte("Z"))
}

// fatalTB records Fatalf instead of failing the real test.
type fatalTB struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.msg = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func TestStartFailsClearly(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"fail/bad-config", Config{Extra: []string{"NoSuchKeyword yes"}}, "Bad configuration option"},
		{"fail/host-cert-for-other-key", Config{HostCertificate: func() *ssh.Certificate {
			_, ca := newKey(t)
			_, k := newKey(t)
			return sign(t, ca, k.PublicKey(), ssh.HostCert, "127.0.0.1")
		}()}, "certifies a key other than Config.HostKey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fatalTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				Start(f, tt.cfg)
			}()
			<-done
			if f.msg == "" {
				t.Fatal("Start succeeded; want failure")
			}
			if !strings.Contains(f.msg, tt.want) {
				t.Fatalf("Start failure: got %q; want it to contain %q", f.msg, tt.want)
			}
		})
	}
}
