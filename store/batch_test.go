package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
)

func TestBatcherRecordsConcurrently(t *testing.T) {
	s := openTest(t, "", Options{})
	b := s.NewBatcher(BatchOptions{SerialBlock: 7, MaxBatch: 16})
	ca, key := newSigner(t), newSigner(t).PublicKey()
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	serials := make(chan uint64, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			serial, err := b.NextSerial(context.Background())
			if err != nil {
				errs <- err
				return
			}
			serials <- serial
			errs <- b.RecordIssued(context.Background(), newCert(t, ca, key, serial, ssh.UserCert), "github:1")
		}()
	}
	wg.Wait()
	close(errs)
	close(serials)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	seen := map[uint64]bool{}
	for s := range serials {
		if s == 0 || seen[s] {
			t.Fatalf("serial %d handed out twice or zero", s)
		}
		seen[s] = true
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	certs, err := s.Certificates(context.Background(), CertificateFilter{Identity: "github:1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != n {
		t.Errorf("got %d certificates recorded; want %d", len(certs), n)
	}
	events, err := s.AuditEvents(context.Background(), AuditQuery{Type: audit.TypeIssue})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != n {
		t.Errorf("got %d issue events; want %d", len(events), n)
	}
	// The plain store continues after the reserved blocks.
	next, err := s.NextSerial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for s := range seen {
		if next <= s {
			t.Fatalf("NextSerial after the batcher = %d; want above %d", next, s)
		}
	}
}

func TestBatcherRefusals(t *testing.T) {
	s := openTest(t, "", Options{})
	b := s.NewBatcher(BatchOptions{})
	defer b.Close()
	ctx := context.Background()
	ca := newSigner(t)
	revoked, ok := newSigner(t).PublicKey(), newSigner(t).PublicKey()
	if err := s.Revoke(ctx, Revocation{Key: revoked, Actor: "test", Reason: "lost"}); err != nil {
		t.Fatal(err)
	}
	first, err := b.NextSerial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.RecordIssued(ctx, newCert(t, ca, ok, first, ssh.UserCert), "github:2"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cert *ssh.Certificate
		want error
	}{
		{"fail/revoked-key", newCert(t, ca, revoked, first+1, ssh.UserCert), ErrRevoked},
		{"fail/duplicate-serial", newCert(t, ca, ok, first, ssh.UserCert), ErrDuplicateSerial},
		{"ok/fresh", newCert(t, ca, ok, first+2, ssh.UserCert), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := b.RecordIssued(ctx, tc.cert, "github:2")
			if !errors.Is(err, tc.want) {
				t.Errorf("got %v; want %v", err, tc.want)
			}
		})
	}
	b.Close()
	if err := b.RecordIssued(ctx, newCert(t, ca, ok, first+3, ssh.UserCert), "github:2"); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: got %v; want ErrClosed", err)
	}
}

func BenchmarkBatcherRecordIssued(b *testing.B) {
	s := openTest(b, "", Options{})
	bt := s.NewBatcher(BatchOptions{})
	defer bt.Close()
	ca, key := newSigner(b), newSigner(b).PublicKey()
	b.SetParallelism(64)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			serial, err := bt.NextSerial(context.Background())
			if err != nil {
				panic(err)
			}
			if err := bt.RecordIssued(context.Background(), newCert(b, ca, key, serial, ssh.UserCert), "github:1"); err != nil {
				panic(fmt.Sprint(err))
			}
		}
	})
}
