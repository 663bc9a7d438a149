package web

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sallyport/sallyport/recording"
)

// TestRecordingPageShowsVerifiedBytes: the transcript is of the bytes the
// verdict is about, not of what the file holds by the time it would be
// read again; and a verdict that the recording is not intact is repeated
// under the transcript, which may be long.
func TestRecordingPageShowsVerifiedBytes(t *testing.T) {
	e := newAdminEnv(t)
	id := e.record(t, "github:1001", "alice")
	browser, _, _ := e.signIn(t, "alice")
	row, err := e.st.Recording(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(e.recDir, filepath.FromSlash(row.Path))
	rewrite := func(old, new string) {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, bytes.Replace(b, []byte(old), []byte(new), 1), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("ok/rewritten-after-check", func(t *testing.T) {
		rewritten := false
		afterRecordingCheck = func() {
			rewrite("hello", "HACKD")
			rewritten = true
		}
		t.Cleanup(func() { afterRecordingCheck = func() {} })
		status, page := get(t, browser, e.ts.URL+"/recordings/"+id)
		if !rewritten {
			t.Fatal("the file was not rewritten between the check and the replay")
		}
		if status != 200 {
			t.Fatalf("status %d", status)
		}
		contains(t, "page", page, "intact: ")
		contains(t, "page", page, "hello from alice")
		if strings.Contains(page, "HACKD") || strings.Contains(page, "Verification, again") {
			t.Errorf("page shows the rewritten file or a second verdict:\n%.3000s", page)
		}
	})
	t.Run("fail/not-intact-said-twice", func(t *testing.T) {
		// The file now holds HACKD: not intact.
		status, page := get(t, browser, e.ts.URL+"/recordings/"+id)
		if status != 200 {
			t.Fatalf("status %d", status)
		}
		contains(t, "page", page, "HACKD from alice")
		first := strings.Index(page, "NOT INTACT")
		again := strings.Index(page, "Verification, again: <strong class=\"error\">NOT INTACT")
		if first < 0 || again < 0 || again < strings.Index(page, "HACKD from alice") {
			t.Errorf("page does not give the verdict before and after the transcript:\n%.3000s", page)
		}
	})
}

// TestVerifyAndReplay: the whole recording is verified, and its
// transcript made in the same pass.
func TestVerifyAndReplay(t *testing.T) {
	e := newAdminEnv(t)
	id := e.record(t, "github:1001", "alice")
	row, err := e.st.Recording(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(e.recDir, filepath.FromSlash(row.Path)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		data   []byte
		intact bool
		want   string
		err    bool
	}{
		{"ok/whole", b, true, "hello from alice", false},
		{"fail/altered", bytes.Replace(b, []byte("hello"), []byte("HACKD"), 1), false, "HACKD from alice", false},
		{"fail/cut-short", b[:len(b)-10], false, "hello from alice", true},
		{"fail/empty", nil, false, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := recording.VerifyOptions{Key: e.sessionCA.PublicKey(), Index: &row}
			rep, tr, err := verifyAndReplay(context.Background(), bytes.NewReader(tc.data), opts)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Intact() != tc.intact || (tc.intact && rep.Bytes != int64(len(tc.data))) {
				t.Errorf("verified %d of %d bytes, intact %v; want intact %v", rep.Bytes, len(tc.data), rep.Intact(), tc.intact)
			}
			if !strings.Contains(tr.text, tc.want) || tr.trimmed || (tr.err != nil) != tc.err {
				t.Errorf("transcript %q (trimmed %v, replay error %v); want %q, an error %v", tr.text, tr.trimmed, tr.err, tc.want, tc.err)
			}
		})
	}
}

// recordLarge writes a finished recording of a pty session of alice with
// a line "FIRST LINE", then size bytes of text, then "LAST LINE".
func (re *recEnv) recordLarge(t *testing.T, size int) string {
	t.Helper()
	ctx := context.Background()
	rec, err := recording.New(recording.Options{Dir: re.recDir, Index: re.st, Signer: re.sessionCA})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := rec.Start(ctx, recording.Meta{Identity: "github:1001", User: "alice", Login: "root", Host: "web1", PTY: true})
	if err != nil {
		t.Fatal(err)
	}
	line := []byte(strings.Repeat("all work and no play makes jack a dull boy ", 3) + "\r\n")
	chunk := bytes.Repeat(line, (64<<10)/len(line))
	write := func(p []byte) {
		t.Helper()
		if _, err := sess.Stdout().Write(p); err != nil {
			t.Fatal(err)
		}
	}
	write([]byte("FIRST LINE\r\n"))
	for n := 0; n < size; n += len(chunk) {
		write(chunk)
	}
	write([]byte("LAST LINE\r\n"))
	if _, err := sess.Close(ctx, recording.End{ExitStatus: 0}); err != nil {
		t.Fatal(err)
	}
	return sess.ID()
}

// TestLargeRecordingPage: the page of a recording far longer than its
// transcript verifies all of it and shows its head, and keeps only the
// transcript while it does.
func TestLargeRecordingPage(t *testing.T) {
	e := newAdminEnv(t)
	id := e.recordLarge(t, 18<<20) // past what a page once kept of a file, 16 MiB
	row, err := e.st.Recording(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(e.recDir, filepath.FromSlash(row.Path)))
	if err != nil {
		t.Fatal(err)
	}
	browser, _, _ := e.signIn(t, "alice")

	var before, during runtime.MemStats
	afterRecordingCheck = func() {
		runtime.GC()
		runtime.ReadMemStats(&during)
	}
	t.Cleanup(func() { afterRecordingCheck = func() {} })
	runtime.GC()
	runtime.ReadMemStats(&before)
	status, page := get(t, browser, e.ts.URL+"/recordings/"+id)
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	contains(t, "page", page, "intact: ")
	contains(t, "page", page, fmt.Sprintf(" blocks, %d bytes, final digest ", fi.Size()))
	contains(t, "page", page, "FIRST LINE\nall work and no play")
	contains(t, "page", page, "<strong>cut off</strong> after 1 MiB of output")
	if strings.Contains(page, "LAST LINE") {
		t.Error("the page shows more than 1 MiB of output")
	}
	held := int64(during.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("the page held %.1f MiB once the %.1f MiB file was checked", float64(held)/(1<<20), float64(fi.Size())/(1<<20))
	if held > 4<<20 {
		t.Errorf("the page held %.1f MiB once the %.1f MiB file was checked; want its transcript only (1 MiB)",
			float64(held)/(1<<20), float64(fi.Size())/(1<<20))
	}
}
