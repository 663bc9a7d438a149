package bastion

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sallyport/sallyport/recording"
)

// TestRecordingCannotStart: a session whose recording cannot be started is
// refused, and the refusal audited.
func TestRecordingCannotStart(t *testing.T) {
	e := newEnv(t, envOptions{configure: func(s *Server) {
		blocker := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(blocker, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := recording.New(recording.Options{Dir: filepath.Join(blocker, "recordings"), Index: s.Store.(recording.Index), Signer: s.HostKey})
		if err != nil {
			t.Fatal(err)
		}
		s.Recorder = NewRecorder(r)
	}})
	c := e.client(e.issue(certOptions{}))
	r := c.ssh(nil, c.direct(e.login, "web1"), "echo should-not-run")
	if r.code == 0 || strings.Contains(r.stdout, "should-not-run") || !strings.Contains(r.stderr, "cannot be recorded") {
		t.Fatalf("got code %d stdout %q stderr %q; want refused", r.code, r.stdout, r.stderr)
	}
	if d := e.lastDeny(); !strings.Contains(d, "recording could not be started") {
		t.Fatalf("last deny %q", d)
	}
}

// failingRecorder hands out recordings whose Failed channel the test
// closes, as the recorder does on a write or fsync error.
type failingRecorder struct {
	Recorder
	failed chan struct{}
}

type failingRecording struct {
	Recording
	failed chan struct{}
}

func (r failingRecording) Failed() <-chan struct{} { return r.failed }

func (f *failingRecorder) Start(ctx context.Context, m recording.Meta) (Recording, error) {
	rec, err := f.Recorder.Start(ctx, m)
	if err != nil {
		return nil, err
	}
	return failingRecording{rec, f.failed}, nil
}

// TestRecordingFailsMidSession: a session whose recording fails while it
// runs is ended with a message.
func TestRecordingFailsMidSession(t *testing.T) {
	fr := &failingRecorder{failed: make(chan struct{})}
	e := newEnv(t, envOptions{configure: func(s *Server) {
		fr.Recorder = s.Recorder
		s.Recorder = fr
	}})
	c := e.client(e.issue(certOptions{}))
	_, stderr, done := liveSession(t, c, c.direct(e.login, "web1"))
	close(fr.failed)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("session still running after its recording failed")
	}
	if !strings.Contains(stderr.String(), "can no longer be recorded") {
		t.Fatalf("stderr %q", stderr.String())
	}
}
