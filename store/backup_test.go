package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
)

func TestSnapshotSummaryAndAdvance(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	signer := newSigner(t)
	for i := 0; i < 3; i++ {
		serial, err := s.NextSerial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.RecordIssued(ctx, newCert(t, signer, newSigner(t).PublicKey(), serial, ssh.UserCert, "root"), "github:1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Revoke(ctx, Revocation{Serial: 2, Actor: "github:1", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	want, err := s.Summary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want.LastSerial != 3 || want.Certificates != 3 || want.Revocations != 1 || want.AuditEvents != 4 || want.SchemaVersion != schemaVersion {
		t.Fatalf("summary = %+v", want)
	}

	path := filepath.Join(t.TempDir(), "snap.db")
	if err := s.Snapshot(ctx, path); err != nil {
		t.Fatal(err)
	}
	if err := s.Snapshot(ctx, path); err == nil {
		t.Errorf("second snapshot over an existing file: no error")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot mode %v, %v; want 0600", fi.Mode(), err)
	}
	snap := openTest(t, path, Options{})
	if err := snap.CheckIntegrity(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := snap.Summary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("snapshot summary = %+v; want %+v", got, want)
	}
	last, err := snap.AdvanceSerials(ctx, 1000, "offline:test")
	if err != nil || last != 1003 {
		t.Fatalf("AdvanceSerials = %d, %v; want 1003", last, err)
	}
	if next, err := snap.NextSerial(ctx); err != nil || next != 1004 {
		t.Errorf("NextSerial after advance = %d, %v; want 1004", next, err)
	}
	if ev, err := snap.AuditEvents(ctx, AuditQuery{Type: "restore"}); err != nil || len(ev) != 1 {
		t.Errorf("restore events = %v, %v; want one", ev, err)
	}
}

func TestUseRequestOnce(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	ev := audit.Event{Type: "breakglass", Actor: "offline:test", Subject: "breakglass:abc", Outcome: audit.OutcomeOK}
	tests := []struct {
		name string
		id   string
		err  error
	}{
		{"ok/first", "abc", nil},
		{"fail/replayed", "abc", ErrRequestUsed},
		{"ok/other", "def", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.UseRequest(ctx, tc.id, ev)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("err = %v; want %v", err, tc.err)
			}
		})
	}
	if evs, err := s.AuditEvents(ctx, AuditQuery{Type: "breakglass"}); err != nil || len(evs) != 2 {
		t.Errorf("audit events = %d, %v; want 2 (the replay writes none)", len(evs), err)
	}
	if err := s.UseRequest(ctx, "", ev); err == nil {
		t.Errorf("empty id: no error")
	}
}
