package recording

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
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
		sig, err := signChain(s.rc.opts.Signer, s.rc.opts.Rand, signedMessage(kind, s.meta.ID, n, hexd))
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

// sigFormat is the one signature format a chain signed with a key of type
// keyType carries: the key's own algorithm, and for RSA rsa-sha2-512, never
// SHA-1 "ssh-rsa" (the session CA's RSA signer uses only rsa-sha2-512).
func sigFormat(keyType string) (string, error) {
	switch keyType {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521:
		return keyType, nil
	case ssh.KeyAlgoRSA:
		return ssh.KeyAlgoRSASHA512, nil
	}
	return "", fmt.Errorf("key type %q cannot sign recordings (want ed25519, ECDSA or RSA)", keyType)
}

// checkSigner checks that s can sign chain records in the format Verify
// accepts.
func checkSigner(s ssh.Signer) error {
	format, err := sigFormat(s.PublicKey().Type())
	if err != nil {
		return err
	}
	if _, ok := s.(ssh.AlgorithmSigner); !ok && format != s.PublicKey().Type() {
		return fmt.Errorf("the %s signer cannot sign with %s", s.PublicKey().Type(), format)
	}
	return nil
}

// signChain signs msg in the format sigFormat names.
func signChain(s ssh.Signer, rand io.Reader, msg []byte) (*ssh.Signature, error) {
	format, err := sigFormat(s.PublicKey().Type())
	if err != nil {
		return nil, err
	}
	var sig *ssh.Signature
	if as, ok := s.(ssh.AlgorithmSigner); ok {
		sig, err = as.SignWithAlgorithm(rand, msg, format)
	} else {
		sig, err = s.Sign(rand, msg)
	}
	if err != nil {
		return nil, err
	}
	if sig.Format != format || len(sig.Rest) > 0 {
		return nil, fmt.Errorf("signer made a %q signature, want %q", sig.Format, format)
	}
	return sig, nil
}

// verifySignature checks a base64 signature of a chain record: exactly one
// ssh.Signature, nothing after it, in the format sigFormat names for key.
func verifySignature(key ssh.PublicKey, kind, id string, block int, digest, b64 string) error {
	format, err := sigFormat(key.Type())
	if err != nil {
		return err
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return fmt.Errorf("signature is not base64: %w", err)
	}
	var sig ssh.Signature
	if err := ssh.Unmarshal(raw, &sig); err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	if len(sig.Rest) > 0 {
		return errors.New("signature: data after the signature")
	}
	if sig.Format != format {
		// key.Verify would take the algorithm the signature names: SHA-1
		// ssh-rsa among others.
		return fmt.Errorf("signature: format %q, want %q for a %s key", Escape(sig.Format, 40), format, key.Type())
	}
	if err := key.Verify(signedMessage(kind, id, block, digest), &sig); err != nil {
		return fmt.Errorf("signature does not verify with %s: %w", ssh.FingerprintSHA256(key), err)
	}
	return nil
}
