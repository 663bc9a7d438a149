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
	// ASCII writes each character that is not ASCII as '?', for a
	// terminal that does not decode UTF-8: one reading Latin-1 or another
	// 8-bit charset takes bytes of harmless UTF-8 text, such as 0x9B in
	// "Û" (C3 9B), for C1 controls (0x9B is CSI).
	ASCII bool

	w     io.Writer
	state int
	seq   []byte // the escape sequence being collected
	u8    []byte // an incomplete UTF-8 sequence at the end of the last write
	c2    bool   // in a string, the last byte was 0xC2 (a C1 ST may follow)
	alt   int    // the mode that turned the alternate screen on; 0 if off
	shift bool   // SO is in effect
	g0    bool   // G0 holds a character set other than ASCII
	style bool   // the cursor style was set
	tabs  bool   // tab stops were set or cleared
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
			case c == 'c':
				// RIS would also clear the viewer's scrollback, where a
				// warning about the recording may stand: a soft reset
				// (what Reset undoes) and a cleared screen instead.
				out = sw.appendReset(out)
				out = append(out, "\x1b[H\x1b[2J"...)
				sw.state = sGround
			case bytes.IndexByte([]byte("78DEHM"), c) >= 0:
				out = append(out, sw.seq...)
				sw.tabs = sw.tabs || c == 'H'
				sw.state = sGround
			default:
				// ESC Z (identify), ESC = and ESC > (keypad modes: they
				// change what the viewer's keys send), stray ST and
				// anything unknown.
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
					if sw.seq[1] == '(' {
						sw.g0 = c != 'B'
					}
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
					out = sw.appendCSI(out, sw.seq[2:])
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
	if sw.ASCII {
		out = appendASCII(out[:0], out)
	}
	sw.out = out
	if len(out) > 0 {
		if _, err := sw.w.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Reset writes what restores the viewer's terminal after a replay: every
// mode the sequences SafeWriter lets through can change. It leaves the
// alternate screen (only if it is on: leaving restores the cursor saved on
// entering), resets the scroll region (keeping the cursor where it is),
// shifts back to G0 and puts ASCII in it, resets attributes and insert
// mode, turns autowrap on, shows the cursor and, if they were changed,
// restores the cursor style and tab stops.
func (sw *SafeWriter) Reset() error {
	b := sw.appendReset(nil)
	sw.state, sw.c2 = sGround, false
	sw.u8 = sw.u8[:0]
	_, err := sw.w.Write(b)
	return err
}

// appendReset appends what Reset writes and forgets the modes it undoes.
func (sw *SafeWriter) appendReset(b []byte) []byte {
	if sw.alt != 0 {
		b = append(b, "\x1b[?"...)
		b = strconv.AppendInt(b, int64(sw.alt), 10)
		b = append(b, 'l')
	}
	// DECSTBM homes the cursor; DECSC/DECRC keep it, and the attributes
	// and character sets DECRC restores are reset after.
	b = append(b, "\x1b7\x1b[r\x1b8"...)
	if sw.shift {
		b = append(b, 0x0f)
	}
	if sw.g0 {
		b = append(b, "\x1b(B"...)
	}
	b = append(b, "\x1b[0m\x1b[4l\x1b[?7h\x1b[?25h"...)
	if sw.style {
		b = append(b, "\x1b[0 q"...)
	}
	if sw.tabs {
		b = append(b, "\x1b[?5W"...) // DECST8C: a stop every 8 columns
	}
	sw.alt, sw.shift, sw.g0, sw.style, sw.tabs = 0, false, false, false, false
	return b
}

// ASCII returns p with each character that is not ASCII, and each byte
// that is not part of valid UTF-8, replaced by '?': for a terminal that
// does not decode UTF-8 (see SafeWriter.ASCII).
func ASCII(p []byte) []byte { return appendASCII(make([]byte, 0, len(p)), p) }

// appendASCII appends p to dst as ASCII does; dst may be p[:0].
func appendASCII(dst, p []byte) []byte {
	for i := 0; i < len(p); {
		if p[i] < utf8.RuneSelf {
			dst = append(dst, p[i])
			i++
			continue
		}
		_, size := utf8.DecodeRune(p[i:])
		dst = append(dst, '?')
		i += size
	}
	return dst
}

// appendSafeRune appends r unless it is a C1 control (U+0080..U+009F, e.g.
// 8-bit CSI), which is dropped; utf8.RuneError stands for invalid bytes.
func appendSafeRune(b []byte, r rune) []byte {
	if r >= 0x80 && r <= 0x9f {
		return b
	}
	return utf8.AppendRune(b, r)
}

// Modes set and reset (CSI Pm h/l, CSI ? Pm h/l) that pass: only those a
// replay needs to look right, and all of them undone by Reset. Of the
// standard modes only insert (IRM); keyboard lock (KAM), local echo (SRM),
// new line (LNM) and the others are dropped. Of the private modes, autowrap,
// cursor visibility, the alternate screens and save/restore cursor (1048).
// Dropped among others: cursor keys and keypad (they change what the
// viewer's keys send), mouse and focus reporting and bracketed paste (they
// make the terminal send input), origin mode, reverse video, column mode
// (it resizes the window), VT52 mode.
var (
	safeModes        = map[int]bool{4: true}
	safePrivateModes = map[int]bool{7: true, 25: true, 47: true, 1047: true, 1048: true, 1049: true}
	altModes         = map[int]bool{47: true, 1047: true, 1049: true}
)

// appendCSI appends a CSI sequence to out if it is allowed, with only its
// allowed modes if it sets or resets modes, and notes what it changes that
// Reset must undo. body is everything after "ESC [".
func (sw *SafeWriter) appendCSI(out, body []byte) []byte {
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
			return out
		}
	}
	for _, c := range inter {
		if c < 0x20 || c > 0x2f {
			return out
		}
	}
	whole := func() []byte {
		out = append(out, 0x1b, '[')
		if private != 0 {
			out = append(out, private)
		}
		out = append(out, params...)
		out = append(out, inter...)
		return append(out, final)
	}
	switch {
	case (private == 0 || private == '?') && len(inter) == 0 && (final == 'h' || final == 'l'):
		return sw.appendModes(out, private, params, final)
	case private == 0 && len(inter) == 0:
		// Display-only: cursor movement, erasing, editing, scrolling, SGR,
		// tab stops, scroll region, save/restore cursor. Not: DA (c), DSR
		// (n), window operations and reports (t), media copy (i),
		// DECREQTPARM (x), LEDs (q).
		if bytes.IndexByte([]byte("@ABCDEFGHIJKLMPSTXZ`abdefgmrsu"), final) < 0 {
			return out
		}
		if final == 'J' && !eraseInDisplay(params) {
			return out
		}
		// REP repeats the last character: a count of 65535 turns a few
		// recorded bytes into a flood on the viewer's screen.
		if final == 'b' && !(len(params) <= 3 && bytes.IndexByte(params, ';') < 0) {
			return out
		}
		sw.tabs = sw.tabs || final == 'g'
		return whole()
	case private == 0 && string(inter) == " " && final == 'q': // cursor style
		sw.style = true
		return whole()
	case private == 0 && string(inter) == "!" && final == 'p': // soft reset
		return whole()
	case private == '?' && len(inter) == 0 && (final == 'J' || final == 'K'):
		if final == 'J' && !eraseInDisplay(params) {
			return out
		}
		return whole()
	}
	return out
}

// eraseInDisplay reports whether the parameters of ED or DECSED (CSI [?] Ps
// J) erase only the screen: below, above or all of it. Ps 3 (xterm) erases
// the scrollback, where a warning about the recording may stand.
func eraseInDisplay(params []byte) bool {
	switch string(params) {
	case "", "0", "1", "2":
		return true
	}
	return false
}

// appendModes appends a mode set or reset with only the modes that pass,
// or nothing if none does, and follows the alternate screen.
func (sw *SafeWriter) appendModes(out []byte, private byte, params []byte, final byte) []byte {
	safe := safeModes
	if private == '?' {
		safe = safePrivateModes
	}
	start := len(out)
	out = append(out, 0x1b, '[')
	if private != 0 {
		out = append(out, private)
	}
	n := 0
	for f := range bytes.SplitSeq(params, []byte(";")) {
		m, err := strconv.Atoi(string(f))
		if err != nil || !safe[m] {
			continue
		}
		if n > 0 {
			out = append(out, ';')
		}
		out = strconv.AppendInt(out, int64(m), 10)
		n++
		if private == '?' && altModes[m] {
			if final == 'h' {
				sw.alt = m
			} else {
				sw.alt = 0
			}
		}
	}
	if n == 0 {
		return out[:start]
	}
	return append(out, final)
}
