package recording

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"
)

// chainSeed is d(-1), the digest before block 0.
var chainSeed = sha256.Sum256([]byte("sallyport recording chain v1"))

type chainState struct {
	prev    [sha256.Size]byte
	n       int    // number of the next block
	lastSig string // base64 signature of the last signed record
}

func (c *chainState) init() { c.prev = chainSeed }

func (c *chainState) hex() string { return hex.EncodeToString(c.prev[:]) }

// chainNext returns the digest of block (with its chain line's prefix),
// chained to the previous one.
func chainNext(prev [sha256.Size]byte, block []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write(prev[:])
	h.Write(block)
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

// Signature kinds in signed messages.
const (
	sigCheckpoint = "checkpoint"
	sigFinal      = "final"
)

// signedMessage is what a chain signature signs.
func signedMessage(kind, id string, block int, digest string) []byte {
	return fmt.Appendf(nil, "sallyport-recording-v1\x00%s\x00%s\x00%d\x00%s", kind, id, block, digest)
}

// appendChain closes the block that is all of out, appending its chain line
// (signed when sign is set).
func (s *Session) appendChain(out []byte, at time.Time, sign bool) ([]byte, error) {
	return s.appendChainLine(out, at, "chain", sign)
}

// appendFinal closes the block that is all of out with the signed final
// record.
func (s *Session) appendFinal(out []byte, at time.Time) ([]byte, error) {
	return s.appendChainLine(out, at, "final", true)
}

func (s *Session) appendChainLine(out []byte, at time.Time, verb string, sign bool) ([]byte, error) {
	n := s.chain.n
	blockEnd := len(out)
	out = appendEventStart(out, at.Sub(s.start), "sallyport")
	out = append(out, verb+" "+strconv.Itoa(n)+" "...)
	// The digest covers the block and its chain line up to the digest, so
	// the line's time and number cannot be changed either.
	d := chainNext(s.chain.prev, out)
	out = out[:blockEnd]
	hexd := hex.EncodeToString(d[:])
	line := verb + " " + strconv.Itoa(n) + " " + hexd
	if sign {
		kind := sigCheckpoint
		if verb == "final" {
			kind = sigFinal
		}
		sig, err := s.rc.opts.Signer.Sign(s.rc.opts.Rand, signedMessage(kind, s.meta.ID, n, hexd))
		if err != nil {
			return out, fmt.Errorf("sign block %d: %w", n, err)
		}
		enc := base64.StdEncoding.EncodeToString(ssh.Marshal(sig))
		line += " sig " + enc
		s.chain.lastSig = enc
		s.lastSig = s.rc.opts.Now()
	}
	s.chain.prev = d
	s.chain.n++
	out = appendEventStart(out, at.Sub(s.start), "sallyport")
	out = append(out, line...)
	return append(out, "\"]\n"...), nil
}

// verifySignature checks a base64 signature of a chain record.
func verifySignature(key ssh.PublicKey, kind, id string, block int, digest, b64 string) error {
	raw, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return fmt.Errorf("signature is not base64: %w", err)
	}
	var sig ssh.Signature
	if err := ssh.Unmarshal(raw, &sig); err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	if err := key.Verify(signedMessage(kind, id, block, digest), &sig); err != nil {
		return fmt.Errorf("signature does not verify with %s: %w", ssh.FingerprintSHA256(key), err)
	}
	return nil
}
