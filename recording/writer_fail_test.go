package recording

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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

// hangingFile stands for a disk that stops answering: once hang is set,
// Write and Sync block until gate is closed.
type hangingFile struct {
	f       *os.File
	hang    atomic.Bool
	once    sync.Once
	entered chan struct{} // closed when the first call blocks
	gate    chan struct{}
}

func newHangingFile(t *testing.T, s *Session) *hangingFile {
	t.Helper()
	hf := &hangingFile{f: s.f.(*os.File), entered: make(chan struct{}), gate: make(chan struct{})}
	// Set before the first write, whose lock orders it before the
	// writer's first use of s.f.
	s.f = hf
	t.Cleanup(func() {
		// The disk comes back: the writer finishes and closes the file.
		close(hf.gate)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			t.Error("the writer did not end once the disk answered again")
		}
	})
	return hf
}

func (hf *hangingFile) block() {
	if hf.hang.Load() {
		hf.once.Do(func() { close(hf.entered) })
		<-hf.gate
	}
}

func (hf *hangingFile) Write(p []byte) (int, error) { hf.block(); return hf.f.Write(p) }
func (hf *hangingFile) Sync() error                 { hf.block(); return hf.f.Sync() }
func (hf *hangingFile) Close() error                { return hf.f.Close() }

// TestHungDisk: a recording whose disk stops answering fails within
// FlushTimeout, so that the bastion ends the session; meanwhile a bulk
// channel does not run on unrecorded, and Close returns and records the
// failure in the index instead of waiting for the disk for ever.
func TestHungDisk(t *testing.T) {
	const (
		interval = 20 * time.Millisecond
		timeout  = time.Second
	)
	binary := bytes.Repeat([]byte{0, 1, 2, 0xff}, 8<<10)
	tests := []struct {
		name string
		meta Meta
		// relay has the session write until a write fails; false means
		// it writes a little, the disk hangs and the session closes.
		relay bool
	}{
		{"fail/bulk-stream", bulkMeta(), true},
		{"fail/pty-stream", ptyMeta(), true},
		{"fail/hung-at-close", bulkMeta(), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			env := newEnv(t, func(o *Options) { o.Now = time.Now; o.FlushInterval = interval; o.FlushTimeout = timeout })
			s, err := env.rec.Start(ctx, tc.meta)
			if err != nil {
				t.Fatal(err)
			}
			hf := newHangingFile(t, s)
			if tc.relay {
				var accepted atomic.Int64
				relayErr := make(chan error, 1)
				go func() {
					for {
						if _, err := s.Stdout().Write(binary); err != nil {
							relayErr <- err
							return
						}
						accepted.Add(int64(len(binary)))
					}
				}()
				// Let some data through, then the disk hangs.
				time.Sleep(3 * interval)
				hf.hang.Store(true)
				select {
				case <-hf.entered:
				case <-time.After(5 * time.Second):
					t.Fatal("no write reached the disk")
				}
				// Within a flush interval or so of the hang the relay must
				// stop: nothing it passes now reaches the disk.
				deadline := time.Now().Add(timeout * 3 / 4)
				for last, since := accepted.Load(), time.Now(); time.Since(since) < 10*interval; {
					if time.Now().After(deadline) {
						t.Fatalf("the relay went on while the disk hung: %d MiB accepted so far", accepted.Load()>>20)
					}
					time.Sleep(interval)
					if n := accepted.Load(); n != last {
						last, since = n, time.Now()
					}
				}
				select {
				case <-s.Failed():
				case <-time.After(timeout + 5*time.Second):
					t.Fatalf("Failed not closed %v after the disk hung", timeout+5*time.Second)
				}
				select {
				case err := <-relayErr:
					if !errors.Is(err, ErrFailed) || !errors.Is(err, errStalled) {
						t.Errorf("the relay's write: %v; want ErrFailed wrapping errStalled", err)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("the relay's write still waits after the recording failed")
				}
			} else {
				mustWrite(t, s.Stdout(), "last words\n")
				hf.hang.Store(true)
			}
			type result struct {
				sum Summary
				err error
			}
			closed := make(chan result, 1)
			go func() {
				sum, err := s.Close(ctx, End{ExitStatus: -1, Reason: "the session can no longer be recorded"})
				closed <- result{sum, err}
			}()
			var r result
			select {
			case r = <-closed:
			case <-time.After(timeout + 5*time.Second):
				t.Fatalf("Close still waits for the disk %v later", timeout+5*time.Second)
			}
			if !errors.Is(r.err, ErrFailed) || !errors.Is(r.err, errStalled) {
				t.Errorf("Close: %v; want ErrFailed wrapping errStalled", r.err)
			}
			if r.sum.Complete || !strings.Contains(r.sum.Failure, errStalled.Error()) {
				t.Errorf("summary complete %v, failure %q; want incomplete, naming the stall", r.sum.Complete, r.sum.Failure)
			}
			row, err := env.st.Recording(ctx, s.ID())
			if err != nil {
				t.Fatal(err)
			}
			if row.End.IsZero() || !strings.Contains(row.Reason, errStalled.Error()) || row.Digest != "" {
				t.Errorf("index row end %v, reason %q, digest %q; want ended, reason naming the stall, no digest", row.End, row.Reason, row.Digest)
			}
		})
	}
}

// slowFile stands for a disk that answers, slowly: every Sync takes delay.
type slowFile struct {
	*os.File
	delay time.Duration
}

func (sf slowFile) Sync() error { time.Sleep(sf.delay); return sf.File.Sync() }

// TestSlowDiskKeepsRecording: a disk whose fsyncs take many flush intervals
// but well under FlushTimeout (a backup running, a throttled volume) fails
// no recording, and output without a pty is not held back by it.
func TestSlowDiskKeepsRecording(t *testing.T) {
	const (
		interval = 20 * time.Millisecond
		timeout  = 2 * time.Second
		delay    = 10 * interval // under a quarter of timeout
	)
	for _, tc := range []struct {
		name string
		meta Meta
	}{
		{"ok/bulk-stream", bulkMeta()},
		{"ok/pty-stream", ptyMeta()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			env := newEnv(t, func(o *Options) { o.Now = time.Now; o.FlushInterval = interval; o.FlushTimeout = timeout })
			s, err := env.rec.Start(ctx, tc.meta)
			if err != nil {
				t.Fatal(err)
			}
			s.f = slowFile{File: s.f.(*os.File), delay: delay}
			chunk := bytes.Repeat([]byte("slow disk\n"), 100)
			var longest time.Duration
			for end := time.Now().Add(5 * delay); time.Now().Before(end); {
				start := time.Now()
				if _, err := s.Stdout().Write(chunk); err != nil {
					t.Fatalf("write on a slow disk: %v", err)
				}
				longest = max(longest, time.Since(start))
				time.Sleep(time.Millisecond)
			}
			select {
			case <-s.Failed():
				t.Fatalf("the recording failed on a disk that answers: %v", s.Err())
			default:
			}
			if !tc.meta.PTY && longest >= delay/2 {
				t.Errorf("a write without a pty waited %v for a slow fsync", longest)
			}
			sum, err := s.Close(ctx, End{ExitStatus: 0})
			if err != nil || !sum.Complete {
				t.Fatalf("Close: %+v, %v; want complete", sum, err)
			}
		})
	}
}
