package ca_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/ca"
)

// ledger is a minimal in-memory ca.Ledger; Sallyport uses store.SQLite.
type ledger struct {
	mu     sync.Mutex
	serial uint64
}

func (l *ledger) NextSerial(context.Context) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.serial++
	return l.serial, nil
}

func (l *ledger) RecordIssued(context.Context, *ssh.Certificate, string) error { return nil }

func exampleSigner(seed byte) ssh.Signer {
	s, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
	if err != nil {
		panic(err)
	}
	return s
}

func ExampleAuthority_IssueUser() {
	a, err := ca.New(ca.Keys{User: exampleSigner(1), Session: exampleSigner(2), Host: exampleSigner(3)}, &ledger{})
	if err != nil {
		panic(err)
	}
	pub, err := ca.ParsePublicKey([]byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop"))
	if err != nil {
		panic(err)
	}
	cert, err := a.IssueUser(context.Background(), ca.UserRequest{
		PublicKey:   pub,
		Principals:  []string{"deploy"},
		TTL:         time.Hour,
		MaxTTL:      8 * time.Hour,
		Permissions: []ca.Permission{ca.PermitPTY},
		KeyID:       "alice github:1234",
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(cert.KeyId, cert.ValidPrincipals, cert.ValidBefore-cert.ValidAfter)

	_, err = a.IssueUser(context.Background(), ca.UserRequest{PublicKey: pub, TTL: time.Hour, MaxTTL: 8 * time.Hour, KeyID: "alice github:1234"})
	fmt.Println(err)
	// Output:
	// alice github:1234 serial=1 [deploy] 3900
	// ca: user certificate: at least one principal is required (an empty list would mean any user)
}
