package trust

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Fingerprint is the full fingerprint of an OpenPGP primary key in upper
// case hexadecimal: 40 digits for v4 keys, 64 for v6 keys.
type Fingerprint string

// ErrKeyID means a key ID (8 or 16 hexadecimal digits) was given where a
// full fingerprint is required. Key IDs are short enough to collide on
// purpose, so they are never accepted as anchors.
var ErrKeyID = errors.New("a key ID is not a full fingerprint")

// ParseFingerprint parses a full fingerprint. Spaces (as `gpg
// --fingerprint` prints them) and a leading "0x" are ignored; short and long
// key IDs are refused with ErrKeyID.
func ParseFingerprint(s string) (Fingerprint, error) {
	h := strings.ReplaceAll(strings.TrimSpace(s), " ", "")
	h = strings.TrimPrefix(strings.TrimPrefix(h, "0x"), "0X")
	if h == "" || strings.Trim(h, "0123456789abcdefABCDEF") != "" {
		return "", fmt.Errorf("fingerprint %q: not hexadecimal", s)
	}
	switch len(h) {
	case 40, 64:
		return Fingerprint(strings.ToUpper(h)), nil
	case 8, 16:
		return "", fmt.Errorf("fingerprint %q: %w (use the 40-digit fingerprint `gpg --fingerprint` prints)", s, ErrKeyID)
	}
	return "", fmt.Errorf("fingerprint %q: %d hexadecimal digits; want 40 (v4 key) or 64 (v6 key)", s, len(h))
}

func fingerprintOf(b []byte) Fingerprint { return Fingerprint(strings.ToUpper(hex.EncodeToString(b))) }

// Short returns the last 16 digits (the long key ID), for messages only.
func (f Fingerprint) Short() string {
	if len(f) < 16 {
		return string(f)
	}
	return string(f[len(f)-16:])
}

// maxRoots bounds the roots file.
const maxRoots = 100

// ParseRoots parses a roots file: one full fingerprint per line; blank
// lines and lines starting with '#' are ignored. It refuses key IDs,
// duplicates and an empty list.
func ParseRoots(data []byte) ([]Fingerprint, error) {
	var roots []Fingerprint
	seen := map[Fingerprint]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fpr, err := ParseFingerprint(line)
		if err != nil {
			return nil, fmt.Errorf("roots line %d: %w", n, err)
		}
		if seen[fpr] {
			return nil, fmt.Errorf("roots line %d: %s listed twice", n, fpr)
		}
		seen[fpr] = true
		roots = append(roots, fpr)
		if len(roots) > maxRoots {
			return nil, fmt.Errorf("roots: more than %d fingerprints", maxRoots)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("roots: %w", err)
	}
	if len(roots) == 0 {
		return nil, errors.New("roots: no fingerprints")
	}
	return roots, nil
}

// FormatRoots renders roots as a roots file.
func FormatRoots(roots []Fingerprint) []byte {
	var b bytes.Buffer
	b.WriteString("# Full fingerprints of the pinned root admin keys, one per line.\n")
	b.WriteString("# Changing this file changes who the admins are: review it like code.\n")
	for _, r := range roots {
		b.WriteString(string(r))
		b.WriteByte('\n')
	}
	return b.Bytes()
}
