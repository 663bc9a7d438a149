package recording

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"unicode/utf8"
)

func addCastSeeds(f *testing.F) {
	f.Add([]byte("{\"version\": 2, \"width\": 80, \"height\": 24}\n[0.1, \"o\", \"hi\"]\n"))
	f.Add([]byte("{\"version\": 2, \"width\": 80, \"height\": 24}\n[0.1, \"o\", \"hi\"]"))
	f.Add([]byte("{\"version\": 2, \"width\": 80, \"height\": 24}\n[1e308, \"r\", \"80x24\"]\n[-1, \"o\", \"\"]\n"))
	f.Add([]byte("{\"version\": 1}\n"))
	f.Add([]byte("[]\n"))
	if b, err := os.ReadFile(filepath.Join("testdata", "session.cast")); err == nil {
		f.Add(b)
	}
}

// FuzzReader checks that no input makes the asciicast parser panic or
// return an event that breaks its own rules.
func FuzzReader(f *testing.F) {
	addCastSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		rd, err := NewReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		if rd.Header.Version != 2 || rd.Header.Width <= 0 || rd.Header.Height <= 0 {
			t.Fatalf("accepted header %+v", rd.Header)
		}
		for {
			e, err := rd.Next()
			if err != nil {
				return
			}
			if e.Time < 0 || e.Line < 2 || e.Offset <= 0 || e.Offset >= int64(len(data)) {
				t.Fatalf("event %+v", e)
			}
		}
	})
}

// FuzzVerify checks Verify on arbitrary input: no panic, and a problem's
// byte range always lies within the file.
func FuzzVerify(f *testing.F) {
	addCastSeeds(f)
	key := testSigner(f).PublicKey()
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := Verify(bytes.NewReader(data), VerifyOptions{Key: key})
		if err != nil {
			t.Fatal(err) // a bytes.Reader never fails
		}
		if p := rep.Problem; p != nil {
			if p.Offset < 0 || p.End < p.Offset || p.End > int64(len(data)) {
				t.Fatalf("problem range %d-%d outside a %d-byte file: %v", p.Offset, p.End, len(data), p)
			}
			return
		}
		if !rep.Final || !rep.Signed {
			t.Fatalf("intact without a signed final record: %+v", rep)
		}
	})
}

// decscl matches DECSCL (CSI Ps ; Ps " p), which can turn 8-bit controls on.
var decscl = regexp.MustCompile(`\x1b\[[0-9;]*"p`)

// eraseDisplay matches ED and DECSED (CSI [?] Ps J).
var eraseDisplay = regexp.MustCompile(`\x1b\[\??([0-9:;]*)J`)

// csiAt matches a well-formed CSI sequence: private marker, parameters,
// intermediates, final byte.
var csiAt = regexp.MustCompile(`^\x1b\[([<=>?]?)([0-9:;]*)([ -/]*)([@-~])`)

// checkModes fails unless every CSI sequence in b is well formed and sets
// or resets only the modes replay lets through (insert; autowrap, cursor
// visibility, alternate screens), so that no dropped mode (keyboard lock,
// local echo, cursor keys, mouse, focus, bracketed paste...) reaches the
// viewer's terminal.
func checkModes(t *testing.T, b, in []byte) {
	t.Helper()
	allowed := map[string]map[string]bool{
		"":  {"4": true},
		"?": {"7": true, "25": true, "47": true, "1047": true, "1048": true, "1049": true},
	}
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte("\x1b["))
		if j < 0 {
			return
		}
		i += j
		m := csiAt.FindSubmatch(b[i:])
		if m == nil {
			t.Fatalf("malformed CSI at %d in output %q of input %q", i, b, in)
		}
		switch f := m[4][0]; {
		case f == 'h' || f == 'l':
			ok := allowed[string(m[1])]
			if len(m[3]) > 0 || ok == nil {
				t.Fatalf("mode sequence %q in output %q of input %q", m[0], b, in)
			}
			for _, p := range bytes.Split(m[2], []byte(";")) {
				if !ok[string(p)] {
					t.Fatalf("dropped mode %q in %q in output %q of input %q", p, m[0], b, in)
				}
			}
		case string(m[1]) == "?" && (f == 's' || f == 'r'):
			t.Fatalf("private modes saved or restored by %q in output %q of input %q", m[0], b, in)
		}
		i += len(m[0])
	}
}

// FuzzSafeWriter checks that nothing that starts a string sequence, an
// answerback or a C1 control survives, nor anything that changes how the
// terminal decodes later bytes (leaving UTF-8, 8-bit controls, VT52 mode,
// locking shifts), nor a mode replay drops (keypad, keyboard lock, local
// echo, mouse, focus, bracketed paste...), however the input is split; and
// that Reset sets only modes that pass.
func FuzzSafeWriter(f *testing.F) {
	for _, s := range []string{"\x1b]52;c;eA==\a", "\x1bP1$r\x1b\\", "\u009b6n", "\x1b[6n", "a\x1b[1mb", "\x1b\x1b]0;x\a",
		"\x1b%@\xdf\x9d52;c;eA==\a", "\x1b G\x1b[62;2\"p", "\x1b%/G\x1b[?2l", "\x1b(0\x1b%G\x1bn",
		"\x1b[2h\x1b[12l\x1b[20h\x1b[4h", "\x1b[?1;25;1000;1004;1006;2004h\x1b=", "\x1b[?1049h\x1b[?0001l\x1b[?1000r",
		"\x1b[3J\x1b[?3J\x1bc\x1b[2J"} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		var out bytes.Buffer
		sw := NewSafeWriter(&out)
		i := min(int(split), len(data))
		sw.Write(data[:i])
		sw.Write(data[i:])
		got := out.Bytes()
		checkModes(t, got, data)
		for _, bad := range []string{"\x1b]", "\x1bP", "\x1b_", "\x1b^", "\x1bX", "\x1bZ", "\x05", "\x1b[6n", "\x1b[c",
			"\x1b%", "\x1b ", "\x1b[?2l", "\x1bn", "\x1bo", "\x1b~", "\x1b}", "\x1b|", "\x1b=", "\x1b>", "\x1bc"} {
			if bytes.Contains(got, []byte(bad)) {
				t.Fatalf("%q in output %q of input %q", bad, got, data)
			}
		}
		if decscl.Match(got) {
			t.Fatalf("DECSCL in output %q of input %q", got, data)
		}
		// Erasing in display clears at most the screen, never the
		// scrollback (Ps 3), where a warning may stand.
		for _, m := range eraseDisplay.FindAllSubmatch(got, -1) {
			if p := string(m[1]); p != "" && p != "0" && p != "1" && p != "2" {
				t.Fatalf("%q in output %q of input %q", m[0], got, data)
			}
		}
		// Valid UTF-8 without C1 controls: no bytes left around what was
		// dropped can join into one.
		if !utf8.Valid(got) {
			t.Fatalf("invalid UTF-8 in output %q of input %q", got, data)
		}
		for _, r := range string(got) {
			if r >= 0x80 && r <= 0x9f {
				t.Fatalf("C1 control in output %q of input %q", got, data)
			}
		}
		out.Reset()
		if err := sw.Reset(); err != nil {
			t.Fatal(err)
		}
		checkModes(t, out.Bytes(), data)
	})
}

// FuzzText checks that any bytes, written in two parts, are stored as
// valid JSON string text that decodes back to exactly those bytes.
func FuzzText(f *testing.F) {
	f.Add([]byte("h\xc3\xa9llo \xff\x00\"\\"), uint8(2))
	f.Add([]byte("\U0010FE41\xf4\x8f\xb9"), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		i := min(int(split), len(data))
		b, carry := appendText([]byte(`"`), nil, data[:i], false)
		b, carry = appendText(b, carry, data[i:], true)
		if carry != nil {
			t.Fatalf("carry %q after final", carry)
		}
		b = append(b, '"')
		if !utf8.Valid(b) {
			t.Fatalf("invalid UTF-8 stored: %q", b)
		}
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatalf("stored text %q is not a JSON string: %v", b, err)
		}
		if got := DecodeBytes(s); !bytes.Equal(got, data) {
			t.Fatalf("decoded %q; want %q", got, data)
		}
	})
}
