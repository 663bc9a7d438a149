package recording

import (
	"bytes"
	"context"
	"flag"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// scriptedSession writes a small deterministic pty session and returns the
// recording's path and the output bytes written.
func scriptedSession(t testing.TB, env *testEnv) (string, []byte) {
	t.Helper()
	ctx := context.Background()
	m := ptyMeta()
	m.ID = "golden-session"
	s, err := env.rec.Start(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for _, p := range []string{"$ ", "ls\r\n", "a.txt  b\xffin\r\n", "$ ", "printf '\\e]52;c;cm0gLXJmIH4=\\a'\r\n", "\x1b]52;c;cm0gLXJmIH4=\a", "$ ", "exit\r\n"} {
		mustWrite(t, s.Stdout(), p)
		out = append(out, p...)
	}
	if _, err := s.Close(ctx, End{ExitStatus: 0}); err != nil {
		t.Fatal(err)
	}
	return s.Path(), out
}

// deterministicEnv flushes only on Close (the test takes far less than the
// interval), so the file is the same on every run.
func deterministicEnv(t testing.TB) *testEnv {
	return newEnv(t, func(o *Options) { o.FlushInterval = time.Second })
}

// bulkSession writes a small deterministic session without a pty: stdout
// and stdin of assorted sizes, past a 100-byte head, and some stderr.
func bulkSession(t testing.TB) (*testEnv, string) {
	t.Helper()
	env := newEnv(t, func(o *Options) { o.FlushInterval = time.Second; o.BulkHead = 100 })
	ctx := context.Background()
	s, err := env.rec.Start(ctx, Meta{ID: "golden-bulk", Identity: "github:1", Login: "root", Host: "web1",
		Command: "scp -f big.bin", RecordInput: true})
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.NewChaCha8([32]byte{9})
	big := make([]byte, 100<<10)
	rnd.Read(big)
	mustWrite(t, s.Stdin(), "\x00")
	mustWrite(t, s.Stdout(), "C0644 102400 big.bin\n")
	mustWrite(t, s.Stdin(), "\x00")
	mustWrite(t, s.Stdout(), string(big[:1]))
	mustWrite(t, s.Stdout(), string(big))
	for i := range 30 {
		mustWrite(t, s.Stdout(), string(big[i:i+1]))
	}
	mustWrite(t, s.Stderr(), "warning: \xff slow\n")
	mustWrite(t, s.Stdout(), "\x00")
	mustWrite(t, s.Stdin(), "\x00")
	if _, err := s.Close(ctx, End{ExitStatus: 0}); err != nil {
		t.Fatal(err)
	}
	return env, s.Path()
}

func TestGoldenRecording(t *testing.T) {
	env := deterministicEnv(t)
	path, _ := scriptedSession(t, env)
	checkGolden(t, env, path, "session.cast")
}

func TestGoldenBulkRecording(t *testing.T) {
	env, path := bulkSession(t)
	checkGolden(t, env, path, "bulk.cast")
}

// checkGolden compares the recording at path with testdata/name and
// verifies the golden file.
func checkGolden(t *testing.T, env *testEnv, path, name string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("recording differs from %s (run with -update if intended):\n%s", golden, got)
	}
	// The golden file itself verifies with the test key.
	rep := verifyFile(t, golden, VerifyOptions{Key: env.signer.PublicKey()})
	if !rep.Intact() {
		t.Errorf("golden file: %v", rep.Problem)
	}
}

// runTTY runs a command under script(1), which gives it the terminal
// asciinema insists on, with stdin closed.
func runTTY(t *testing.T, command string) []byte {
	t.Helper()
	cmd := exec.Command("script", "-qec", command, "/dev/null")
	cmd.Stdin = nil
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s%s", command, err, out, stderr.Bytes())
	}
	return out
}

func TestAsciinemaAcceptsRecording(t *testing.T) {
	env := deterministicEnv(t)
	path, written := scriptedSession(t, env)
	got := runTTY(t, "asciinema cat "+path)
	// asciinema prints the stored text: the bytes as written, except the
	// invalid byte, which is stored as its private-use code point.
	want := []byte(EncodeBytes(written))
	if !bytes.Equal(got, want) {
		t.Errorf("asciinema cat\n got %q\nwant %q", got, want)
	}
	runTTY(t, "asciinema play -i 0.01 -s 100 "+path)
}

func TestAsciinemaAcceptsBulkRecording(t *testing.T) {
	env := deterministicEnv(t)
	s, err := env.rec.Start(context.Background(), Meta{Identity: "github:1", Login: "root", Host: "web1", Command: "cat big.bin"})
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789\x00\xff\n"), 20000)
	mustWrite(t, s.Stdout(), string(big))
	if _, err := s.Close(context.Background(), End{ExitStatus: 0}); err != nil {
		t.Fatal(err)
	}
	got := runTTY(t, "asciinema cat "+s.Path())
	if want := EncodeBytes(big[:DefaultBulkHead]); string(got) != want {
		t.Errorf("asciinema cat: got %d bytes, want the %d-byte head", len(got), len(want))
	}
}

func TestEveryAlteredByteIsLocated(t *testing.T) {
	env := deterministicEnv(t)
	path, _ := scriptedSession(t, env)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	key := env.signer.PublicKey()
	for i := range orig {
		for _, delta := range []byte{1, 0x20} {
			b := bytes.Clone(orig)
			b[i] ^= delta
			rep, err := Verify(bytes.NewReader(b), VerifyOptions{Key: key})
			if err != nil {
				t.Fatal(err)
			}
			p := rep.Problem
			if p == nil {
				t.Fatalf("byte %d changed from %q to %q: verify says intact", i, orig[i], b[i])
			}
			if int64(i) < p.Offset || int64(i) >= p.End {
				// A changed newline may join two lines; the problem then
				// starts at the joined line.
				t.Errorf("byte %d (%q->%q): problem at bytes %d-%d: %v", i, orig[i], b[i], p.Offset, p.End, p)
			}
		}
	}
}

func TestVerify(t *testing.T) {
	env := deterministicEnv(t)
	path, _ := scriptedSession(t, env)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(orig), "\n")
	lines = lines[:len(lines)-1]
	otherKey := testSignerSeed(t, "other")
	rep0, err := Verify(bytes.NewReader(orig), VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		data   string
		opts   VerifyOptions
		reason string // substring of the problem; "" means intact
	}{
		{"ok/intact", string(orig), VerifyOptions{Key: env.signer.PublicKey()}, ""},
		{"ok/intact-with-index", string(orig), VerifyOptions{Key: env.signer.PublicKey(), Digest: rep0.Digest, ID: "golden-session"}, ""},
		{"ok/chain-only", string(orig), VerifyOptions{}, ""},
		{"fail/wrong-key", string(orig), VerifyOptions{Key: otherKey.PublicKey()}, "signed by"},
		{"fail/index-digest", string(orig), VerifyOptions{Digest: strings.Repeat("0", 64)}, "differs from the index"},
		{"fail/index-id", string(orig), VerifyOptions{ID: "other"}, "the index"},
		{"fail/truncated-at-line", strings.Join(lines[:len(lines)-1], ""), VerifyOptions{}, "cut short"},
		{"fail/truncated-mid-line", string(orig[:len(orig)-10]), VerifyOptions{}, "no newline"},
		{"fail/line-removed", strings.Join(append(append([]string{}, lines[:2]...), lines[3:]...), ""), VerifyOptions{}, "does not match"},
		{"fail/line-appended", string(orig) + "[9.0, \"o\", \"x\"]\n", VerifyOptions{}, "after the final record"},
		{"fail/lines-swapped", strings.Join(append(append([]string{}, lines[0], lines[3], lines[2], lines[1]), lines[4:]...), ""), VerifyOptions{}, "does not match"},
		{"fail/empty", "", VerifyOptions{}, "empty"},
		{"fail/not-sallyport", "{\"version\": 2, \"width\": 80, \"height\": 24}\n", VerifyOptions{}, "not a Sallyport recording"},
		{"fail/resigned-chain-without-key", resign(t, lines), VerifyOptions{Key: env.signer.PublicKey()}, "signature"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Verify(strings.NewReader(tc.data), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.reason == "" && rep.Problem != nil:
				t.Errorf("got %v; want intact", rep.Problem)
			case tc.reason != "" && rep.Problem == nil:
				t.Errorf("got intact; want a problem with %q", tc.reason)
			case tc.reason != "" && !strings.Contains(rep.Problem.Error(), tc.reason):
				t.Errorf("got %v; want %q", rep.Problem, tc.reason)
			}
		})
	}
}

// resign alters an output event and recomputes the whole chain, as someone
// who can write the file but lacks the key would: the chain matches, the
// signatures do not.
func resign(t *testing.T, lines []string) string {
	t.Helper()
	var b strings.Builder
	prev := chainSeed
	var block []byte
	for _, l := range lines {
		l = strings.Replace(l, `"ls\r\n"`, `"id\r\n"`, 1)
		if strings.Contains(l, `"sallyport", "chain `) || strings.Contains(l, `"sallyport", "final `) {
			f := strings.Fields(l)
			hexd := strings.TrimSuffix(strings.TrimSuffix(f[4], `"]`), `"`)
			prefix := l[:strings.Index(l, hexd)]
			d := chainNext(prev, append(block, prefix...))
			l = strings.Replace(l, hexd, hexString(d[:]), 1)
			prev = d
			block = nil
		} else {
			block = append(block, l...)
		}
		b.WriteString(l)
	}
	return b.String()
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func testSignerSeed(t testing.TB, seed string) ssh.Signer {
	t.Helper()
	env := testSigner(t)
	_ = env
	s, err := ssh.NewSignerFromKey(ed25519Key(seed))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
