package recording

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRecordingFileGone(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		remove func(t *testing.T, env *testEnv, s *Session)
	}{
		{"fail/folder-removed", func(t *testing.T, env *testEnv, s *Session) {
			if err := os.RemoveAll(filepath.Join(env.dir, "recordings")); err != nil {
				t.Fatal(err)
			}
		}},
		{"fail/file-removed", func(t *testing.T, env *testEnv, s *Session) {
			if err := os.Remove(s.Path()); err != nil {
				t.Fatal(err)
			}
		}},
		{"fail/file-replaced", func(t *testing.T, env *testEnv, s *Session) {
			if err := os.Remove(s.Path()); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(s.Path(), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		// Renamed, the open file keeps a name: only its path tells.
		{"fail/folder-renamed", func(t *testing.T, env *testEnv, s *Session) {
			dir := filepath.Join(env.dir, "recordings")
			if err := os.Rename(dir, dir+".old"); err != nil {
				t.Fatal(err)
			}
		}},
		{"fail/file-renamed-and-replaced", func(t *testing.T, env *testEnv, s *Session) {
			if err := os.Rename(s.Path(), s.Path()+".old"); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(s.Path(), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const interval = 20 * time.Millisecond
			env := newEnv(t, func(o *Options) { o.FlushInterval = interval })
			s, err := env.rec.Start(ctx, ptyMeta())
			if err != nil {
				t.Fatal(err)
			}
			mustWrite(t, s.Stdout(), "before\r\n")
			tc.remove(t, env, s)
			// The session goes on writing; within a flush interval or so
			// it must be told its recording is gone.
			deadline := time.After(2 * time.Second)
		writing:
			for {
				select {
				case <-s.Failed():
					break writing
				case <-deadline:
					t.Fatal("Failed not closed 2s after the recording file went away; the session goes on unrecorded")
				case <-time.After(interval / 4):
					if _, err := s.Stdout().Write([]byte("unrecorded?\r\n")); err != nil && !errors.Is(err, ErrFailed) {
						t.Fatalf("Write: %v", err)
					}
				}
			}
			if _, err := s.Stdout().Write([]byte("more")); !errors.Is(err, ErrFailed) || !errors.Is(err, errFileGone) {
				t.Errorf("Write after failure: %v; want ErrFailed wrapping errFileGone", err)
			}
			checkClosedFailed(t, env, s)
		})
	}
}

// TestRecordingFileGoneBeforeClose removes the folder after the last timed
// flush: Close itself must notice before it calls the recording complete.
func TestRecordingFileGoneBeforeClose(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.FlushInterval = time.Second })
	s, err := env.rec.Start(context.Background(), ptyMeta())
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s.Stdout(), "output\r\n")
	if err := os.RemoveAll(filepath.Join(env.dir, "recordings")); err != nil {
		t.Fatal(err)
	}
	checkClosedFailed(t, env, s)
}

// checkClosedFailed closes s and checks that Close and the index row report
// the recording as failed because its file went away.
func checkClosedFailed(t *testing.T, env *testEnv, s *Session) {
	t.Helper()
	ctx := context.Background()
	sum, err := s.Close(ctx, End{ExitStatus: 0})
	if !errors.Is(err, ErrFailed) || !errors.Is(err, errFileGone) {
		t.Errorf("Close: %v; want ErrFailed wrapping errFileGone", err)
	}
	if sum.Complete || sum.Failure == "" {
		t.Errorf("summary complete %v, failure %q; want incomplete with a reason", sum.Complete, sum.Failure)
	}
	row, err := env.st.Recording(ctx, s.ID())
	if err != nil {
		t.Fatal(err)
	}
	if row.End.IsZero() || !strings.Contains(row.Reason, errFileGone.Error()) || row.Digest != "" || row.Signature != "" {
		t.Errorf("index row end %v, reason %q, digest %q; want ended, reason naming the failure, no digest", row.End, row.Reason, row.Digest)
	}
}

func TestQuietTailSigned(t *testing.T) {
	const (
		flushEvery = 20 * time.Millisecond
		signEvery  = 500 * time.Millisecond
	)
	env := newEnv(t, func(o *Options) {
		o.Now = time.Now
		o.FlushInterval = flushEvery
		o.SignInterval = signEvery
	})
	ctx := context.Background()
	s, err := env.rec.Start(ctx, ptyMeta())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx, End{ExitStatus: 0})
	// Start has just signed the header: this output is flushed in a block
	// of its own, too soon to be signed, and nothing follows it.
	mustWrite(t, s.Stdout(), "last words\r\n")
	written := time.Now()
	key := env.signer.PublicKey()
	var rep *Report
	for {
		rep = verifyFile(t, s.Path(), VerifyOptions{Key: key})
		if rep.Blocks >= 2 {
			break
		}
		if time.Since(written) > time.Second {
			t.Fatalf("output not chained within a second: %+v", rep)
		}
		time.Sleep(flushEvery / 4)
	}
	if rep.SignedBlocks >= rep.Blocks {
		t.Fatalf("output signed %v after the header's signature, before SignInterval %v; the test needs it unsigned at first", time.Since(written), signEvery)
	}
	// A crash after the sign interval and a flush must lose nothing
	// unauthenticated: every block on disk is covered by a signature.
	deadline := written.Add(signEvery + 2*time.Second)
	for {
		rep = verifyFile(t, s.Path(), VerifyOptions{Key: key})
		if rep.Blocks >= 2 && rep.SignedBlocks == rep.Blocks {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v after the last output: %d blocks, signed up to %d; want all signed", time.Since(written), rep.Blocks, rep.SignedBlocks)
		}
		time.Sleep(flushEvery)
	}
	if rep.Problem == nil || !strings.Contains(rep.Problem.Reason, "no final record") {
		t.Errorf("mid-session verify: %v; want only the final record missing", rep.Problem)
	}
	if _, err := s.Close(ctx, End{ExitStatus: 0}); err != nil {
		t.Fatal(err)
	}
	if rep := verifyFile(t, s.Path(), VerifyOptions{Key: key}); !rep.Intact() || !rep.Signed || rep.SignedBlocks != rep.Blocks {
		t.Errorf("closed recording: %+v %v; want intact and signed", rep, rep.Problem)
	}
}
