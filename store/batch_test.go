package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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

func TestBatcherLoneRecordDoesNotWait(t *testing.T) {
	s := openTest(t, "", Options{})
	// With nobody else signing, a record is committed at once, however
	// long the writer may hold a batch open under load.
	b := s.NewBatcher(BatchOptions{MaxDelay: time.Hour})
	defer b.Close()
	ctx := context.Background()
	ca, key := newSigner(t), newSigner(t).PublicKey()
	for range 3 {
		serial, err := b.NextSerial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cert := newCert(t, ca, key, serial, ssh.UserCert)
		start := time.Now()
		if err := b.RecordIssued(ctx, cert, "github:3"); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > time.Minute {
			t.Fatalf("RecordIssued took %s; want no wait for company", d)
		}
	}
}

func TestPrepareRowJSON(t *testing.T) {
	ca, key := newSigner(t), newSigner(t).PublicKey()
	tests := []struct {
		name       string
		principals []string
	}{
		{"ok/plain", []string{"deploy", "root"}},
		{"ok/none", nil},
		{"ok/escaped", []string{"<a&b>", "q\"uote", "back\\slash", "tab\t", "é", "\u2028", "\x7f"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cert := newCert(t, ca, key, 42, ssh.UserCert, "root")
			cert.ValidPrincipals = tc.principals // after signing: only the row is under test
			row, err := prepareRow(cert, "github:1")
			if err != nil {
				t.Fatal(err)
			}
			wantPrincipals, _ := json.Marshal(nonNil(tc.principals))
			if row.principals != string(wantPrincipals) {
				t.Errorf("got principals %s; want %s", row.principals, wantPrincipals)
			}
			e := issueEvent(&batchReq{cert: cert, identity: "github:1", row: row}, t0)
			wantFields, _ := json.Marshal(e.Fields)
			if row.fields != string(wantFields) {
				t.Errorf("got fields %s; want %s", row.fields, wantFields)
			}
			if len(e.Fields) != 7 || e.Fields["serial"] != "42" || e.Fields["key_fingerprint"] != ssh.FingerprintSHA256(key) {
				t.Errorf("got event fields %v", e.Fields)
			}
			wantCert := string(bytes.TrimSpace(ssh.MarshalAuthorizedKey(cert)))
			if row.authorized != wantCert {
				t.Errorf("got certificate %q; want %q", row.authorized, wantCert)
			}
		})
	}
}

// BenchmarkBatcherRecordIssued records certificates signed beforehand from
// 128 concurrent callers, as the web server does under load, and reports
// the CPU time (user and system, the whole process) per record.
func BenchmarkBatcherRecordIssued(b *testing.B) {
	ctx := context.Background()
	s := openTest(b, "", Options{})
	bt := s.NewBatcher(BatchOptions{})
	defer bt.Close()
	const callers = 128
	ca := newSigner(b)
	keys := make([]ssh.PublicKey, callers)
	for i := range keys {
		keys[i] = newSigner(b).PublicKey()
	}
	certs := make([]*ssh.Certificate, b.N)
	for i := range certs {
		serial, err := bt.NextSerial(ctx)
		if err != nil {
			b.Fatal(err)
		}
		certs[i] = newCert(b, ca, keys[i%callers], serial, ssh.UserCert, "deploy", "root")
	}
	var next atomic.Int64
	var failed atomic.Pointer[error]
	b.ResetTimer()
	cpu0 := cpuTime(b)
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(certs)); i = next.Add(1) - 1 {
				if err := bt.RecordIssued(ctx, certs[i], "github:1"); err != nil {
					failed.Store(&err)
					return
				}
			}
		}()
	}
	wg.Wait()
	cpu := cpuTime(b) - cpu0
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
