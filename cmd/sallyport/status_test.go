package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// newSigner returns a signer with a fresh Ed25519 key.
func newSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

// writeCert writes a user certificate for a fresh key to dir/key-cert.pub,
// valid from an hour before until, with keyID, and returns the key's path.
func writeCert(t *testing.T, dir, keyID string, until time.Time) string {
	t.Helper()
	signer := newSigner(t)
	cert := &ssh.Certificate{Key: newSigner(t).PublicKey(), Serial: 7, CertType: ssh.UserCert, KeyId: keyID + " serial=7",
		ValidPrincipals: []string{"deploy"}, ValidAfter: uint64(until.Add(-time.Hour).Unix()), ValidBefore: uint64(until.Unix()),
		Permissions: ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}}}
	if err := cert.SignCert(rand.Reader, signer); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "key")
	if err := os.WriteFile(key+"-cert.pub", ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
		t.Fatal(err)
	}
	return key
}

func TestStatus(t *testing.T) {
	tests := []struct {
		name    string
		until   time.Duration
		want    string
		notWant string
	}{
		{"ok/valid", 2 * time.Hour, "valid until", "EXPIRED"},
		{"fail/expired", -time.Minute, "EXPIRED at", "valid until"},
		{"fail/just-expired", -time.Second, "EXPIRED at", "valid until"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := writeCert(t, t.TempDir(), "bob github:1002", time.Now().Add(tc.until))
			out, _, err := tryCLI(t, "status", "--key", key)
			var ec exitCode
			if strings.HasPrefix(tc.name, "ok/") != (err == nil) || err != nil && (!errors.As(err, &ec) || ec != 1) {
				t.Fatalf("err = %v; want ok=%v or exit status 1\n%s", err, strings.HasPrefix(tc.name, "ok/"), out)
			}
			if !strings.Contains(out, tc.want) || strings.Contains(out, tc.notWant) {
				t.Errorf("got\n%s\nwant %q and not %q", out, tc.want, tc.notWant)
			}
			if !strings.Contains(out, "bob github:1002 serial=7") {
				t.Errorf("got\n%s\nwant the key ID", out)
			}
		})
	}
}
