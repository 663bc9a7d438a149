package bastion

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/ca"
)

func newRSASigner(t testing.TB) ssh.AlgorithmSigner {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return s.(ssh.AlgorithmSigner)
}

// TestUserAuthNoSHA1: a user certificate for an RSA key is accepted with
// rsa-sha2-256 and rsa-sha2-512 signatures, never with SHA-1 ssh-rsa,
// which OpenSSH refuses since 8.8 and x/crypto still accepts by default.
func TestUserAuthNoSHA1(t *testing.T) {
	e := newEnv(t, envOptions{})
	rs := newRSASigner(t)
	cert, err := e.auth.IssueUser(context.Background(), ca.UserRequest{
		PublicKey: rs.PublicKey(), Principals: []string{e.login}, TTL: time.Hour, MaxTTL: 24 * time.Hour,
		Permissions: []ca.Permission{ca.PermitPTY}, KeyID: "alice github:1001", Identity: "github:1001",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		algorithm string
		ok        bool
	}{
		{ssh.KeyAlgoRSASHA512, true},
		{ssh.KeyAlgoRSASHA256, true},
		{ssh.KeyAlgoRSA, false},
	} {
		name := "ok/" + tc.algorithm
		if !tc.ok {
			name = "fail/" + tc.algorithm
		}
		t.Run(name, func(t *testing.T) {
			only, err := ssh.NewSignerWithAlgorithms(rs, []string{tc.algorithm})
			if err != nil {
				t.Fatal(err)
			}
			cs, err := ssh.NewCertSigner(cert, only)
			if err != nil {
				t.Fatal(err)
			}
			cl, err := e.xclient(e.login+"@web1", cs)
			if !tc.ok {
				if err == nil {
					cl.Close()
					t.Fatalf("logged in with %s signatures", tc.algorithm)
				}
				return
			}
			if err != nil {
				t.Fatalf("login with %s signatures: %v", tc.algorithm, err)
			}
			defer cl.Close()
			s, err := cl.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if out, err := s.Output("echo in"); err != nil || string(out) != "in\n" {
				t.Fatalf("got %q %v", out, err)
			}
		})
	}
}

// TestRSAHostKeyNoSHA1: with an RSA host key, the bastion offers its host
// certificate with rsa-sha2-512 and rsa-sha2-256 signatures only; the real
// client connects as usual.
func TestRSAHostKeyNoSHA1(t *testing.T) {
	e := newEnv(t, envOptions{configure: func(s *Server) { s.HostKey = newRSASigner(t) }})
	checker := &ssh.CertChecker{IsHostAuthority: func(k ssh.PublicKey, _ string) bool {
		return bytes.Equal(k.Marshal(), e.keys.Host.PublicKey().Marshal())
	}}
	key, cert := e.issue(certOptions{})
	for _, tc := range []struct {
		algorithm string
		ok        bool
	}{
		{ssh.CertAlgoRSASHA512v01, true},
		{ssh.CertAlgoRSASHA256v01, true},
		{ssh.CertAlgoRSAv01, false},
	} {
		name := "ok/" + tc.algorithm
		if !tc.ok {
			name = "fail/" + tc.algorithm
		}
		t.Run(name, func(t *testing.T) {
			cl, err := ssh.Dial("tcp", e.addr, &ssh.ClientConfig{
				User: e.login + "@web1", Auth: []ssh.AuthMethod{ssh.PublicKeys(certSigner(t, key, cert))},
				HostKeyCallback: checker.CheckHostKey, HostKeyAlgorithms: []string{tc.algorithm}, Timeout: 10 * time.Second,
			})
			if !tc.ok {
				if err == nil {
					cl.Close()
					t.Fatalf("the bastion agreed on host key algorithm %s", tc.algorithm)
				}
				if !strings.Contains(err.Error(), "no common algorithm for host key") {
					t.Fatalf("got %v; want no common host key algorithm", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("host key algorithm %s: %v", tc.algorithm, err)
			}
			cl.Close()
		})
	}
	t.Run("ok/openssh", func(t *testing.T) {
		c := e.client(key, cert)
		for _, args := range [][]string{c.direct(e.login, "web1"), c.jump(e.login, "web1")} {
			if r := c.ssh(nil, args, "echo in"); r.code != 0 || r.stdout != "in\n" {
				t.Fatalf("code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
			}
		}
	})
}
