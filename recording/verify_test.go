package recording

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/store"
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
		// The index holds the final digest, so the recording was completed:
		// a file ending before its final record was cut back afterwards.
		{"fail/truncated-to-checkpoint-after-signed", strings.Join(lines[:len(lines)-2], ""), VerifyOptions{Key: env.signer.PublicKey(), Digest: rep0.Digest}, "truncated after it was completed and signed"},
		{"fail/truncated-at-line-after-signed", strings.Join(lines[:len(lines)-1], ""), VerifyOptions{Key: env.signer.PublicKey(), Digest: rep0.Digest}, "truncated after it was completed and signed"},
		{"fail/truncated-mid-line-after-signed", string(orig[:len(orig)-10]), VerifyOptions{Key: env.signer.PublicKey(), Digest: rep0.Digest}, "truncated after it was completed and signed"},
		{"fail/truncated-to-checkpoint-unfinished", strings.Join(lines[:len(lines)-2], ""), VerifyOptions{Key: env.signer.PublicKey()}, "cut short (bastion crash or truncation)"},
		// Start always signs block 0 (the header).
		{"fail/block0-signature-stripped", stripSignature(t, lines, 1), VerifyOptions{Key: env.signer.PublicKey()}, "line 2, bytes"},
		{"fail/block0-signature-stripped-reason", stripSignature(t, lines, 1), VerifyOptions{Key: env.signer.PublicKey()}, "block 0 (the header) is not signed"},
		{"fail/block0-signature-stripped-chain-only", stripSignature(t, lines, 1), VerifyOptions{}, "block 0 (the header) is not signed"},
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

// stripSignature removes the signature from the chain record at line i
// (0-based), leaving its digest, which does not cover the signature.
func stripSignature(t *testing.T, lines []string, i int) string {
	t.Helper()
	l := lines[i]
	at := strings.Index(l, " sig ")
	if at < 0 {
		t.Fatalf("line %d has no signature: %s", i+1, l)
	}
	out := append([]string{}, lines...)
	out[i] = l[:at] + "\"]\n"
	return strings.Join(out, "")
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

// TestVerifyIndexRow: every field that both the index row and the file
// carry is compared, and each disagreement is named.
func TestVerifyIndexRow(t *testing.T) {
	ctx := context.Background()
	env, path := bulkSession(t)
	row, err := env.st.Recording(ctx, "golden-bulk")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	key := env.signer.PublicKey()
	tests := []struct {
		name string
		edit func(r *store.Recording)
		want []string // the mismatches; none means intact
	}{
		{"ok/as-recorded", func(*store.Recording) {}, nil},
		{"ok/unfinished-row", func(r *store.Recording) {
			// The bastion stopped after the file's final record but before
			// it finished the row: the end is not compared.
			r.End, r.Digest, r.Signature, r.ExitStatus, r.BytesIn, r.BytesOut, r.StdoutSHA256, r.StdinSHA256, r.FileBytes = time.Time{}, "", "", -1, 0, 0, "", "", 0
		}, nil},
		{"fail/identity", func(r *store.Recording) { r.Identity = "github:2" }, []string{"index says identity github:2, recording says github:1"}},
		{"fail/user", func(r *store.Recording) { r.User = "bob" }, []string{"index says user bob, recording says (none)"}},
		{"fail/login", func(r *store.Recording) { r.Login = "deploy" }, []string{"index says login deploy, recording says root"}},
		{"fail/host", func(r *store.Recording) { r.Host = "db1" }, []string{"index says host db1, recording says web1"}},
		{"fail/command", func(r *store.Recording) { r.Command = "" }, []string{"index says command (none), recording says scp -f big.bin"}},
		{"fail/session-id", func(r *store.Recording) { r.SessionID = "conn-9" }, []string{"index says session ID conn-9, recording says (none)"}},
		{"fail/pty", func(r *store.Recording) { r.PTY = true }, []string{"index says pty true, recording says false"}},
		{"fail/input", func(r *store.Recording) { r.InputRecorded = false }, []string{"index says input recorded false, recording says true"}},
		{"fail/start", func(r *store.Recording) { r.Start = r.Start.Add(time.Hour) },
			[]string{"index says start 2025-06-01T11:00:00Z, recording says 2025-06-01T10:00:00Z"}},
		{"fail/signer", func(r *store.Recording) { r.SignerFingerprint = "SHA256:x" },
			[]string{"index says signer SHA256:x, recording says " + ssh.FingerprintSHA256(key)}},
		{"fail/exit-status", func(r *store.Recording) { r.ExitStatus = 1 }, []string{"index says exit status 1, recording says 0"}},
		{"fail/exit-signal", func(r *store.Recording) { r.ExitSignal = "KILL" }, []string{"index says exit signal KILL, recording says (none)"}},
		{"fail/reason", func(r *store.Recording) { r.Reason = "revoked" }, []string{"index says reason revoked, recording says (none)"}},
		{"fail/bytes-out", func(r *store.Recording) { r.BytesOut = 1 }, []string{"index says bytes out 1, recording says 102469"}},
		{"fail/bytes-in", func(r *store.Recording) { r.BytesIn = 0 }, []string{"index says bytes in 0, recording says 3"}},
		{"fail/stdout-sha256", func(r *store.Recording) { r.StdoutSHA256 = "00" },
			[]string{"index says stdout SHA-256 00, recording says 140c060c37636275c60b3d3abb3bbfaa275a1f68c36982f1ebc8dbd491f3d4ab"}},
		{"fail/stdin-sha256", func(r *store.Recording) { r.StdinSHA256 = "" },
			[]string{"index says stdin SHA-256 (none), recording says 709e80c88487a2411e1ee4dfb9f22a861492d20c4765150c0c794abd70f8147c"}},
		{"fail/file-size", func(r *store.Recording) { r.FileBytes = 1 }, []string{fmt.Sprintf("index says file size 1, recording says %d", fi.Size())}},
		{"fail/final-signature", func(r *store.Recording) { r.Signature = "AAAA" }, []string{"index says final signature AAAA, recording says "}},
		{"fail/escaped", func(r *store.Recording) { r.Host = "db1\x1b[2J" }, []string{`index says host db1\x1b[2J, recording says web1`}},
		{"fail/several", func(r *store.Recording) { r.Host, r.ExitStatus = "db1", 2 },
			[]string{"index says host db1, recording says web1", "index says exit status 2, recording says 0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := row
			tc.edit(&r)
			rep := verifyFile(t, path, VerifyOptions{Key: key, Index: &r})
			if rep.Problem != nil {
				t.Fatalf("problem %v; want none (the file is unaltered)", rep.Problem)
			}
			var got []string
			for _, m := range rep.Mismatches {
				got = append(got, m.String())
			}
			if len(got) != len(tc.want) {
				t.Fatalf("mismatches %q; want %q", got, tc.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tc.want[i]) {
					t.Errorf("mismatch %q; want %q", got[i], tc.want[i])
				}
			}
			if rep.Intact() != (len(tc.want) == 0) {
				t.Errorf("Intact() = %v with mismatches %q", rep.Intact(), got)
			}
		})
	}
	// The row's ID and digest are compared too.
	r := row
	r.ID = "other"
	if rep := verifyFile(t, path, VerifyOptions{Key: key, Index: &r}); rep.Problem == nil || !strings.Contains(rep.Problem.Reason, `the index "other"`) {
		t.Errorf("row of another recording: problem %v", rep.Problem)
	}
	r = row
	r.Digest = strings.Repeat("0", 64)
	if rep := verifyFile(t, path, VerifyOptions{Key: key, Index: &r}); rep.Problem == nil || !strings.Contains(rep.Problem.Reason, "differs from the index") {
		t.Errorf("row with another digest: problem %v", rep.Problem)
	}
	// A terminal session's row, as recorded, agrees with its file.
	env = deterministicEnv(t)
	path, _ = scriptedSession(t, env)
	row, err = env.st.Recording(ctx, "golden-session")
	if err != nil {
		t.Fatal(err)
	}
	if rep := verifyFile(t, path, VerifyOptions{Key: key, Index: &row}); !rep.Intact() {
		t.Errorf("terminal session: problem %v, mismatches %v", rep.Problem, rep.Mismatches)
	}
}

// TestNotUTF8Kept: strings from the client or the target that are not
// UTF-8 (a command, TERM, an exit signal) are stored reversibly, as output
// is, so that a genuine recording agrees with its index row instead of
// looking altered, and replay shows them escaped.
func TestNotUTF8Kept(t *testing.T) {
	ctx := context.Background()
	env := newEnv(t, nil)
	m := Meta{Identity: "github:1", User: "al\xe9", Login: "root", Host: "web1", Command: "echo \xff\xfe \U0010FE41 \u00e9",
		Term: "xterm\xff", SessionID: "conn\xc3"}
	s, err := env.rec.Start(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s.Stdout(), "\x00\x01 binary")
	if _, err := s.Close(ctx, End{ExitStatus: -1, ExitSignal: "KILL\xff", Reason: "ended \xfe"}); err != nil {
		t.Fatal(err)
	}
	row, err := env.st.Recording(ctx, s.ID())
	if err != nil {
		t.Fatal(err)
	}
	if row.Command != m.Command || row.ExitSignal != "KILL\xff" {
		t.Fatalf("index row command %q, signal %q; the test needs them as given", row.Command, row.ExitSignal)
	}
	rep := verifyFile(t, s.Path(), VerifyOptions{Key: env.signer.PublicKey(), Index: &row})
	if !rep.Intact() {
		t.Errorf("genuine recording: problem %v, mismatches %v; want intact", rep.Problem, rep.Mismatches)
	}
	h := rep.Header
	if h.Command != m.Command || h.Env["TERM"] != m.Term || h.Sallyport.User != m.User || h.Sallyport.SessionID != m.SessionID {
		t.Errorf("header command %q, TERM %q, user %q, session %q; want them as given", h.Command, h.Env["TERM"], h.Sallyport.User, h.Sallyport.SessionID)
	}
	// Another command in the index is still told apart.
	other := row
	other.Command = "echo \ufffd\ufffd \U0010FE41 \u00e9"
	if rep := verifyFile(t, s.Path(), VerifyOptions{Key: env.signer.PublicKey(), Index: &other}); len(rep.Mismatches) != 1 || rep.Mismatches[0].Field != "command" {
		t.Errorf("index with another command: mismatches %v; want the command", rep.Mismatches)
	}
	var out, notes bytes.Buffer
	rd := openCast(t, s.Path())
	if err := Play(ctx, &out, rd, PlayOptions{Notes: &notes, NoReset: true, Sleep: func(context.Context, time.Duration) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	if want := `binary output not shown: echo \xff\xfe \U0010fe41 é`; !strings.Contains(out.String(), want) {
		t.Errorf("played %q; want %q", out.String(), want)
	}
	if want := `signal KILL\xff, ended \xfe`; !strings.Contains(notes.String(), want) {
		t.Errorf("notes %q; want %q", notes.String(), want)
	}
}
