package recording

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

// eventsOf returns the bytes of the events of type typ of a recording.
func eventsOf(t testing.TB, path, typ string) []byte {
	t.Helper()
	out, _ := readEvents(t, path, typ)
	return out
}

// TestWhatIsKept checks the rule of the package doc for each kind of
// channel: what of output and input is kept, and that the header and the
// index say so.
func TestWhatIsKept(t *testing.T) {
	const head = 1000
	rnd := rand.NewChaCha8([32]byte{5})
	out := make([]byte, 3*head+7)
	in := make([]byte, 2*head+3)
	rnd.Read(out)
	rnd.Read(in)
	tests := []struct {
		name                 string
		pty                  bool
		command              string
		recordInput          bool
		keptOut, keptIn      int
		headerInput, hashed  bool
		headerBulk, indexPTY bool
	}{
		{"ok/pty-shell", true, "", false, len(out), 0, false, false, false, true},
		{"ok/pty-shell-record-input", true, "", true, len(out), len(in), true, false, false, true},
		{"ok/pty-exec", true, "top", false, len(out), 0, false, false, false, true},
		{"ok/pty-exec-record-input", true, "top", true, len(out), len(in), true, false, false, true},
		{"ok/shell-without-pty", false, "", false, len(out), 0, false, false, false, false},
		{"ok/shell-without-pty-record-input", false, "", true, len(out), len(in), true, false, false, false},
		{"ok/exec-without-pty", false, "sh", false, head, 0, false, true, true, false},
		{"ok/exec-without-pty-record-input", false, "sh", true, head, head, true, true, true, false},
		{"ok/subsystem", false, "subsystem: sftp", false, head, 0, false, true, true, false},
		{"ok/subsystem-record-input", false, "subsystem: sftp", true, head, head, true, true, true, false},
	}
	inSum := sha256.Sum256(in)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, func(o *Options) { o.BulkHead = head })
			ctx := context.Background()
			m := Meta{Identity: "github:1", Login: "root", Host: "web1", PTY: tc.pty, Command: tc.command, RecordInput: tc.recordInput}
			s, err := env.rec.Start(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			writeAll(t, s.Stdin(), in, []int{1, 7, 300})
			writeAll(t, s.Stdout(), out, []int{5, 999, 64})
			sum, err := s.Close(ctx, End{ExitStatus: 0})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Stdout.Kept != int64(tc.keptOut) || sum.Stdin.Kept != int64(tc.keptIn) {
				t.Errorf("kept stdout %d, stdin %d; want %d, %d", sum.Stdout.Kept, sum.Stdin.Kept, tc.keptOut, tc.keptIn)
			}
			if got := eventsOf(t, s.Path(), "o"); !bytes.Equal(got, out[:tc.keptOut]) {
				t.Errorf("output events: %d bytes; want the first %d", len(got), tc.keptOut)
			}
			if got := eventsOf(t, s.Path(), "i"); !bytes.Equal(got, in[:tc.keptIn]) {
				t.Errorf("input events: %d bytes; want the first %d", len(got), tc.keptIn)
			}
			// The input's digest only when the input is recorded: an
			// unsalted digest of a short input (a password) gives it away.
			inHashed := tc.hashed && tc.recordInput
			if (sum.Stdout.SHA256 != "") != tc.hashed || (sum.Stdin.SHA256 != "") != inHashed {
				t.Errorf("hashes %q %q; want stdout hashed=%v, stdin hashed=%v", sum.Stdout.SHA256, sum.Stdin.SHA256, tc.hashed, inHashed)
			}
			// The input's count whatever record_input says.
			if sum.Stdin.Bytes != int64(len(in)) || inHashed && sum.Stdin.SHA256 != hex.EncodeToString(inSum[:]) {
				t.Errorf("stdin %+v; want %d bytes, sha256 %x", sum.Stdin, len(in), inSum)
			}
			if !tc.recordInput {
				data, err := os.ReadFile(s.Path())
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Contains(data, []byte(`, "i", `)) {
					t.Errorf("input in a recording without record_input")
				}
			}
			_, rd := outputOf(t, s.Path())
			h := rd.Header.Sallyport
			if h.Input != tc.headerInput || (h.BulkHead != 0) != tc.headerBulk || h.PTY != tc.pty {
				t.Errorf("header input=%v bulk_head=%d pty=%v; want input=%v bulk=%v", h.Input, h.BulkHead, h.PTY, tc.headerInput, tc.headerBulk)
			}
			row, err := env.st.Recording(ctx, s.ID())
			if err != nil {
				t.Fatal(err)
			}
			if row.InputRecorded != tc.headerInput || row.PTY != tc.indexPTY {
				t.Errorf("index input recorded %v, pty %v; want %v, %v", row.InputRecorded, row.PTY, tc.headerInput, tc.indexPTY)
			}
		})
	}
}

// TestShellWithoutPTYNotBounded: a shell without a pty past the bulk head
// keeps every byte of its output, with the default head, and every byte of
// its input when record_input asks, none otherwise.
func TestShellWithoutPTYNotBounded(t *testing.T) {
	for _, record := range []bool{false, true} {
		env := newEnv(t, nil)
		ctx := context.Background()
		s, err := env.rec.Start(ctx, Meta{Identity: "github:1", Login: "root", Host: "web1", RecordInput: record})
		if err != nil {
			t.Fatal(err)
		}
		cmds := strings.Repeat("cat /etc/passwd\n", DefaultBulkHead/8)
		outText := strings.Repeat("root:x:0:0:root:/root:/bin/bash\n", DefaultBulkHead/16)
		mustWrite(t, s.Stdin(), cmds)
		mustWrite(t, s.Stdout(), outText)
		mustWrite(t, s.Stdin(), "rm -rf /tmp/evidence\n")
		sum, err := s.Close(ctx, End{ExitStatus: 0})
		if err != nil {
			t.Fatal(err)
		}
		wantIn := ""
		if record {
			wantIn = cmds + "rm -rf /tmp/evidence\n"
		}
		if got := string(eventsOf(t, s.Path(), "i")); got != wantIn {
			t.Errorf("record_input %v: input events: %d bytes; want %d", record, len(got), len(wantIn))
		}
		if got := string(eventsOf(t, s.Path(), "o")); got != outText {
			t.Errorf("record_input %v: output events: %d bytes; want all %d", record, len(got), len(outText))
		}
		if sum.Stdout.Kept != sum.Stdout.Bytes || sum.Stdin.Kept != int64(len(wantIn)) || sum.Stdin.Bytes != int64(len(cmds)+21) {
			t.Errorf("record_input %v: summary %+v %+v; want all output kept, input counted, %d kept", record, sum.Stdout, sum.Stdin, len(wantIn))
		}
	}
}

// TestTerminalSizeOutOfRange: sizes a client may send that cannot be
// recorded are skipped, not failures.
func TestTerminalSizeOutOfRange(t *testing.T) {
	env := newEnv(t, nil)
	ctx := context.Background()
	m := ptyMeta()
	m.Width, m.Height = MaxTermSize+1, 50
	s, err := env.rec.Start(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range [][2]int{{0, 0}, {0, 24}, {80, 0}, {MaxTermSize + 1, 24}, {80, 1 << 30}, {-1, 5}} {
		err := s.Resize(size[0], size[1])
		if !errors.Is(err, ErrSize) || errors.Is(err, ErrFailed) {
			t.Errorf("Resize(%d, %d) = %v; want ErrSize, not ErrFailed", size[0], size[1], err)
		}
	}
	if err := s.Resize(MaxTermSize, 1); err != nil {
		t.Errorf("Resize(%d, 1) = %v", MaxTermSize, err)
	}
	mustWrite(t, s.Stdout(), "still recording")
	select {
	case <-s.Failed():
		t.Fatal("recording failed")
	default:
	}
	if _, err := s.Close(ctx, End{ExitStatus: 0}); err != nil {
		t.Fatal(err)
	}
	if got := string(eventsOf(t, s.Path(), "r")); got != "10000x1" {
		t.Errorf("resize events %q; want only 10000x1", got)
	}
	_, rd := outputOf(t, s.Path())
	if rd.Header.Width != 80 || rd.Header.Height != 24 {
		t.Errorf("header size %dx%d; want 80x24 for an out-of-range start size", rd.Header.Width, rd.Header.Height)
	}
}

// TestBulkTextKept: a stream of an exec or subsystem channel without a pty
// is kept past the head while it is text, up to BulkText, so that a script
// piped to `ssh host sh` is kept as a shell's output is; from the first
// write that is not text, no more than the head is kept. The SHA-256 and
// byte count always cover the whole stream.
func TestBulkTextKept(t *testing.T) {
	const head, text = 1000, 5000
	line := []byte("€ line of text, with a tab\tand colours \x1b[1mbold\x1b[0m\r\n")
	textOf := func(n int) []byte { return bytes.Repeat(line, n/len(line)+1)[:n] }
	rnd := rand.NewChaCha8([32]byte{7})
	binary := make([]byte, 3000)
	rnd.Read(binary)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name        string
		out, in     []byte
		recordInput bool
		keptOut     int
		keptIn      int
	}{
		{"ok/text-under-the-cap", textOf(3 * head), nil, false, 3 * head, 0},
		{"ok/text-up-to-the-cap", textOf(2 * text), nil, false, text, 0},
		// Kept by whole writes: 2136 bytes are two rounds of the writes
		// below (5+999+64), so the binary starts a write.
		{"ok/text-then-binary-past-the-head", cat(textOf(2136), binary), nil, false, 2136, 0},
		{"ok/text-then-binary-within-the-head", cat(textOf(head/2), binary), nil, false, head, 0},
		{"ok/binary-then-text", cat(binary, textOf(3*head)), nil, false, head, 0},
		{"ok/nul-is-not-text", cat(textOf(head), []byte{0}, textOf(2*head)), nil, false, head, 0},
		{"ok/input-text-with-record-input", nil, textOf(3 * head), true, 0, 3 * head},
		{"ok/input-not-kept-without-record-input", nil, textOf(3 * head), false, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, func(o *Options) { o.BulkHead, o.BulkText = head, text })
			ctx := context.Background()
			s, err := env.rec.Start(ctx, Meta{Identity: "github:1", Login: "root", Host: "web1", Command: "sh", RecordInput: tc.recordInput})
			if err != nil {
				t.Fatal(err)
			}
			// Writes of odd sizes cut the three-byte € between writes.
			writeAll(t, s.Stdin(), tc.in, []int{1, 7, 301})
			writeAll(t, s.Stdout(), tc.out, []int{5, 999, 64})
			sum, err := s.Close(ctx, End{ExitStatus: 0})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Stdout.Kept != int64(tc.keptOut) || sum.Stdin.Kept != int64(tc.keptIn) {
				t.Errorf("kept stdout %d, stdin %d; want %d, %d", sum.Stdout.Kept, sum.Stdin.Kept, tc.keptOut, tc.keptIn)
			}
			if got := eventsOf(t, s.Path(), "o"); !bytes.Equal(got, tc.out[:tc.keptOut]) {
				t.Errorf("output events: %d bytes; want the first %d", len(got), tc.keptOut)
			}
			if got := eventsOf(t, s.Path(), "i"); !bytes.Equal(got, tc.in[:tc.keptIn]) {
				t.Errorf("input events: %d bytes; want the first %d", len(got), tc.keptIn)
			}
			if sum.Stdout.Bytes != int64(len(tc.out)) || (len(tc.out) > 0 && sum.Stdout.SHA256 != sha256Hex(tc.out)) {
				t.Errorf("stdout %+v; want %d bytes and the SHA-256 of all of them", sum.Stdout, len(tc.out))
			}
			_, rd := outputOf(t, s.Path())
			if h := rd.Header.Sallyport; h.BulkHead != head || h.BulkText != text {
				t.Errorf("header bulk_head %d, bulk_text %d; want %d, %d", h.BulkHead, h.BulkText, head, text)
			}
		})
	}
}

// TestBulkBinaryInPieces: a binary stream written in pieces too small to
// judge alone (a lone lead byte, stray continuation bytes) is not text:
// whether a write is text depends on the writes before it.
func TestBulkBinaryInPieces(t *testing.T) {
	const head, text = 1000, 50000
	rnd := rand.NewChaCha8([32]byte{9})
	cont := make([]byte, 30000)
	rnd.Read(cont)
	for i := range cont {
		cont[i] = 0x80 | cont[i]&0x3f // continuation bytes only
	}
	euro := []byte("€")
	tests := []struct {
		name  string
		data  []byte
		sizes []int
		kept  int
	}{
		{"fail/lead-byte-then-ascii", bytes.Repeat([]byte("\xe2A"), 20000), []int{1}, head},
		{"fail/continuation-bytes", cont, []int{3}, head},
		{"ok/characters-cut-in-every-way", bytes.Repeat(euro, 4000), []int{1, 2, 4, 5}, 3 * 4000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, func(o *Options) { o.BulkHead, o.BulkText = head, text })
			ctx := context.Background()
			s, err := env.rec.Start(ctx, Meta{Identity: "github:1", Login: "root", Host: "web1", Command: "cat blob"})
			if err != nil {
				t.Fatal(err)
			}
			writeAll(t, s.Stdout(), tc.data, tc.sizes)
			sum, err := s.Close(ctx, End{ExitStatus: 0})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Stdout.Kept != int64(tc.kept) {
				t.Errorf("kept %d of %d bytes; want %d", sum.Stdout.Kept, len(tc.data), tc.kept)
			}
		})
	}
}
