package recording

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/store"
)

var t0 = time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)

// stepClock advances by step on every reading, so event times are
// deterministic.
type stepClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

// seededRand is a deterministic io.Reader for IDs (ed25519 signatures do
// not use randomness).
type seededRand struct{ r *rand.ChaCha8 }

func (s seededRand) Read(p []byte) (int, error) { return s.r.Read(p) }

func testSigner(t testing.TB) ssh.Signer {
	t.Helper()
	seed := sha256.Sum256([]byte("sallyport test session CA"))
	s, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type testEnv struct {
	rec    *Recorder
	st     *store.SQLite
	dir    string
	signer ssh.Signer
}

func newEnv(t testing.TB, mod func(*Options)) *testEnv {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(context.Background(), filepath.Join(dir, "sallyport.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	signer := testSigner(t)
	opts := Options{
		Dir:    filepath.Join(dir, "recordings"),
		Index:  st,
		Signer: signer,
		Now:    (&stepClock{t: t0, step: 50 * time.Millisecond}).Now,
		Rand:   seededRand{rand.NewChaCha8([32]byte{1})},
	}
	if mod != nil {
		mod(&opts)
	}
	rec, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return &testEnv{rec: rec, st: st, dir: dir, signer: signer}
}

func ptyMeta() Meta {
	return Meta{SessionID: "conn-1", Identity: "github:12345", User: "alice", Login: "root", Host: "web1",
		PTY: true, Width: 100, Height: 30, Term: "xterm-256color", Shell: "/bin/bash"}
}

func mustWrite(t testing.TB, w io.Writer, s string) {
	t.Helper()
	if _, err := w.Write([]byte(s)); err != nil {
		t.Fatalf("write %q: %v", s, err)
	}
}

// outputOf returns the bytes of the "o" events of a recording.
func outputOf(t testing.TB, path string) ([]byte, *Reader) {
	t.Helper()
	return readEvents(t, path, "o")
}

// openCast opens the recording at path, closed when the test ends.
func openCast(t testing.TB, path string) *Reader {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	rd, err := NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	return rd
}

// readEvents returns the bytes of the events of type typ of a recording,
// and the reader, at its end.
func readEvents(t testing.TB, path, typ string) ([]byte, *Reader) {
	t.Helper()
	rd := openCast(t, path)
	var out []byte
	for {
		e, err := rd.Next()
		if err == io.EOF {
			return out, rd
		}
		if err != nil {
			t.Fatal(err)
		}
		if e.Type == typ {
			out = append(out, DecodeBytes(e.Data)...)
		}
	}
}

func verifyFile(t testing.TB, path string, opts VerifyOptions) *Report {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := Verify(f, opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestPTYRecordedInFull(t *testing.T) {
	env := newEnv(t, nil)
	ctx := context.Background()
	s, err := env.rec.Start(ctx, ptyMeta())
	if err != nil {
		t.Fatal(err)
	}
	parts := []string{
		"$ ", "echo héllo\r\n", "h\xc3", "\xa9llo\r\n", // a rune split between writes
		"bad \xff\xfe bytes\r\n", "\x1b[1;31mred\x1b[0m\r\n", "\U0010FE41 pua\r\n", "quote \" back \\ tab\t\r\n",
		"\x00\x07\x7f\u2028 end\r\n",
	}
	var want []byte
	for _, p := range parts {
		mustWrite(t, s.Stdout(), p)
		want = append(want, p...)
	}
	mustWrite(t, s.Stdin(), "secret typed\r")
	if err := s.Resize(120, 40); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s.Stderr(), "err\r\n")
	want = append(want, "err\r\n"...)
	mustWrite(t, s.Stdout(), "cut \xe2\x82") // incomplete at the very end
	want = append(want, "cut \xe2\x82"...)
	sum, err := s.Close(ctx, End{ExitStatus: 0})
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Complete || sum.Failure != "" {
		t.Fatalf("summary %+v: want complete", sum)
	}
	if sum.Stdin.Bytes != int64(len("secret typed\r")) || sum.Stdin.Kept != 0 {
		t.Errorf("stdin %+v: want counted, not kept", sum.Stdin)
	}
	got, rd := outputOf(t, s.Path())
	if !bytes.Equal(got, want) {
		t.Errorf("output\n got %q\nwant %q", got, want)
	}
	data, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("secret")) {
		t.Errorf("input recorded without RecordInput")
	}
	if !bytes.Contains(data, []byte(`"r", "120x40"`)) {
		t.Errorf("no resize event in\n%s", data)
	}
	h := rd.Header
	if h.Width != 100 || h.Height != 30 || h.Env["TERM"] != "xterm-256color" || h.Title != "alice (github:12345) as root@web1" {
		t.Errorf("header %+v", h)
	}
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
	}
	if want := filepath.Join(env.dir, "recordings", "2025", "06", s.ID()+".cast"); s.Path() != want {
		t.Errorf("path %s, want %s", s.Path(), want)
	}
	row, err := env.st.Recording(ctx, s.ID())
	if err != nil {
		t.Fatal(err)
	}
	if row.Digest == "" || row.Digest != sum.Digest || row.Signature == "" || row.End.IsZero() || row.ExitStatus != 0 ||
		row.BytesOut != sum.Stdout.Bytes+sum.Stderr.Bytes || row.BytesIn != sum.Stdin.Bytes || row.User != "alice" {
		t.Errorf("index row %+v\nsummary %+v", row, sum)
	}
	rep := verifyFile(t, s.Path(), VerifyOptions{Key: env.signer.PublicKey(), Digest: row.Digest, ID: row.ID})
	if !rep.Intact() || !rep.Final || !rep.Signed {
		t.Fatalf("verify: %+v problem %v", rep, rep.Problem)
	}
}

func TestInputRecordedWhenAsked(t *testing.T) {
	env := newEnv(t, nil)
	m := ptyMeta()
	m.RecordInput = true
	s, err := env.rec.Start(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s.Stdin(), "typed\r")
	if _, err := s.Close(context.Background(), End{ExitStatus: -1}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(s.Path())
	if !bytes.Contains(data, []byte(`"i", "typed\r"`)) {
		t.Errorf("input not recorded:\n%s", data)
	}
}

func TestTextEncodingRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"ok/ascii", "hello\r\n"},
		{"ok/controls", "\x00\x01\x1b[0m\x7f\"\\"},
		{"ok/utf8", "héllo wörld ✓ 𝄞"},
		{"ok/invalid", "\xff\xfe\x80\xc3("},
		{"ok/escape-range", "\U0010FE00\U0010FEFF\U0010FE41"},
		{"ok/truncated-rune", "ab\xe2\x82"},
		{"ok/overlong", "\xc0\xaf\xed\xa0\x80"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			enc := EncodeBytes([]byte(tc.in))
			if got := DecodeBytes(enc); string(got) != tc.in {
				t.Errorf("round trip of %q: got %q via %q", tc.in, got, enc)
			}
			// Fed in every split of two writes, the result is the same.
			for i := 0; i <= len(tc.in); i++ {
				b, carry := appendText(nil, nil, []byte(tc.in[:i]), false)
				b, carry = appendText(b, carry, []byte(tc.in[i:]), true)
				if carry != nil {
					t.Fatalf("split %d: carry %q after final", i, carry)
				}
				if got := unescapeJSON(b); got != enc {
					t.Errorf("split %d: got %q, want %q", i, got, enc)
				}
			}
		})
	}
}

func TestBulkChannelBounded(t *testing.T) {
	env := newEnv(t, nil)
	ctx := context.Background()
	m := Meta{Identity: "github:12345", User: "alice", Login: "deploy", Host: "web1", Command: "cat /dev/urandom | head -c 10M"}
	s, err := env.rec.Start(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.NewChaCha8([32]byte{7})
	out := make([]byte, 10<<20)
	rnd.Read(out)
	in := []byte("upload bytes")
	hOut := sha256.Sum256(out)
	for p := out; len(p) > 0; {
		n := min(len(p), 32<<10)
		mustWrite(t, s.Stdout(), string(p[:n]))
		p = p[n:]
	}
	mustWrite(t, s.Stdin(), string(in))
	mustWrite(t, s.Stderr(), "warning\n")
	sum, err := s.Close(ctx, End{ExitStatus: 3})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Stdout.Bytes != int64(len(out)) || sum.Stdout.Kept != DefaultBulkHead || sum.Stdout.SHA256 != hex.EncodeToString(hOut[:]) {
		t.Errorf("stdout %+v", sum.Stdout)
	}
	// Input is counted, neither kept nor hashed: RecordInput is off.
	if sum.Stdin.Bytes != int64(len(in)) || sum.Stdin.Kept != 0 || sum.Stdin.SHA256 != "" {
		t.Errorf("stdin %+v", sum.Stdin)
	}
	if data, _ := os.ReadFile(s.Path()); bytes.Contains(data, in) {
		t.Errorf("input recorded without RecordInput")
	}
	got, _ := outputOf(t, s.Path())
	want := append(append([]byte{}, out[:DefaultBulkHead]...), "warning\n"...)
	if !bytes.Equal(got, want) {
		t.Errorf("kept output differs from the first %d bytes (+stderr): got %d bytes", DefaultBulkHead, len(got))
	}
	fi, _ := os.Stat(s.Path())
	if fi.Size() > 1<<20 {
		t.Errorf("file is %d bytes for a bulk channel; want bounded", fi.Size())
	}
	row, err := env.st.Recording(ctx, s.ID())
	if err != nil {
		t.Fatal(err)
	}
	if row.StdoutSHA256 != sum.Stdout.SHA256 || row.ExitStatus != 3 || row.PTY || row.Command != m.Command {
		t.Errorf("index row %+v", row)
	}
	rep := verifyFile(t, s.Path(), VerifyOptions{Key: env.signer.PublicKey(), Digest: row.Digest})
	if !rep.Intact() {
		t.Fatalf("verify: %v", rep.Problem)
	}
	var notes bytes.Buffer
	f, _ := os.Open(s.Path())
	defer f.Close()
	rd, err := NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := Play(ctx, io.Discard, rd, PlayOptions{Speed: 1000, Notes: &notes, Sleep: func(context.Context, time.Duration) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(notes.String(), "stdout: 10485760 bytes, 65536 kept, sha256 "+sum.Stdout.SHA256) ||
		!strings.Contains(notes.String(), "exit status 3") {
		t.Errorf("play notes:\n%s", notes.String())
	}
}

func bulkMeta() Meta {
	return Meta{Identity: "github:1", Login: "root", Host: "web1", Command: "rsync --server", RecordInput: true}
}

// writeAll writes data to w in pieces of the given sizes, cycling through
// them, and returns what it wrote.
func writeAll(t testing.TB, w io.Writer, data []byte, sizes []int) []byte {
	t.Helper()
	for i, p := 0, data; len(p) > 0; i++ {
		n := min(len(p), sizes[i%len(sizes)])
		if _, err := w.Write(p[:n]); err != nil {
			t.Errorf("write of %d bytes: %v", n, err)
			return nil
		}
		p = p[n:]
	}
	return data
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func TestBulkSHA256(t *testing.T) {
	rnd := rand.NewChaCha8([32]byte{3})
	random := func(n int) []byte {
		b := make([]byte, n)
		rnd.Read(b)
		return b
	}
	type streams struct{ out, errs, in []byte }
	tests := []struct {
		name       string
		data       streams
		sizes      []int
		concurrent bool // one goroutine per stream
	}{
		{"ok/one-byte", streams{out: random(1)}, []int{1}, false},
		{"ok/32KiB", streams{out: random(32 << 10)}, []int{32 << 10}, false},
		{"ok/100KiB-in-one-write", streams{out: random(100 << 10), in: random(100 << 10)}, []int{100 << 10}, false},
		{"ok/many-small", streams{out: random(50 << 10), errs: random(3000)}, []int{1, 7, 100, 3}, false},
		{"ok/assorted", streams{out: random(1 << 20)}, []int{1, 32 << 10, 100 << 10, 5, 32<<10 + 1, 64 << 10}, false},
		{"ok/concurrent-streams", streams{out: random(2 << 20), errs: random(300 << 10), in: random(1 << 20)},
			[]int{1, 32 << 10, 100 << 10, 17, 4096, 32<<10 - 1}, true},
		{"ok/empty", streams{}, []int{1}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, nil)
			s, err := env.rec.Start(context.Background(), bulkMeta())
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for _, w := range []struct {
				w    io.Writer
				data []byte
			}{{s.Stdout(), tc.data.out}, {s.Stderr(), tc.data.errs}, {s.Stdin(), tc.data.in}} {
				if !tc.concurrent {
					writeAll(t, w.w, w.data, tc.sizes)
					continue
				}
				wg.Go(func() { writeAll(t, w.w, w.data, tc.sizes) })
			}
			wg.Wait()
			sum, err := s.Close(context.Background(), End{ExitStatus: 0})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				name string
				got  StreamSummary
				data []byte
			}{{"stdout", sum.Stdout, tc.data.out}, {"stderr", sum.Stderr, tc.data.errs}, {"stdin", sum.Stdin, tc.data.in}} {
				if want := sha256Hex(c.data); c.got.SHA256 != want || c.got.Bytes != int64(len(c.data)) {
					t.Errorf("%s: got %d bytes, sha256 %s; want %d, %s", c.name, c.got.Bytes, c.got.SHA256, len(c.data), want)
				}
			}
			row, err := env.st.Recording(context.Background(), s.ID())
			if err != nil {
				t.Fatal(err)
			}
			if row.StdoutSHA256 != sum.Stdout.SHA256 || row.StdinSHA256 != sum.Stdin.SHA256 {
				t.Errorf("index row sha256 %s, %s; want %s, %s", row.StdoutSHA256, row.StdinSHA256, sum.Stdout.SHA256, sum.Stdin.SHA256)
			}
		})
	}
}

// hasherEnded reports whether the session's hasher, if it started, has
// returned.
func hasherEnded(s *Session) bool {
	s.mu.Lock()
	h := s.hasher
	s.mu.Unlock()
	if h == nil {
		return true
	}
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

func TestBulkHasherEnds(t *testing.T) {
	ctx := context.Background()
	env := newEnv(t, func(o *Options) { o.FlushInterval = 10 * time.Millisecond })
	before := runtime.NumGoroutine()
	chunk := make([]byte, 32<<10)

	t.Run("ok/pty-starts-none", func(t *testing.T) {
		s, err := env.rec.Start(ctx, ptyMeta())
		if err != nil {
			t.Fatal(err)
		}
		mustWrite(t, s.Stdout(), "$ ls\r\n")
		if s.hasher != nil {
			t.Error("a pty session started a hasher")
		}
		if _, err := s.Close(ctx, End{ExitStatus: 0}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ok/closed", func(t *testing.T) {
		s, err := env.rec.Start(ctx, bulkMeta())
		if err != nil {
			t.Fatal(err)
		}
		if s.hasher != nil {
			t.Error("hasher started before the first write")
		}
		for range 50 {
			if _, err := s.Stdout().Write(chunk); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Close(ctx, End{ExitStatus: 0}); err != nil {
			t.Fatal(err)
		}
		if !hasherEnded(s) {
			t.Error("hasher still running after Close")
		}
		if _, err := s.Stdout().Write(chunk); !errors.Is(err, errClosed) {
			t.Errorf("Write after Close: %v; want %v", err, errClosed)
		}
	})
	t.Run("fail/disk-full", func(t *testing.T) {
		s, err := env.rec.Start(ctx, bulkMeta())
		if err != nil {
			t.Fatal(err)
		}
		s.f = &failingFile{f: s.f.(*os.File), left: 100}
		if _, err := s.Stdout().Write(chunk); err != nil {
			t.Fatal(err)
		}
		select {
		case <-s.Failed():
		case <-time.After(5 * time.Second):
			t.Fatal("Failed not closed after the disk filled")
		}
		if !hasherEnded(s) {
			t.Error("hasher still running after the recording failed")
		}
		if _, err := s.Stdout().Write(chunk); !errors.Is(err, ErrFailed) {
			t.Errorf("Write after failure: %v; want ErrFailed", err)
		}
		sum, err := s.Close(ctx, End{ExitStatus: -1, Reason: "recording failed"})
		if !errors.Is(err, ErrFailed) {
			t.Errorf("Close: %v; want ErrFailed", err)
		}
		if want := sha256Hex(chunk); sum.Stdout.SHA256 != want || sum.Stdout.Bytes != int64(len(chunk)) {
			t.Errorf("stdout %+v; want the one accepted write, sha256 %s", sum.Stdout, want)
		}
	})
	t.Run("ok/writes-racing-close", func(t *testing.T) {
		// The bastion may close while a copier still writes: every write
		// is either counted and hashed, or refused.
		s, err := env.rec.Start(ctx, bulkMeta())
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var accepted [numStreams][]byte
		for i, w := range []io.Writer{s.Stdout(), s.Stderr(), s.Stdin()} {
			wg.Go(func() {
				for n := 1; ; n = n*7%(100<<10) + 1 {
					p := bytes.Repeat([]byte{byte(n)}, n)
					if _, err := w.Write(p); err != nil {
						if !errors.Is(err, errClosed) {
							t.Errorf("Write during Close: %v; want %v", err, errClosed)
						}
						return
					}
					accepted[i] = append(accepted[i], p...)
				}
			})
		}
		time.Sleep(20 * time.Millisecond)
		sum, err := s.Close(ctx, End{ExitStatus: -1, Reason: "ended by the bastion"})
		if err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		for i, got := range []StreamSummary{sum.Stdout, sum.Stderr, sum.Stdin} {
			if want := sha256Hex(accepted[i]); got.SHA256 != want || got.Bytes != int64(len(accepted[i])) {
				t.Errorf("stream %d: got %d bytes, sha256 %s; want %d, %s", i, got.Bytes, got.SHA256, len(accepted[i]), want)
			}
		}
	})

	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before the sessions:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBulkQuietSessionHashed(t *testing.T) {
	// Chunks wait for more before the hasher is woken, but not past a
	// flush interval: a quiet session holds no pooled memory.
	env := newEnv(t, func(o *Options) { o.FlushInterval = 10 * time.Millisecond })
	s, err := env.rec.Start(context.Background(), bulkMeta())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background(), End{ExitStatus: 0})
	// The first write starts the hasher, which may find it queued; the
	// second finds it idle.
	for _, p := range []string{"a few bytes", "a few more"} {
		mustWrite(t, s.Stdout(), p)
		deadline := time.Now().Add(5 * time.Second)
		for {
			s.hasher.mu.Lock()
			n, idle := s.hasher.n, s.hasher.idle
			s.hasher.mu.Unlock()
			if n == 0 && idle {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after writing %q: %d chunks still queued after 5s", p, n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// failingFile fails every write and sync after the first n bytes, like a
// full disk.
type failingFile struct {
	f    *os.File
	left int
}

var errDiskFull = errors.New("no space left on device")

func (ff *failingFile) Write(p []byte) (int, error) {
	if len(p) > ff.left {
		return 0, errDiskFull
	}
	ff.left -= len(p)
	return ff.f.Write(p)
}
func (ff *failingFile) Sync() error  { return ff.f.Sync() }
func (ff *failingFile) Close() error { return ff.f.Close() }

func TestFailureRule(t *testing.T) {
	ctx := context.Background()
	t.Run("fail/start-folder-is-a-file", func(t *testing.T) {
		env := newEnv(t, nil)
		blocker := filepath.Join(env.dir, "file")
		os.WriteFile(blocker, nil, 0o600)
		rec, err := New(Options{Dir: filepath.Join(blocker, "recordings"), Index: env.st, Signer: env.signer})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rec.Start(ctx, ptyMeta()); err == nil {
			t.Fatal("Start succeeded without a writable folder; the session must be refused")
		}
	})
	t.Run("fail/start-index-down", func(t *testing.T) {
		env := newEnv(t, nil)
		env.st.Close()
		if _, err := env.rec.Start(ctx, ptyMeta()); err == nil {
			t.Fatal("Start succeeded without an index; the session must be refused")
		}
		files, _ := filepath.Glob(filepath.Join(env.dir, "recordings", "*", "*", "*.cast"))
		if len(files) != 0 {
			t.Errorf("left %v behind", files)
		}
	})
	t.Run("fail/disk-full-mid-session", func(t *testing.T) {
		env := newEnv(t, func(o *Options) { o.FlushInterval = 10 * time.Millisecond })
		s, err := env.rec.Start(ctx, ptyMeta())
		if err != nil {
			t.Fatal(err)
		}
		s.f = &failingFile{f: s.f.(*os.File), left: 100}
		mustWrite(t, s.Stdout(), strings.Repeat("x", 500))
		select {
		case <-s.Failed():
		case <-time.After(5 * time.Second):
			t.Fatal("Failed not closed after the disk filled")
		}
		if _, err := s.Stdout().Write([]byte("more")); !errors.Is(err, ErrFailed) || !errors.Is(err, errDiskFull) {
			t.Errorf("Write after failure: %v, want ErrFailed wrapping the disk error", err)
		}
		if !errors.Is(s.Err(), ErrFailed) {
			t.Errorf("Err() = %v", s.Err())
		}
		sum, err := s.Close(ctx, End{ExitStatus: -1, Reason: "recording failed"})
		if !errors.Is(err, ErrFailed) || sum.Complete {
			t.Errorf("Close: %v, complete %v; want ErrFailed, incomplete", err, sum.Complete)
		}
		row, err := env.st.Recording(ctx, s.ID())
		if err != nil {
			t.Fatal(err)
		}
		if row.End.IsZero() || !strings.Contains(row.Reason, "no space left") || row.Digest != "" {
			t.Errorf("index row %+v: want ended, reason naming the failure, no digest", row)
		}
	})
	t.Run("ok/backpressure-bounds-memory", func(t *testing.T) {
		env := newEnv(t, func(o *Options) { o.FlushSize = 1024; o.MaxPending = 4096 })
		s, err := env.rec.Start(ctx, ptyMeta())
		if err != nil {
			t.Fatal(err)
		}
		for range 1000 {
			mustWrite(t, s.Stdout(), strings.Repeat("y", 1000))
			s.mu.Lock()
			n := len(s.pend)
			s.mu.Unlock()
			if n > 4096+1000 {
				t.Fatalf("pending %d bytes, above MaxPending", n)
			}
		}
		if _, err := s.Close(ctx, End{ExitStatus: 0}); err != nil {
			t.Fatal(err)
		}
		got, _ := outputOf(t, s.Path())
		if len(got) != 1000*1000 {
			t.Errorf("recorded %d bytes, want %d", len(got), 1000*1000)
		}
	})
}

func TestFlushedWithinInterval(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.Now = time.Now; o.FlushInterval = 100 * time.Millisecond })
	s, err := env.rec.Start(context.Background(), ptyMeta())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background(), End{ExitStatus: 0})
	mustWrite(t, s.Stdout(), "on disk soon")
	deadline := time.Now().Add(time.Second)
	for {
		data, _ := os.ReadFile(s.Path())
		if bytes.Contains(data, []byte("on disk soon")) {
			// A crash now loses nothing written so far: the chain up to
			// here verifies, only the final record is missing.
			rep := verifyFile(t, s.Path(), VerifyOptions{Key: env.signer.PublicKey()})
			if rep.Final || rep.Blocks < 2 || rep.Problem == nil || !strings.Contains(rep.Problem.Reason, "cut short") {
				t.Errorf("mid-session verify: %+v %v", rep, rep.Problem)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("output not on disk within a second")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTitleEscaped(t *testing.T) {
	m := Meta{Identity: "github:1", User: "ev\x1b]52;c;aGk=\ail", Login: "ro\not", Host: "h\u202eost", Command: "ls\r\n"}
	got := Title(m)
	want := `ev\x1b]52;c;aGk=\x07il (github:1) as ro\x0aot@h\u202eost: ls\x0d\x0a`
	if got != want {
		t.Errorf("Title = %q, want %q", got, want)
	}
}

func TestStartValidates(t *testing.T) {
	env := newEnv(t, nil)
	tests := []struct {
		name string
		mod  func(*Meta)
	}{
		{"fail/bad-id", func(m *Meta) { m.ID = "../../etc/passwd" }},
		{"fail/no-identity", func(m *Meta) { m.Identity = "" }},
		{"fail/no-host", func(m *Meta) { m.Host = "" }},
		{"fail/negative-size", func(m *Meta) { m.Width = -1 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := ptyMeta()
			tc.mod(&m)
			if _, err := env.rec.Start(context.Background(), m); err == nil {
				t.Fatal("Start succeeded")
			}
		})
	}
}

func ed25519Key(seed string) ed25519.PrivateKey {
	s := sha256.Sum256([]byte(seed))
	return ed25519.NewKeyFromSeed(s[:])
}
