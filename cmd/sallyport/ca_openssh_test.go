package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/internal/sshdtest"
)

// runCLI runs the sallyport command line in-process and returns stdout, or
// fails the test with stderr.
func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := tryCLI(t, args...)
	if err != nil {
		t.Fatalf("sallyport %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

func tryCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), args, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// newUserKey writes a fresh ed25519 key pair to dir and returns the private
// key's path; its public key is path+".pub".
func newUserKey(t *testing.T, dir string) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return sshdtest.WriteIdentity(t, dir, priv, nil)
}

// signUser signs key+".pub" with the CLI and installs the certificate beside
// the key, where ssh looks for it.
func signUser(t *testing.T, data, key string, args ...string) *ssh.Certificate {
	t.Helper()
	out := runCLI(t, append(append([]string{"ca", "sign-user", "--data", data}, args...), key+".pub")...)
	if err := os.WriteFile(key+"-cert.pub", []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(out))
	if err != nil {
		t.Fatalf("sign-user printed %q: %v", out, err)
	}
	return pub.(*ssh.Certificate)
}

func readCAKey(t *testing.T, data string, k ca.Kind) ssh.PublicKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, k.FileName()+".pub"))
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func sshRun(t *testing.T, cmd *exec.Cmd) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// issueAt signs a user certificate for key with the data folder's CA as if
// the clock read now+shift, to make expired and not-yet-valid certificates.
func issueAt(t *testing.T, data, key, principal string, shift time.Duration) {
	t.Helper()
	a, st, err := openAuthority(t.Context(), data)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a.Now = func() time.Time { return time.Now().Add(shift) }
	b, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ca.ParsePublicKey(b)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := a.IssueUser(t.Context(), ca.UserRequest{PublicKey: pub, Principals: []string{principal}, TTL: time.Hour, MaxTTL: time.Hour, KeyID: "clock-test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key+"-cert.pub", ssh.MarshalAuthorizedKey(cert), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestUserCertificatesAgainstSSHD checks issued user certificates against a
// real OpenSSH sshd trusting the user CA, including revocation through our
// KRL as sshd's RevokedKeys.
func TestUserCertificatesAgainstSSHD(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	runCLI(t, "ca", "init", "--data", data)
	krl := filepath.Join(t.TempDir(), "revoked.krl")
	runCLI(t, "ca", "krl", "--data", data, "--out", krl)
	srv := sshdtest.Start(t, sshdtest.Config{
		TrustedUserCAKeys: []ssh.PublicKey{readCAKey(t, data, ca.KindUser)},
		RevokedKeysFile:   krl,
	})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	keys := t.TempDir()

	tests := []struct {
		name    string
		prepare func(t *testing.T, key string)
		opts    []string // extra ssh arguments
		command []string
		wantOK  bool
		want    string // in stdout when wantOK, in stderr otherwise
		sshdLog string // sshd's reason for a refusal, in its log
	}{
		{"ok/allowed-principal", func(t *testing.T, key string) {
			signUser(t, data, key, "--principal", srv.User, "--key-id", "alice github:1")
		}, nil, []string{"echo", "hello"}, true, "hello", ""},
		{"fail/wrong-principal", func(t *testing.T, key string) {
			signUser(t, data, key, "--principal", "someone-else", "--key-id", "alice github:1")
		}, nil, []string{"true"}, false, "Permission denied", "not a listed principal"},
		{"fail/expired", func(t *testing.T, key string) {
			issueAt(t, data, key, srv.User, -2*time.Hour)
		}, nil, []string{"true"}, false, "Permission denied", "Certificate invalid: expired"},
		{"fail/not-yet-valid", func(t *testing.T, key string) {
			issueAt(t, data, key, srv.User, time.Hour)
		}, nil, []string{"true"}, false, "Permission denied", "Certificate invalid: not yet valid"},
		{"fail/source-address-mismatch", func(t *testing.T, key string) {
			signUser(t, data, key, "--principal", srv.User, "--key-id", "alice github:1", "--source-address", "192.0.2.0/24")
		}, nil, []string{"true"}, false, "Permission denied", "not from a permitted source address"},
		{"ok/source-address-match", func(t *testing.T, key string) {
			signUser(t, data, key, "--principal", srv.User, "--key-id", "alice github:1", "--source-address", "127.0.0.0/8")
		}, nil, []string{"echo", "from-loopback"}, true, "from-loopback", ""},
		{"ok/force-command", func(t *testing.T, key string) {
			signUser(t, data, key, "--principal", srv.User, "--key-id", "alice github:1", "--force-command", "echo forced")
		}, nil, []string{"echo", "asked-for"}, true, "forced", ""},
		{"ok/no-pty-without-permit-pty", func(t *testing.T, key string) {
			signUser(t, data, key, "--principal", srv.User, "--key-id", "alice github:1")
		}, []string{"-tt"}, []string{"tty"}, false, "PTY allocation request failed", ""},
		{"ok/pty-with-permit-pty", func(t *testing.T, key string) {
			signUser(t, data, key, "--principal", srv.User, "--key-id", "alice github:1", "--permit", "pty")
		}, []string{"-tt"}, []string{"tty"}, true, "/dev/pts/", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := newUserKey(t, keys)
			tc.prepare(t, key)
			out, errOut, err := sshRun(t, srv.ClientCommand(ctx, sshdtest.ClientOptions{Identity: key, Args: tc.opts}, tc.command...))
			if tc.wantOK && err != nil {
				t.Fatalf("ssh: err=%v\nstdout: %s\nstderr: %s\nsshd log:\n%s", err, out, errOut, srv.Log())
			}
			if tc.sshdLog != "" && !strings.Contains(srv.Log(), tc.sshdLog) {
				t.Errorf("sshd log does not give the reason %q:\n%s", tc.sshdLog, srv.Log())
			}
			if tc.wantOK && strings.Contains(errOut, "PTY allocation request failed") {
				t.Errorf("pty refused: %s", errOut)
			}
			if !strings.Contains(out+errOut, tc.want) {
				t.Errorf("ssh output does not contain %q\nstdout: %s\nstderr: %s", tc.want, out, errOut)
			}
		})
	}

	t.Run("fail/revoked-by-serial", func(t *testing.T) {
		key := newUserKey(t, keys)
		cert := signUser(t, data, key, "--principal", srv.User, "--key-id", "bob github:2")
		if _, errOut, err := sshRun(t, srv.Command(ctx, key, "true")); err != nil {
			t.Fatalf("before revocation: %v\n%s", err, errOut)
		}
		runCLI(t, "ca", "revoke", "--data", data, "--serial", strconv.FormatUint(cert.Serial, 10), "--reason", "laptop lost")
		runCLI(t, "ca", "krl", "--data", data, "--out", krl)
		_, errOut, err := sshRun(t, srv.Command(ctx, key, "true"))
		if err == nil || !strings.Contains(errOut, "Permission denied") {
			t.Fatalf("revoked certificate: err=%v\n%s", err, errOut)
		}
		if log := srv.Log(); !strings.Contains(log, "revoked") {
			t.Errorf("sshd log does not mention the revocation:\n%s", log)
		}
	})
	t.Run("fail/revoked-by-key", func(t *testing.T) {
		key := newUserKey(t, keys)
		signUser(t, data, key, "--principal", srv.User, "--key-id", "carol github:3")
		runCLI(t, "ca", "revoke", "--data", data, "--key", key+".pub")
		runCLI(t, "ca", "krl", "--data", data, "--out", krl)
		if _, errOut, err := sshRun(t, srv.Command(ctx, key, "true")); err == nil {
			t.Fatalf("certificate of a revoked key accepted\n%s", errOut)
		}
		// The CA refuses to certify a revoked key again.
		_, _, err := tryCLI(t, "ca", "sign-user", "--data", data, "--principal", srv.User, "--key-id", "carol github:3", key+".pub")
		if err == nil || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("sign-user for a revoked key: %v; want a refusal naming the revocation", err)
		}
	})
	t.Run("ok/others-unaffected-by-revocations", func(t *testing.T) {
		key := newUserKey(t, keys)
		signUser(t, data, key, "--principal", srv.User, "--key-id", "dave github:4")
		if _, errOut, err := sshRun(t, srv.Command(ctx, key, "true")); err != nil {
			t.Fatalf("unrevoked certificate refused: %v\n%s", err, errOut)
		}
	})
}

// TestHostCertificateAgainstSSH checks that the real ssh client, with one
// @cert-authority line for the host CA, accepts a host certificate made by
// sign-host and refuses a host key that is not signed.
func TestHostCertificateAgainstSSH(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	runCLI(t, "ca", "init", "--data", data)
	dir := t.TempDir()
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostKeyFile := sshdtest.WriteIdentity(t, dir, hostPriv, nil)
	out := runCLI(t, "ca", "sign-host", "--data", data, "--hostname", "127.0.0.1", "--hostname", "web1", "--ttl", "720h", hostKeyFile+".pub")
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(out))
	if err != nil {
		t.Fatalf("sign-host printed %q: %v", out, err)
	}
	hostCert := pub.(*ssh.Certificate)
	if hostCert.CertType != ssh.HostCert {
		t.Fatalf("sign-host made a certificate of type %d", hostCert.CertType)
	}

	// Users log in with a user certificate; this test is about the host side.
	userKey := newUserKey(t, dir)
	known := sshdtest.CertAuthorityLine(readCAKey(t, data, ca.KindHost))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	signed := sshdtest.Start(t, sshdtest.Config{
		TrustedUserCAKeys: []ssh.PublicKey{readCAKey(t, data, ca.KindUser)},
		HostKey:           hostPriv,
		HostCertificate:   hostCert,
	})
	signUser(t, data, userKey, "--principal", signed.User, "--key-id", "alice github:1")
	if out, errOut, err := sshRun(t, signed.ClientCommand(ctx, sshdtest.ClientOptions{Identity: userKey, KnownHosts: known}, "echo", "trusted")); err != nil || !strings.Contains(out, "trusted") {
		t.Fatalf("signed host refused: %v\n%s\nsshd log:\n%s", err, errOut, signed.Log())
	}
	if _, errOut, err := sshRun(t, signed.ClientCommand(ctx, sshdtest.ClientOptions{Identity: userKey, KnownHosts: known, HostKeyAlias: "web2"}, "true")); err == nil {
		t.Fatal("host certificate accepted for a name it does not carry")
	} else if !strings.Contains(errOut, "Host key verification failed") {
		t.Errorf("unexpected refusal: %s", errOut)
	}

	unsigned := sshdtest.Start(t, sshdtest.Config{TrustedUserCAKeys: []ssh.PublicKey{readCAKey(t, data, ca.KindUser)}})
	if _, errOut, err := sshRun(t, unsigned.ClientCommand(ctx, sshdtest.ClientOptions{Identity: userKey, KnownHosts: known}, "true")); err == nil {
		t.Fatal("unsigned host key accepted")
	} else if !strings.Contains(errOut, "Host key verification failed") {
		t.Errorf("unexpected refusal: %s", errOut)
	}
}
