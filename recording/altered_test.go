package recording

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sallyport/sallyport/store"
)

// checkpointedSession writes a small deterministic pty session whose
// middle blocks end in signed checkpoints, and returns the file and its
// index row. Timed flushes are called here rather than by the ticker,
// which never fires in the time the test takes (FlushInterval 1s).
func checkpointedSession(t testing.TB) ([]byte, store.Recording, *testEnv) {
	t.Helper()
	env := newEnv(t, func(o *Options) { o.FlushInterval = time.Second; o.SignInterval = time.Nanosecond })
	ctx := context.Background()
	m := ptyMeta()
	m.ID = "checkpointed"
	s, err := env.rec.Start(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"$ ls\r\n", "a.txt\r\n$ ", "exit\r\n"} {
		mustWrite(t, s.Stdout(), p)
		s.flush(true)
	}
	if err := s.Resize(120, 40); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Close(ctx, End{ExitStatus: 0}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	row, err := env.st.Recording(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Block 0, three signed checkpoints, an unsigned chain record (of the
	// resize, flushed by Close) and the final record.
	if n := bytes.Count(b, []byte(`"sallyport", "chain `)); n != 5 || bytes.Count(b, []byte(" sig ")) != n {
		t.Fatalf("want 4 signed chain records, an unsigned one and the final record; got\n%s", b)
	}
	return b, row, env
}

// checkAltered fails if Verify calls altered, which differs from the
// signed recording it was made from, intact: with the key alone or with
// the index row too.
func checkAltered(t testing.TB, env *testEnv, row *store.Recording, altered []byte, what string) *Report {
	t.Helper()
	var first *Report
	for _, r := range []*store.Recording{nil, row} {
		rep, err := Verify(bytes.NewReader(altered), VerifyOptions{Key: env.signer.PublicKey(), Index: r})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Intact() {
			t.Fatalf("%s: verify says intact (index row given: %v)\n%s", what, r != nil, altered)
		}
		if first == nil {
			first = rep
		}
	}
	return first
}

// TestChainLineExact: everything in a chain line after its digest (the
// signature, the end of the JSON, the line end) and how the line is
// written are covered by no digest, so the line must be exactly as
// Sallyport writes it; and no event line may carry data after its array.
func TestChainLineExact(t *testing.T) {
	orig, row, env := checkpointedSession(t)
	lines := strings.SplitAfter(string(orig), "\n")
	lines = lines[:len(lines)-1]
	// Line 4 (index 3) is the first checkpoint after the header's.
	cp := 3
	if !strings.Contains(lines[cp], `"chain 1 `) || !strings.Contains(lines[cp], " sig ") {
		t.Fatalf("line %d is not block 1's signed checkpoint: %s", cp+1, lines[cp])
	}
	last := len(lines) - 1
	edit := func(i int, f func(string) string) string {
		out := append([]string{}, lines...)
		out[i] = f(out[i])
		return strings.Join(out, "")
	}
	at := strings.Index(lines[cp], " sig ")
	tail := len(lines[cp]) - at - len(`"]`) - 1 // bytes after the digest, less `"]` and the newline
	tests := []struct {
		name   string
		data   string
		line   int // 1-based
		reason string
	}{
		// The reviewer's alteration: the signature dropped and the line
		// padded with ']' to its length, which a JSON decoder that only
		// looked for more values took.
		{"fail/signature-replaced-by-brackets", edit(cp, func(l string) string { return l[:at] + `"]` + strings.Repeat("]", tail) + "\n" }),
			cp + 1, "after top-level value"},
		{"fail/signature-replaced-by-spaces", edit(cp, func(l string) string { return l[:at] + `"]` + strings.Repeat(" ", tail) + "\n" }),
			cp + 1, "data after the event"},
		{"fail/final-trailing-braces", edit(last, func(l string) string { return strings.TrimSuffix(l, "\n") + "  }}}\n" }),
			last + 1, "after top-level value"},
		{"fail/output-trailing-bracket", edit(2, func(l string) string { return strings.TrimSuffix(l, "\n") + "]\n" }),
			3, "after top-level value"},
		{"fail/checkpoint-trailing-space", edit(cp, func(l string) string { return strings.TrimSuffix(l, "\n") + " \n" }),
			cp + 1, "data after the event"},
		{"fail/checkpoint-leading-space", edit(cp, func(l string) string { return " " + l }),
			cp + 1, "not in the form Sallyport writes"},
		{"fail/checkpoint-time-zero-padded", edit(cp, func(l string) string { return strings.Replace(l, "[0.", "[00.", 1) }),
			cp + 1, "invalid character"},
		{"fail/checkpoint-time-digit-added", edit(cp, func(l string) string { return strings.Replace(l, `, "sallyport"`, `0, "sallyport"`, 1) }),
			cp + 1, "not in the form Sallyport writes"},
		{"fail/checkpoint-number-zero-padded", edit(cp, func(l string) string { return strings.Replace(l, `"chain 1 `, `"chain 01 `, 1) }),
			cp + 1, "not in the form Sallyport writes"},
		{"fail/checkpoint-double-space", edit(cp, func(l string) string { return strings.Replace(l, " sig ", "  sig ", 1) }),
			cp + 1, "not in the form Sallyport writes"},
		{"fail/checkpoint-json-escape", edit(cp, func(l string) string { return strings.Replace(l, " sig ", `\u0020sig `, 1) }),
			cp + 1, "not in the form Sallyport writes"},
		{"fail/checkpoint-json-spacing", edit(cp, func(l string) string { return strings.Replace(l, `, "sallyport", `, `,"sallyport", `, 1) }),
			cp + 1, "not in the form Sallyport writes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.data) == len(orig) && tc.data == string(orig) {
				t.Fatal("the alteration changed nothing")
			}
			rep := checkAltered(t, env, &row, []byte(tc.data), tc.name)
			p := rep.Problem
			if p == nil {
				t.Fatalf("no problem; mismatches %v", rep.Mismatches)
			}
			if p.Line > tc.line || p.EndLine < tc.line || !strings.Contains(p.Reason, tc.reason) {
				t.Errorf("problem %v; want one at line %d saying %q", p, tc.line, tc.reason)
			}
		})
	}
}

// TestEveryAlteredByteIsCaught: replacing any byte of a signed recording
// with checkpoints by bytes that JSON lets pass unnoticed in places
// (closing brackets, white space, quotes), or inserting one of them
// anywhere, never leaves it intact, and the problem is located where the
// byte is; nor does changing one bit of any byte, with or without the
// index row.
func TestEveryAlteredByteIsCaught(t *testing.T) {
	orig, row, env := checkpointedSession(t)
	key := env.signer.PublicKey()
	check := func(i int, b []byte, what string) {
		t.Helper()
		rep, err := Verify(bytes.NewReader(b), VerifyOptions{Key: key})
		if err != nil {
			t.Fatal(err)
		}
		p := rep.Problem
		if p == nil {
			t.Fatalf("%s: verify says intact", what)
		}
		// A newline changed or added splits or joins lines; the problem
		// is then at one of them.
		if b[i] != '\n' && orig[i] != '\n' && (int64(i) < p.Offset || int64(i) >= p.End) {
			t.Errorf("%s: problem at bytes %d-%d: %v", what, p.Offset, p.End, p)
		}
	}
	for i := range orig {
		for _, c := range []byte{']', ' ', '"'} {
			if c != orig[i] {
				b := bytes.Clone(orig)
				b[i] = c
				check(i, b, fmt.Sprintf("byte %d changed from %q to %q", i, orig[i], c))
			}
		}
		for _, c := range []byte{']', ' '} {
			b := append(append(append([]byte{}, orig[:i]...), c), orig[i:]...)
			check(i, b, fmt.Sprintf("%q inserted before byte %d", c, i))
		}
		b := bytes.Clone(orig)
		b[i] ^= 1
		checkAltered(t, env, &row, b, fmt.Sprintf("byte %d changed from %q to %q", i, orig[i], b[i]))
	}
}

// FuzzVerifyAltered checks the rule that changing any byte of a signed
// recording makes Verify fail: an alteration (bytes replaced, inserted or
// removed at any place) of a genuine recording with signed checkpoints is
// never intact, with or without its index row, unless it leaves the file
// as it was.
func FuzzVerifyAltered(f *testing.F) {
	orig, row, env := checkpointedSession(f)
	s := string(orig)
	// The reviewer's alteration and its kin, at every signed chain line.
	for at := 0; ; at++ {
		k := strings.Index(s[at:], " sig ")
		if k < 0 {
			break
		}
		at += k
		end := at + strings.Index(s[at:], "\n")
		f.Add(uint32(at), []byte(`"]`+strings.Repeat("]", end-at-2)), uint16(end-at))
		f.Add(uint32(at), []byte(`"]`+strings.Repeat(" ", end-at-2)), uint16(end-at))
		f.Add(uint32(end), []byte("  }}}"), uint16(0))
	}
	f.Add(uint32(0), []byte(" "), uint16(0))
	f.Add(uint32(len(s)), []byte("\n"), uint16(0))
	f.Add(uint32(len(s)-1), []byte{}, uint16(1))
	f.Add(uint32(10), []byte("x"), uint16(1))
	f.Fuzz(func(t *testing.T, off uint32, repl []byte, del uint16) {
		o := int(off % uint32(len(orig)+1))
		d := min(int(del), len(orig)-o)
		altered := append(append(append([]byte{}, orig[:o]...), repl...), orig[o+d:]...)
		if bytes.Equal(altered, orig) {
			return
		}
		checkAltered(t, env, &row, altered, "altered recording")
	})
}
