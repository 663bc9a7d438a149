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
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for {
		e, err := rd.Next()
		if err == io.EOF {
			return out, rd
		}
		if err != nil {
			t.Fatal(err)
		}
		if e.Type == "o" {
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
	hIn := sha256.Sum256(in)
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
	if sum.Stdin.Bytes != int64(len(in)) || sum.Stdin.Kept != 0 || sum.Stdin.SHA256 != hex.EncodeToString(hIn[:]) {
		t.Errorf("stdin %+v", sum.Stdin)
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
