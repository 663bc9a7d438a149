package recording

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
)

// escapeBase is where bytes that are not valid UTF-8 are mapped: byte b is
// stored as the private-use code point escapeBase+b (see the package doc).
const escapeBase = 0x10FE00

func isEscapeRune(r rune) bool { return r >= escapeBase && r <= escapeBase+0xFF }

const hexDigits = "0123456789abcdef"

// appendText appends data to dst as the inside of a JSON string, after the
// incomplete UTF-8 sequence carry left by the previous call. Unless final,
// an incomplete sequence at the end of data is not written but returned as
// the new carry (a copy). With final, it is escaped byte by byte.
func appendText(dst, carry, data []byte, final bool) ([]byte, []byte) {
	if len(carry) > 0 {
		var tmp [8]byte
		t := append(tmp[:0], carry...)
		t = append(t, data[:min(len(data), utf8.UTFMax)]...)
		i := 0
		for i < len(carry) {
			if !final && !utf8.FullRune(t[i:]) {
				// Still incomplete: everything waits (len(data) < 3 here).
				return dst, append([]byte(nil), t[i:]...)
			}
			var n int
			dst, n = appendRune(dst, t[i:])
			i += n
		}
		data = data[i-len(carry):]
	}
	start := 0
	for i := 0; i < len(data); {
		// Skip runs of plain ASCII eight bytes at a time.
		for i+8 <= len(data) {
			m := special8(binary.LittleEndian.Uint64(data[i:]))
			if m != 0 {
				i += bits.TrailingZeros64(m) / 8 // the first special byte
				break
			}
			i += 8
		}
		if i == len(data) {
			break
		}
		c := data[i]
		if c >= 0x20 && c < utf8.RuneSelf && c != '"' && c != '\\' {
			i++
			continue
		}
		dst = append(dst, data[start:i]...)
		if c >= utf8.RuneSelf && !final && !utf8.FullRune(data[i:]) {
			return dst, append([]byte(nil), data[i:]...)
		}
		var n int
		dst, n = appendRune(dst, data[i:])
		i += n
		start = i
	}
	return append(dst, data[start:]...), nil
}

// appendRune appends the first rune of p (p not empty), escaped for a JSON
// string, and returns how many bytes of p it took.
func appendRune(dst, p []byte) ([]byte, int) {
	c := p[0]
	if c < utf8.RuneSelf {
		switch c {
		case '"', '\\':
			return append(dst, '\\', c), 1
		case '\n':
			return append(dst, '\\', 'n'), 1
		case '\r':
			return append(dst, '\\', 'r'), 1
		case '\t':
			return append(dst, '\\', 't'), 1
		}
		if c < 0x20 {
			return append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF]), 1
		}
		return append(dst, c), 1
	}
	r, size := utf8.DecodeRune(p)
	switch {
	case r == utf8.RuneError && size <= 1:
		return utf8.AppendRune(dst, escapeBase+rune(c)), 1
	case isEscapeRune(r):
		// A genuine code point in the escape range is stored as its bytes,
		// each escaped, so decoding is unambiguous.
		for _, b := range p[:size] {
			dst = utf8.AppendRune(dst, escapeBase+rune(b))
		}
		return dst, size
	}
	return append(dst, p[:size]...), size
}

// EncodeBytes returns the text a recording stores for the bytes p.
func EncodeBytes(p []byte) string {
	b, _ := appendText(nil, nil, p, true)
	return unescapeJSON(b)
}

// unescapeJSON undoes appendText's JSON escapes (for EncodeBytes only).
func unescapeJSON(b []byte) string {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			out = append(out, b[i])
			continue
		}
		i++
		switch b[i] {
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			out = append(out, unhex(b[i+3])<<4|unhex(b[i+4]))
			i += 4
		default:
			out = append(out, b[i])
		}
	}
	return string(out)
}

func unhex(c byte) byte {
	if c >= 'a' {
		return c - 'a' + 10
	}
	return c - '0'
}

// DecodeBytes returns the bytes that the text of an event stands for: the
// inverse of the escaping described in the package doc.
func DecodeBytes(s string) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if isEscapeRune(r) {
			out = append(out, byte(r-escapeBase))
		} else {
			out = append(out, s[i:i+size]...)
		}
		i += size
	}
	return out
}

// displayText returns s for a terminal: escaped bytes become U+FFFD.
func displayText(s string) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if isEscapeRune(r) || (r == utf8.RuneError && size == 1) {
			out = utf8.AppendRune(out, utf8.RuneError)
		} else {
			out = append(out, s[i:i+size]...)
		}
		i += size
	}
	return out
}

// invalidAt reports whether s has a byte that is not valid UTF-8 at i.
func invalidAt(s string, i int) bool {
	r, size := utf8.DecodeRuneInString(s[i:])
	return r == utf8.RuneError && size == 1
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// special8 returns a mask whose lowest set bit is in the first of the eight
// bytes of x (little endian) that is not printable ASCII or is '"' or '\\',
// and 0 if there is none. (Bits above the first match may be spurious.)
func special8(x uint64) uint64 {
	hasLess := (x - ones*0x20) & ^x & highs
	q := x ^ (ones * '"')
	bs := x ^ (ones * '\\')
	hasQuote := (q - ones) & ^q & highs
	hasBackslash := (bs - ones) & ^bs & highs
	return (x & highs) | hasLess | hasQuote | hasBackslash
}
