package web

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
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

// TestVerifyWithHead: the whole recording is verified, and of it the page
// keeps whole lines up to the bound for the transcript.
func TestVerifyWithHead(t *testing.T) {
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
		name string
		max  int
		cut  bool
	}{{"ok/whole", len(b), false}, {"ok/cut", len(b) - 10, true}, {"ok/header-only", bytes.IndexByte(b, '\n') + 1, true}} {
		t.Run(tc.name, func(t *testing.T) {
			opts := recording.VerifyOptions{Key: e.sessionCA.PublicKey(), Index: &row}
			rep, head, cut, err := verifyWithHead(bytes.NewReader(b), opts, tc.max)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Intact() || rep.Bytes != int64(len(b)) {
				t.Errorf("verified %d of %d bytes, intact %v; want all, intact", rep.Bytes, len(b), rep.Intact())
			}
			if cut != tc.cut || len(head) > tc.max || !bytes.HasPrefix(b, head) || (len(head) > 0 && head[len(head)-1] != '\n') {
				t.Errorf("head of %d bytes (cut %v) with bound %d; want whole lines of the file, cut %v", len(head), cut, tc.max, tc.cut)
			}
			if _, _, _, err := replayText(context.Background(), bytes.NewReader(head)); err != nil {
				t.Errorf("replay of the head: %v", err)
			}
		})
	}
}
