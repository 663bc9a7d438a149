package recording

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSafeWriter(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"ok/plain", "hello\r\nworld\t!", "hello\r\nworld\t!"},
		{"ok/utf8", "héllo ✓", "héllo ✓"},
		{"ok/sgr-and-cursor", "\x1b[1;31mred\x1b[0m\x1b[2J\x1b[H\x1b[10;5H\x1b[K", "\x1b[1;31mred\x1b[0m\x1b[2J\x1b[H\x1b[10;5H\x1b[K"},
		{"ok/alt-screen-and-cursor", "\x1b[?1049h\x1b[?25l\x1b[?1049l\x1b[?25h", "\x1b[?1049h\x1b[?25l\x1b[?1049l\x1b[?25h"},
		{"ok/charset", "\x1b(0qqq\x1b(B", "\x1b(0qqq\x1b(B"},
		{"ok/save-restore", "\x1b7x\x1b8\x1bM", "\x1b7x\x1b8\x1bM"},
		{"ok/cursor-style", "\x1b[2 q", "\x1b[2 q"},
		{"ok/repeat-short", "x\x1b[79b", "x\x1b[79b"},
		{"fail/repeat-flood", "x\x1b[65535by\x1b[1;2b", "xy"},
		{"fail/osc52-clipboard-bel", "a\x1b]52;c;cm0gLXJmIH4=\ab", "ab"},
		{"fail/osc52-clipboard-st", "a\x1b]52;c;cm0gLXJmIH4=\x1b\\b", "ab"},
		{"fail/osc-title", "a\x1b]0;evil title\ab", "ab"},
		{"fail/osc-hyperlink", "\x1b]8;;http://evil/\x1b\\click\x1b]8;;\x1b\\", "click"},
		{"fail/title-report", "a\x1b[21tb", "ab"},
		{"fail/window-ops", "\x1b[8;100;100t\x1b[14t", ""},
		{"fail/device-status", "\x1b[6n\x1b[5n\x1b[c\x1b[>c\x1b[=c", ""},
		{"fail/decrqm", "\x1b[?2004$p", ""},
		{"fail/dcs", "a\x1bP$q\"p\x1b\\b", "ab"},
		{"fail/dcs-sixel-like", "\x1bPq#0;2;0;0;0#0~~\x1b\\", ""},
		{"fail/apc-pm-sos", "\x1b_x\x1b\\\x1b^y\x1b\\\x1bXz\x1b\\.", "."},
		{"fail/decid", "\x1bZ", ""},
		{"fail/enq-answerback", "a\x05b", "ab"},
		{"fail/mouse-reporting", "\x1b[?1000h\x1b[?1006h\x1b[?1004h", ""},
		{"fail/mixed-modes", "\x1b[?1000;1006h", ""},
		{"ok/mixed-modes-filtered", "\x1b[?25;1000;7h", "\x1b[?25;7h"},
		{"ok/insert-mode", "\x1b[4ha\x1b[4l", "\x1b[4ha\x1b[4l"},
		{"ok/insert-mode-filtered", "\x1b[2;4;20h", "\x1b[4h"},
		{"ok/mode-leading-zeros", "\x1b[?0025l\x1b[004h", "\x1b[?25l\x1b[4h"},
		{"ok/autowrap", "\x1b[?7l\x1b[?7h", "\x1b[?7l\x1b[?7h"},
		{"ok/alt-screens", "\x1b[?47h\x1b[?47l\x1b[?1047h\x1b[?1047l\x1b[?1048h\x1b[?1048l", "\x1b[?47h\x1b[?47l\x1b[?1047h\x1b[?1047l\x1b[?1048h\x1b[?1048l"},
		{"fail/keyboard-lock-kam", "\x1b[2h", ""},
		{"fail/local-echo-srm", "\x1b[12l", ""},
		{"fail/newline-mode-lnm", "\x1b[20h", ""},
		{"fail/standard-modes", "\x1b[3h\x1b[34l\x1b[h\x1b[;l\x1b[4:1h\x1b[99999999999999999999h.", "."},
		{"fail/cursor-keys-decckm", "\x1b[?1h\x1b[?1l", ""},
		{"fail/keypad-modes", "\x1b=\x1b>\x1b[?66h.", "."},
		{"fail/bracketed-paste", "\x1b[?2004h\x1b[?2004l", ""},
		{"fail/focus-reporting", "\x1b[?1004h", ""},
		{"fail/mouse-modes", "\x1b[?9h\x1b[?1001h\x1b[?1002h\x1b[?1003h\x1b[?1005h\x1b[?1015h\x1b[?1016h", ""},
		{"fail/display-modes", "\x1b[?3h\x1b[?5h\x1b[?6h\x1b[?12h\x1b[?69h", ""},
		{"fail/save-restore-modes", "\x1b[?1000s\x1b[?1000r", ""},
		{"fail/other-private-modes", "\x1b[>1h\x1b[=1h\x1b[<1l", ""},
		{"fail/8bit-controls-on", "\x1b G", ""},
		{"fail/7bit-controls", "\x1b F", ""},
		{"fail/conformance-level", "\x1b L\x1b N", ""},
		{"fail/decscl-8bit", "\x1b[62;2\"p", ""},
		{"fail/docs-leave-utf8-osc52", "\x1b%@\xdf\x9d52;c;eA==\a", "\xdf\x9d52;c;eA==\a"},
		{"fail/docs-leave-utf8-csi", "\x1b%@\xdf\x9b21t", "\xdf\x9b21t"},
		{"fail/docs-utf8", "a\x1b%Gb", "ab"},
		{"fail/docs-other", "\x1b%8\x1b%/@\x1b%/F\x1b%/G\x1b%/I.", "."},
		{"fail/vt52-mode", "\x1b[?2l\x1bZ", ""},
		{"fail/locking-shifts", "\x1bn\x1bo\x1b~\x1b}\x1b|.", "."},
		{"fail/single-shifts", "\x1bN\x1bO.", "."},
		{"ok/continuation-80-9f", "\u2014 \u0100 \U0001F600", "\u2014 \u0100 \U0001F600"},
		{"fail/lone-c2-joins-c1", "\xc2\xc2\x9b\x9b6n", "\ufffd\ufffd6n"},
		{"fail/c2-around-dropped-csi", "\xc2\x1b[6n\x9b21t", "\ufffd\ufffd21t"},
		{"fail/lead-around-dropped-osc", "\xe2\x1b]0;x\a\x80\x9d", "\ufffd\ufffd\ufffd"},
		{"ok/charset-g1-g3", "\x1b)0\x1b*B\x1b+A\x1b-A\x1b#8", "\x1b)0\x1b*B\x1b+A\x1b-A\x1b#8"},
		{"fail/c1-csi", "a\u009b21tb", "a21tb"},
		{"fail/c1-osc", "\u009d52;c;eA==\u009c", "52;c;eA=="},
		{"fail/modify-keys", "\x1b[>4;2m", ""},
		{"fail/media-copy", "\x1b[5i", ""},
		{"fail/overlong-csi", "\x1b[" + strings.Repeat("1;", 100) + "m", ""},
		{"fail/can-aborts", "\x1b[1\x18x", "x"},
		{"fail/osc-then-csi", "\x1b]0;t\x1b[1mB", "\x1b[1mB"},
		// Nothing may clear the viewer's scrollback, where the warning
		// about a recording that is not intact stands.
		{"ok/erase-display", "\x1b[J\x1b[0J\x1b[1J\x1b[2J\x1b[?2J", "\x1b[J\x1b[0J\x1b[1J\x1b[2J\x1b[?2J"},
		{"fail/erase-scrollback", "a\x1b[3Jb\x1b[?3J\x1b[03J\x1b[2;3J\x1b[4J", "ab"},
		{"fail/ris-soft-reset", "a\x1bcb", "a" + resetBase + "\x1b[H\x1b[2Jb"},
		{"fail/ris-leaves-alt-screen", "\x1b[?1049h\x1bc", "\x1b[?1049h\x1b[?1049l" + resetBase + "\x1b[H\x1b[2J"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			sw := NewSafeWriter(&out)
			if _, err := sw.Write([]byte(tc.in)); err != nil {
				t.Fatal(err)
			}
			if got := out.String(); got != tc.want {
				t.Errorf("got %q; want %q", got, tc.want)
			}
			// Split at every point: the same result.
			for i := 0; i <= len(tc.in); i++ {
				var out bytes.Buffer
				sw := NewSafeWriter(&out)
				sw.Write([]byte(tc.in[:i]))
				sw.Write([]byte(tc.in[i:]))
				if got := out.String(); got != tc.want {
					t.Fatalf("split at %d: got %q; want %q", i, got, tc.want)
				}
			}
		})
	}
}

// resetBase is what Reset always writes: scroll region (cursor kept),
// attributes, insert mode off, autowrap on, cursor shown.
const resetBase = "\x1b7\x1b[r\x1b8\x1b[0m\x1b[4l\x1b[?7h\x1b[?25h"

// TestSafeWriterResetRestoresTerminal: whatever of the viewer's terminal
// the sequences that pass can change, Reset changes back.
func TestSafeWriterResetRestoresTerminal(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"ok/nothing", "", resetBase},
		{"ok/alt-screen-1049", "\x1b[?1049h", "\x1b[?1049l" + resetBase},
		{"ok/alt-screen-1047", "\x1b[?1047h", "\x1b[?1047l" + resetBase},
		{"ok/alt-screen-47", "\x1b[?47h", "\x1b[?47l" + resetBase},
		{"ok/alt-screen-in-list", "\x1b[?25;1049h", "\x1b[?1049l" + resetBase},
		{"ok/alt-screen-left", "\x1b[?1049h\x1b[?1049l", resetBase},
		{"ok/alt-screen-left-otherwise", "\x1b[?1049h\x1b[?47l", resetBase},
		{"ok/scroll-region-insert-autowrap-cursor", "\x1b[5;10r\x1b[4h\x1b[?7l\x1b[?25l\x1b[1;7m", resetBase},
		{"ok/shift-out", "\x0e", "\x1b7\x1b[r\x1b8\x0f\x1b[0m\x1b[4l\x1b[?7h\x1b[?25h"},
		{"ok/g0-line-drawing", "\x1b(0q", "\x1b7\x1b[r\x1b8\x1b(B\x1b[0m\x1b[4l\x1b[?7h\x1b[?25h"},
		{"ok/g0-back-to-ascii", "\x1b(0q\x1b(B", resetBase},
		{"ok/cursor-style", "\x1b[5 q", resetBase + "\x1b[0 q"},
		{"ok/tab-stops-cleared", "\x1b[3g", resetBase + "\x1b[?5W"},
		{"ok/tab-stop-set", "\x1bH", resetBase + "\x1b[?5W"},
		{"ok/all", "\x1b[?1049h\x0e\x1b(0\x1b[2 q\x1bH", "\x1b[?1049l\x1b7\x1b[r\x1b8\x0f\x1b(B\x1b[0m\x1b[4l\x1b[?7h\x1b[?25h\x1b[0 q\x1b[?5W"},
		{"ok/full-reset-ris", "\x1b[?1049h\x0e\x1b(0\x1b[2 q\x1bH\x1bc", resetBase},
		{"ok/changes-after-ris", "\x1bc\x1b[?1049h\x1b(0", "\x1b[?1049l\x1b7\x1b[r\x1b8\x1b(B\x1b[0m\x1b[4l\x1b[?7h\x1b[?25h"},
		{"fail/dropped-changes-nothing", "\x1b[?1000h\x1b[2h\x1b=\x1b[?2004h", resetBase},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			sw := NewSafeWriter(&out)
			if _, err := sw.Write([]byte(tc.in)); err != nil {
				t.Fatal(err)
			}
			out.Reset()
			if err := sw.Reset(); err != nil {
				t.Fatal(err)
			}
			if got := out.String(); got != tc.want {
				t.Errorf("Reset wrote %q; want %q", got, tc.want)
			}
			// Reset forgets what it restored.
			out.Reset()
			if err := sw.Reset(); err != nil {
				t.Fatal(err)
			}
			if got := out.String(); got != resetBase {
				t.Errorf("second Reset wrote %q; want %q", got, resetBase)
			}
		})
	}
}

func TestPlayPaceAndNeutralisation(t *testing.T) {
	cast := `{"version": 2, "width": 80, "height": 24}
[0.5, "o", "one "]
[1.5, "o", "\u001b]52;c;cm0gLXJmIH4=\u0007two "]
[1.5, "i", "ignored input"]
[11.5, "o", "three \udbff\udeff"]
`
	tests := []struct {
		name  string
		opts  PlayOptions
		pause []time.Duration
	}{
		{"ok/recorded-pace", PlayOptions{}, []time.Duration{500 * time.Millisecond, time.Second, 10 * time.Second}},
		{"ok/double-speed", PlayOptions{Speed: 2}, []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, 5 * time.Second}},
		{"ok/idle-limit", PlayOptions{IdleLimit: 2 * time.Second}, []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var pauses []time.Duration
			tc.opts.Sleep = func(_ context.Context, d time.Duration) error {
				pauses = append(pauses, d)
				return nil
			}
			rd, err := NewReader(strings.NewReader(cast))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := Play(context.Background(), &out, rd, tc.opts); err != nil {
				t.Fatal(err)
			}
			if want := "one two three \uFFFD" + resetBase; out.String() != want {
				t.Errorf("output %q; want %q", out.String(), want)
			}
			if len(pauses) != len(tc.pause) {
				t.Fatalf("pauses %v; want %v", pauses, tc.pause)
			}
			for i := range pauses {
				if d := pauses[i] - tc.pause[i]; d > time.Microsecond || d < -time.Microsecond {
					t.Errorf("pause %d = %v; want %v", i, pauses[i], tc.pause[i])
				}
			}
		})
	}
	if _, err := NewReader(strings.NewReader(cast)); err != nil {
		t.Fatal(err)
	}
	rd, _ := NewReader(strings.NewReader(cast))
	if err := Play(context.Background(), &bytes.Buffer{}, rd, PlayOptions{Speed: -1}); err == nil {
		t.Error("negative speed accepted")
	}
}

// TestPlayBulk: an exec or subsystem channel without a pty keeps only the
// head of its output; Play shows it if it is text and otherwise a line
// naming the command, the bytes each way and the SHA-256 instead of the
// bytes.
func TestPlayBulk(t *testing.T) {
	tests := []struct {
		name    string
		meta    Meta
		head    int // Options.BulkHead; 0 means the default
		output  string
		want    []string // in what Play writes
		notWant []string
	}{
		{"ok/text-head", Meta{Command: "uptime"}, 0, "up 3 days\n", []string{"up 3 days\n"}, []string{"not shown"}},
		// Text is kept past the head, and played past what Play holds.
		{"ok/long-text", Meta{Command: "journalctl"}, 0, strings.Repeat("a line of the log\n", 100000) + "the end\n", []string{"the end\n"}, []string{"not shown"}},
		{"ok/head-cut-inside-character", Meta{Command: "cat notes"}, 4, "abc\u20ac and more", []string{"abc\uFFFD"}, []string{"not shown"}},
		{"ok/pty-kept-in-full", Meta{Command: "cat blob", PTY: true}, 0, "a\xffb\x00c", []string{"a\uFFFDb"}, []string{"not shown"}},
		{"ok/shell-without-pty", Meta{}, 0, "a\xffb", []string{"a\uFFFDb"}, []string{"not shown"}},
		{"fail/binary-head", Meta{Command: "cat blob"}, 0, "PK\x03\x04\xff\xfe\x00\x01",
			[]string{"binary output not shown: cat blob", "8 bytes out", "0 bytes in", "sha256 " + sha256Hex([]byte("PK\x03\x04\xff\xfe\x00\x01"))},
			[]string{"PK", "\uFFFD"}},
		{"fail/nul-in-head", Meta{Command: "subsystem: sftp"}, 0, "\x00\x00\x00\x05\x01\x00\x00\x00\x03",
			[]string{"binary output not shown: subsystem: sftp", "9 bytes out"}, []string{"\x00", "\x01"}},
		{"fail/command-escaped", Meta{Command: "cat \x1b]52;c;eA==\a"}, 0, "\xff",
			[]string{`binary output not shown: cat \x1b]52;c;eA==\x07`}, []string{"\x1b]52"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A head of text is kept past BulkHead, up to BulkText: the
			// cases with a head keep to it.
			env := newEnv(t, func(o *Options) { o.BulkHead, o.BulkText = tc.head, tc.head })
			m := tc.meta
			m.Identity, m.Login, m.Host = "github:1", "root", "web1"
			s, err := env.rec.Start(context.Background(), m)
			if err != nil {
				t.Fatal(err)
			}
			mustWrite(t, s.Stdout(), tc.output)
			if _, err := s.Close(context.Background(), End{ExitStatus: 0}); err != nil {
				t.Fatal(err)
			}
			got := playFile(t, s.Path(), PlayOptions{})
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("played %q; want %q in it", got, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(got, w) {
					t.Errorf("played %q; want no %q in it", got, w)
				}
			}
		})
	}
	// The golden scp download: its head is binary.
	_, path := bulkSession(t)
	got := playFile(t, path, PlayOptions{})
	for _, w := range []string{"scp -f big.bin", "102469 bytes out", "3 bytes in",
		"sha256 140c060c37636275c60b3d3abb3bbfaa275a1f68c36982f1ebc8dbd491f3d4ab"} {
		if !strings.Contains(got, w) {
			t.Errorf("played %q; want %q in it", got, w)
		}
	}
	if strings.Contains(got, "C0644") {
		t.Errorf("played %q; want the summary instead of the head", got)
	}
}

// playFile plays the recording at path without pauses and returns what
// Play wrote.
func playFile(t *testing.T, path string, opts PlayOptions) string {
	t.Helper()
	rd := openCast(t, path)
	opts.Sleep = func(context.Context, time.Duration) error { return nil }
	var out bytes.Buffer
	if err := Play(context.Background(), &out, rd, opts); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// TestPlayNoReset: the reset sequence is for a terminal; NoReset leaves it
// out (for output to a file or a pipe).
func TestPlayNoReset(t *testing.T) {
	cast := "{\"version\": 2, \"width\": 80, \"height\": 24}\n[0.5, \"o\", \"\\u001b[?1049hone\"]\n"
	tests := []struct {
		name string
		opts PlayOptions
		want string
	}{
		{"ok/reset", PlayOptions{}, "\x1b[?1049hone\x1b[?1049l" + resetBase},
		{"ok/no-reset", PlayOptions{NoReset: true}, "\x1b[?1049hone"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rd, err := NewReader(strings.NewReader(cast))
			if err != nil {
				t.Fatal(err)
			}
			tc.opts.Sleep = func(context.Context, time.Duration) error { return nil }
			var out bytes.Buffer
			if err := Play(context.Background(), &out, rd, tc.opts); err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.want {
				t.Errorf("played %q; want %q", out.String(), tc.want)
			}
		})
	}
}

// TestSafeWriterASCII: for a terminal that does not decode UTF-8, every
// character that is not ASCII is one '?', so that no byte 0x80-0x9F of
// harmless UTF-8 text reaches a terminal that would take it for a C1
// control (0x9B CSI, 0x9D OSC, 0x90 DCS), whatever the split.
func TestSafeWriterASCII(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"ok/ascii", "plain \x1b[1mtext\x1b[0m\r\n", "plain \x1b[1mtext\x1b[0m\r\n"},
		{"fail/csi-in-latin1", "\u00db6n", "?6n"},                   // C3 9B
		{"fail/osc-in-latin1", "\u00dd52;c;aGk=\a", "?52;c;aGk=\a"}, // C3 9D
		{"fail/dcs-in-latin1", "\u00d0$q\"p\u00dc", "?$q\"p?"},      // C3 90, C3 9C
		{"fail/wide-and-invalid", "\u2014\U0001F600\xff.", "???."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; i <= len(tc.in); i++ {
				var out bytes.Buffer
				sw := NewSafeWriter(&out)
				sw.ASCII = true
				sw.Write([]byte(tc.in[:i]))
				sw.Write([]byte(tc.in[i:]))
				if got := out.String(); got != tc.want {
					t.Fatalf("split at %d: got %q; want %q", i, got, tc.want)
				}
			}
		})
	}
	// Play in ASCII keeps the summary of binary output ASCII too.
	cast := `{"version": 2, "width": 80, "height": 24, "command": "cat \u00db6n", "sallyport": {"format": 1, "id": "x", "pty": false}}
[0.5, "o", "\u0000\u00ff"]
`
	rd, err := NewReader(strings.NewReader(cast))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Play(context.Background(), &out, rd, PlayOptions{ASCII: true, NoReset: true, Sleep: func(context.Context, time.Duration) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.Contains(got, "cat ?6n") || strings.ContainsFunc(got, func(r rune) bool { return r > 0x7e }) {
		t.Errorf("played %q; want only ASCII, the command as cat ?6n", got)
	}
}

// TestSnapshot: a snapshot holds the bytes read, in memory or past the
// limit in a temporary file that is gone from its folder, and does not
// change when the file it was read from does.
func TestSnapshot(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int64
	}{{"ok/in-memory", 1 << 20}, {"ok/temporary-file", 10}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "x.cast")
			want := bytes.Repeat([]byte("recorded\n"), 100)
			if err := os.WriteFile(path, want, 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			tmp := t.TempDir()
			s, err := NewSnapshot(f, tc.limit, tmp)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := os.WriteFile(path, bytes.ToUpper(want), 0o600); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				got, err := io.ReadAll(s.Reader())
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) || s.Size() != int64(len(want)) {
					t.Fatalf("read %d bytes %.20q, size %d; want the %d bytes first read", len(got), got, s.Size(), len(want))
				}
			}
			if names, _ := os.ReadDir(tmp); len(names) != 0 {
				t.Errorf("temporary folder holds %v; want the copy out of reach", names)
			}
			if err := s.Close(); err != nil {
				t.Error(err)
			}
		})
	}
}
