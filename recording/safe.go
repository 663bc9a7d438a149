package recording

import (
	"bytes"
	"io"
	"strconv"
	"unicode/utf8"
)

// SafeWriter passes terminal output to a viewer's terminal with everything
// that could act beyond the screen removed (see "Replay" in the package
// doc). It keeps its state across writes, so a sequence split between two
// events is still recognised. What it writes is valid UTF-8 without C1
// controls: a byte that is not part of valid UTF-8 becomes U+FFFD, so that
// no bytes left around a dropped sequence can join into a C1 control. It is
// not safe for concurrent use.
type SafeWriter struct {
	w     io.Writer
	state int
	seq   []byte // the escape sequence being collected
	u8    []byte // an incomplete UTF-8 sequence at the end of the last write
	c2    bool   // in a string, the last byte was 0xC2 (a C1 ST may follow)
	alt   bool   // the alternate screen is on
	shift bool   // SO is in effect
	out   []byte
}

// NewSafeWriter returns a SafeWriter writing to w.
func NewSafeWriter(w io.Writer) *SafeWriter { return &SafeWriter{w: w} }

// Parser states.
const (
	sGround   = iota
	sEsc      // after ESC
	sEscInter // ESC followed by intermediate bytes
	sCSI      // collecting a CSI sequence
	sString   // inside OSC, DCS, SOS, PM or APC: dropped
	sStrEsc   // ESC inside a string (ST is ESC \)
)

// maxSeq bounds a collected sequence; longer ones are dropped whole.
const maxSeq = 64

// Write filters p and writes the result. It returns len(p) unless the
// underlying writer fails.
func (sw *SafeWriter) Write(p []byte) (int, error) {
	out := sw.out[:0]
	start := 0 // start of a run of plain text in ground state
	flushRun := func(i int) {
		if sw.state == sGround && i > start {
			out = append(out, p[start:i]...)
		}
	}
	if len(sw.u8) > 0 {
		// Complete the rune the last write left unfinished.
		k := 0
		for k < len(p) && !utf8.FullRune(append(sw.u8, p[:k]...)) {
			k++
		}
		rb := append(sw.u8, p[:k]...)
		if !utf8.FullRune(rb) {
			sw.u8 = rb
			return len(p), nil
		}
		sw.u8 = rb[:0]
		if r, size := utf8.DecodeRune(rb); size == len(rb) {
			out = appendSafeRune(out, r)
			start = k
		} else {
			// Broken by its last byte, which starts afresh.
			out = utf8.AppendRune(out, utf8.RuneError)
			start = k - 1
		}
	}
	for i := start; i < len(p); i++ {
		c := p[i]
		switch sw.state {
		case sGround:
			if c >= 0x20 && c < 0x7f {
				continue
			}
			if c >= 0x80 {
				if !utf8.FullRune(p[i:]) {
					flushRun(i)
					sw.u8 = append(sw.u8[:0], p[i:]...)
					start = len(p)
					i = len(p)
					continue
				}
				r, size := utf8.DecodeRune(p[i:])
				if r != utf8.RuneError && (r < 0x80 || r > 0x9f) {
					i += size - 1 // text, part of the run
					continue
				}
				flushRun(i)
				out = appendSafeRune(out, r)
				start = i + size
				i += size - 1
				continue
			}
			flushRun(i)
			start = i + 1
			switch c {
			case 0x1b:
				sw.state = sEsc
				sw.seq = append(sw.seq[:0], c)
			case '\a', '\b', '\t', '\n', '\v', '\f', '\r':
				out = append(out, c)
			case 0x0e:
				sw.shift = true
				out = append(out, c)
			case 0x0f:
				sw.shift = false
				out = append(out, c)
			}
			// Other C0 controls (ENQ answerback among them) and DEL are
			// dropped.
		case sEsc:
			sw.seq = append(sw.seq, c)
			switch {
			case c == '[':
				sw.state = sCSI
			case c == ']' || c == 'P' || c == 'X' || c == '^' || c == '_':
				sw.state = sString
			case c >= 0x20 && c <= 0x2f:
				sw.state = sEscInter
			case c == 0x1b:
				sw.seq = append(sw.seq[:0], c)
			case bytes.IndexByte([]byte("78=>DEHMc"), c) >= 0:
				out = append(out, sw.seq...)
				sw.state = sGround
			default:
				// ESC Z (identify), stray ST and anything unknown.
				sw.state = sGround
			}
			start = i + 1
		case sEscInter:
			sw.seq = append(sw.seq, c)
			switch {
			case c >= 0x20 && c <= 0x2f && len(sw.seq) < 6:
			case c >= 0x30 && c <= 0x7e:
				// Character set designation and DEC line attributes pass.
				// Not ESC % (DOCS: leaving UTF-8 would make later UTF-8
				// text carry 8-bit C1 controls such as OSC 0x9D), ESC SP
				// (8-bit controls, conformance levels) and the others.
				if bytes.IndexByte([]byte("()*+-./#"), sw.seq[1]) >= 0 && len(sw.seq) == 3 {
					out = append(out, sw.seq...)
				}
				sw.state = sGround
			default:
				sw.state = sGround
			}
			start = i + 1
		case sCSI:
			sw.seq = append(sw.seq, c)
			switch {
			case c >= 0x40 && c <= 0x7e:
				if len(sw.seq) <= maxSeq {
					if ok, alt, set := allowCSI(sw.seq[2:]); ok {
						out = append(out, sw.seq...)
						if alt {
							sw.alt = set
						}
					}
				}
				sw.state = sGround
			case c >= 0x20 && c <= 0x3f:
				if len(sw.seq) > maxSeq {
					sw.seq = sw.seq[:maxSeq+1] // keep bounded; dropped at the end
				}
			case c == 0x1b:
				sw.state = sEsc
				sw.seq = append(sw.seq[:0], c)
			default:
				// CAN, SUB, other controls or non-ASCII abort the sequence.
				sw.state = sGround
			}
			start = i + 1
		case sString:
			switch c {
			case '\a', 0x18, 0x1a:
				sw.state = sGround
			case 0x1b:
				sw.state = sStrEsc
			case 0x9c:
				if sw.c2 {
					sw.state = sGround
				}
			}
			sw.c2 = c == 0xC2
			start = i + 1
		case sStrEsc:
			if c == '\\' {
				sw.state = sGround
			} else if c == 0x1b {
				sw.state = sStrEsc
			} else {
				// The string ended at ESC; c follows it.
				sw.state = sEsc
				sw.seq = append(sw.seq[:0], 0x1b)
				i--
			}
			sw.c2 = false
			start = i + 1
		}
	}
	flushRun(len(p))
	sw.out = out
	if len(out) > 0 {
		if _, err := sw.w.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Reset writes what restores the viewer's terminal after a replay: normal
// character set, attributes, cursor shown, main screen.
func (sw *SafeWriter) Reset() error {
	var b []byte
	if sw.shift {
		b = append(b, 0x0f)
	}
	b = append(b, "\x1b[0m\x1b[?25h"...)
	if sw.alt {
		b = append(b, "\x1b[?1049l"...)
	}
	sw.state, sw.c2, sw.alt, sw.shift = sGround, false, false, false
	sw.u8 = sw.u8[:0]
	_, err := sw.w.Write(b)
	return err
}

// appendSafeRune appends r unless it is a C1 control (U+0080..U+009F, e.g.
// 8-bit CSI), which is dropped; utf8.RuneError stands for invalid bytes.
func appendSafeRune(b []byte, r rune) []byte {
	if r >= 0x80 && r <= 0x9f {
		return b
	}
	return utf8.AppendRune(b, r)
}

// Private modes (CSI ? Pm h/l) that only affect the display: cursor keys,
// column mode, reverse video, origin, wraparound, blinking and visible
// cursor, alternate screens, bracketed paste. Mouse and focus reporting
// (which make the terminal send input), and everything else, are dropped.
var safeModes = map[int]bool{1: true, 3: true, 5: true, 6: true, 7: true, 12: true, 25: true, 47: true, 1047: true, 1048: true, 1049: true, 2004: true}

var altModes = map[int]bool{47: true, 1047: true, 1049: true}

// allowCSI decides a CSI sequence from its parameters, intermediates and
// final byte (body = everything after "ESC ["). alt reports a change of the
// alternate screen to set.
func allowCSI(body []byte) (ok, alt, set bool) {
	final := body[len(body)-1]
	body = body[:len(body)-1]
	var private byte
	if len(body) > 0 && body[0] >= '<' && body[0] <= '?' {
		private = body[0]
		body = body[1:]
	}
	params := body
	var inter []byte
	for i, c := range body {
		if c >= 0x20 && c <= 0x2f {
			params, inter = body[:i], body[i:]
			break
		}
	}
	for _, c := range params {
		if c < 0x30 || c > 0x3f || (c >= '<' && c <= '?') {
			return false, false, false
		}
	}
	for _, c := range inter {
		if c < 0x20 || c > 0x2f {
			return false, false, false
		}
	}
	switch {
	case private == 0 && len(inter) == 0:
		// Display-only: cursor movement, erasing, editing, scrolling, SGR,
		// tab stops, ANSI modes, save/restore cursor. Not: DA (c), DSR (n),
		// window operations and reports (t), media copy (i), DECREQTPARM
		// (x), LEDs (q).
		return bytes.IndexByte([]byte("@ABCDEFGHIJKLMPSTXZ`abdefghlmrsu"), final) >= 0, false, false
	case private == 0 && string(inter) == " " && final == 'q': // cursor style
		return true, false, false
	case private == 0 && string(inter) == "!" && final == 'p': // soft reset
		return true, false, false
	case private == '?' && len(inter) == 0 && (final == 'J' || final == 'K'):
		return true, false, false
	case private == '?' && len(inter) == 0 && (final == 'h' || final == 'l'):
		for f := range bytes.SplitSeq(params, []byte(";")) {
			n, err := strconv.Atoi(string(f))
			if err != nil || !safeModes[n] {
				return false, false, false
			}
			if altModes[n] {
				alt = true
			}
		}
		return true, alt, final == 'h'
	}
	return false, false, false
}
