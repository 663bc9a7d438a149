package recording

import (
	"bytes"
	"unicode/utf8"
)

// isText reports whether b is UTF-8 without NUL bytes, allowing an
// incomplete character at its end (where a head may cut one).
func isText(b []byte) bool {
	var ts textState
	return ts.next(b)
}

// completeUpTo returns the length of b without an incomplete character at
// its end.
func completeUpTo(b []byte) int {
	for i := len(b) - 1; i >= 0 && i > len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return i
			}
			break
		}
	}
	return len(b)
}

// textState follows whether a stream, write after write, is text: UTF-8
// without NUL bytes, a character possibly cut between two writes.
type textState struct {
	tail [utf8.UTFMax - 1]byte // the start of a character cut at the end of the last write
	n    int
}

// next reports whether p, following the writes before it, keeps the
// stream text, and remembers a character cut at its end.
func (ts *textState) next(p []byte) bool {
	if bytes.IndexByte(p, 0) >= 0 {
		return false
	}
	if ts.n > 0 {
		// Finish the cut character with the first bytes of p.
		var buf [2 * utf8.UTFMax]byte
		c := copy(buf[:], ts.tail[:ts.n])
		c += copy(buf[c:], p[:min(len(p), utf8.UTFMax-ts.n)])
		if !utf8.FullRune(buf[:c]) {
			ts.n = copy(ts.tail[:], buf[:c])
			return true // still cut: p is too short to finish it
		}
		r, size := utf8.DecodeRune(buf[:c])
		if r == utf8.RuneError && size <= 1 {
			return false
		}
		p = p[size-ts.n:]
		ts.n = 0
	}
	end := completeUpTo(p)
	if !utf8.Valid(p[:end]) {
		return false
	}
	ts.n = copy(ts.tail[:], p[end:])
	return true
}
