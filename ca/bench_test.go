package ca_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/store"
)

func benchSigner(b *testing.B, seed byte) ssh.Signer {
	b.Helper()
	s, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkIssueUser issues one Ed25519-signed user certificate per round,
// including validation, the serial allocation and the durable record of the
// certificate and its audit event in SQLite (synchronous=FULL).
func BenchmarkIssueUser(b *testing.B) {
	st, err := store.Open(b.Context(), filepath.Join(b.TempDir(), "sallyport.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	a, err := ca.New(ca.Keys{User: benchSigner(b, 1), Session: benchSigner(b, 2), Host: benchSigner(b, 3)}, st)
	if err != nil {
		b.Fatal(err)
	}
	req := ca.UserRequest{
		PublicKey: benchSigner(b, 9).PublicKey(), Principals: []string{"root", "deploy"},
		TTL: time.Hour, MaxTTL: 8 * time.Hour, KeyID: "alice github:1234",
		Permissions: []ca.Permission{ca.PermitPTY},
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := a.IssueUser(b.Context(), req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignCert is the floor BenchmarkIssueUser is compared with: a bare
// ssh.Certificate.SignCert with an Ed25519 CA, nothing validated or stored.
func BenchmarkSignCert(b *testing.B) {
	signer := benchSigner(b, 1)
	key := benchSigner(b, 9).PublicKey()
	now := time.Now()
	var serial uint64
	for b.Loop() {
		serial++
		cert := &ssh.Certificate{
			Key: key, Serial: serial, CertType: ssh.UserCert, KeyId: "alice github:1234",
			ValidPrincipals: []string{"root", "deploy"},
			ValidAfter:      uint64(now.Add(-5 * time.Minute).Unix()), ValidBefore: uint64(now.Add(time.Hour).Unix()),
			Permissions: ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}},
		}
		if err := cert.SignCert(rand.Reader, signer); err != nil {
			b.Fatal(err)
		}
	}
}
