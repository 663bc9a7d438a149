package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestRecordingsIndex(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	rows := []Recording{
		{ID: "r1", SessionID: "c1", Identity: "github:1", User: "alice", Login: "root", Host: "web1", PTY: true, Path: "2025/06/r1.cast", Start: t0, ExitStatus: -1, SignerFingerprint: "SHA256:x"},
		{ID: "r2", SessionID: "c1", Identity: "github:1", User: "alice", Login: "root", Host: "db1", Command: "uptime", Path: "2025/06/r2.cast", Start: t0.Add(time.Minute), ExitStatus: -1},
		{ID: "r3", Identity: "github:2", User: "bob", Login: "deploy", Host: "web1", Path: "2025/06/r3.cast", Start: t0.Add(2 * time.Minute), ExitStatus: -1},
	}
	for _, r := range rows {
		if err := s.AddRecording(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddRecording(ctx, rows[0]); err == nil {
		t.Error("duplicate ID accepted")
	}
	end := rows[0]
	end.End, end.BytesIn, end.BytesOut, end.ExitStatus, end.Digest, end.Signature, end.FileBytes = t0.Add(time.Hour), 10, 2000, 0, "abcd", "c2ln", 4096
	if err := s.FinishRecording(ctx, end); err != nil {
		t.Fatal(err)
	}
	got, err := s.Recording(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if !got.End.Equal(end.End) || !got.Start.Equal(end.Start) {
		t.Errorf("times %v %v; want %v %v", got.Start, got.End, end.Start, end.End)
	}
	got.Start, got.End = end.Start, end.End
	if got != end {
		t.Errorf("got %+v\nwant %+v", got, end)
	}
	if _, err := s.Recording(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Recording(nope): %v; want ErrNotFound", err)
	}
	if err := s.FinishRecording(ctx, Recording{ID: "nope", End: t0}); !errors.Is(err, ErrNotFound) {
		t.Errorf("FinishRecording(nope): %v; want ErrNotFound", err)
	}
	tests := []struct {
		name string
		f    RecordingFilter
		want []string
	}{
		{"ok/all-newest-first", RecordingFilter{}, []string{"r3", "r2", "r1"}},
		{"ok/by-login-name", RecordingFilter{User: "alice"}, []string{"r2", "r1"}},
		{"ok/by-identity", RecordingFilter{User: "github:2"}, []string{"r3"}},
		{"ok/by-host", RecordingFilter{Host: "web1"}, []string{"r3", "r1"}},
		{"ok/by-session", RecordingFilter{SessionID: "c1", Limit: 1}, []string{"r2"}},
		{"ok/since", RecordingFilter{Since: t0.Add(time.Minute)}, []string{"r3", "r2"}},
		{"ok/none", RecordingFilter{User: "mallory"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := s.Recordings(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, r := range recs {
				ids = append(ids, r.ID)
			}
			if len(ids) != len(tc.want) {
				t.Fatalf("got %v; want %v", ids, tc.want)
			}
			for i := range ids {
				if ids[i] != tc.want[i] {
					t.Fatalf("got %v; want %v", ids, tc.want)
				}
			}
		})
	}
	if _, err := s.Recordings(ctx, RecordingFilter{Limit: -1}); err == nil {
		t.Error("negative limit accepted")
	}
}

func TestInterruptRecordings(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	rows := []Recording{
		{ID: "done", Identity: "github:1", Login: "root", Host: "web1", Path: "a/done.cast", Start: t0, ExitStatus: -1},
		{ID: "cut", Identity: "github:1", Login: "root", Host: "web1", Path: "a/cut.cast", Start: t0.Add(time.Minute), ExitStatus: -1},
		{ID: "early", Identity: "github:2", Login: "deploy", Host: "db1", Path: "a/early.cast", Start: t0.Add(2 * time.Minute), ExitStatus: -1},
	}
	for _, r := range rows {
		if err := s.AddRecording(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	done := rows[0]
	done.End, done.Digest = t0.Add(10*time.Second), "abcd"
	if err := s.FinishRecording(ctx, done); err != nil {
		t.Fatal(err)
	}
	const why = "interrupted: the bastion stopped"
	ends := map[string]time.Time{"cut": t0.Add(5 * time.Minute), "early": t0} // before its start: clamped
	closed, err := s.InterruptRecordings(ctx, why, func(r Recording) time.Time { return ends[r.ID] })
	if err != nil {
		t.Fatal(err)
	}
	if len(closed) != 2 || closed[0].ID != "cut" || closed[1].ID != "early" {
		t.Fatalf("closed %+v; want cut and early", closed)
	}
	tests := []struct {
		id     string
		end    time.Time
		reason string
	}{
		{"done", done.End, ""},
		{"cut", t0.Add(5 * time.Minute), why},
		{"early", rows[2].Start, why},
	}
	for _, tc := range tests {
		got, err := s.Recording(ctx, tc.id)
		if err != nil {
			t.Fatal(err)
		}
		if !got.End.Equal(tc.end) || got.Reason != tc.reason || (tc.id == "done") != (got.Digest != "") {
			t.Errorf("%s: end %v reason %q digest %q; want end %v reason %q", tc.id, got.End, got.Reason, got.Digest, tc.end, tc.reason)
		}
	}
	if again, err := s.InterruptRecordings(ctx, why, func(Recording) time.Time { return t0 }); err != nil || len(again) != 0 {
		t.Errorf("second call closed %d rows (%v); want none", len(again), err)
	}
}
