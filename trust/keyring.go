package trust

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Limits on untrusted key material, against certification flooding and
// oversized files.
const (
	maxKeyFileSize   = 4 << 20
	maxKeys          = 1000
	maxSigsPerPart   = 200
	maxPartsPerKey   = 100
	maxArmorBlocks   = 1000
	publicKeyBlock   = "PGP PUBLIC KEY BLOCK"
	privateKeyBlock  = "PGP PRIVATE KEY BLOCK"
	signatureBlock   = "PGP SIGNATURE"
	tagSignature     = 2
	tagSecretKey     = 5
	tagPublicKey     = 6
	tagSecretSubkey  = 7
	tagMarker        = 10
	tagTrust         = 12
	tagUserID        = 13
	tagPublicSubkey  = 14
	tagUserAttribute = 17
)

// ErrSecretKey means secret key material was given where public keys are
// expected. The trust folder is public; it must never hold a secret key.
var ErrSecretKey = errors.New("secret key material (export the public key with gpg --export --armor)")

// keyBlock is one public key as a sequence of raw packets, kept verbatim so
// that merging never re-encodes a signature.
type keyBlock struct {
	fpr     Fingerprint
	primary *packet.OpaquePacket
	direct  []*packet.OpaquePacket // key revocations and direct-key signatures
	parts   []*keyPart             // user IDs, user attributes, subkeys
}

type keyPart struct {
	head *packet.OpaquePacket
	sigs []*packet.OpaquePacket
}

// dearmor returns the binary packets of data: data itself if it is not
// armored, else the concatenated bodies of every armored block, which must
// all be of type want.
func dearmor(data []byte, want string) ([]byte, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if !bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) {
		return data, nil
	}
	var out bytes.Buffer
	blocks := splitArmor(trimmed)
	if len(blocks) == 0 {
		return nil, errors.New("no armored data")
	}
	if len(blocks) > maxArmorBlocks {
		return nil, fmt.Errorf("more than %d armored blocks", maxArmorBlocks)
	}
	for _, b := range blocks {
		block, err := armor.Decode(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("armor: %w", err)
		}
		if block.Type != want {
			if block.Type == privateKeyBlock {
				return nil, ErrSecretKey
			}
			return nil, fmt.Errorf("armored %q block; want %q", block.Type, want)
		}
		if _, err := io.Copy(&out, io.LimitReader(block.Body, maxKeyFileSize+1)); err != nil {
			return nil, fmt.Errorf("armor: %w", err)
		}
		if out.Len() > maxKeyFileSize {
			return nil, fmt.Errorf("more than %d bytes of keys", maxKeyFileSize)
		}
	}
	return out.Bytes(), nil
}

// splitArmor returns each "-----BEGIN ...-----" to "-----END ...-----"
// block of data; armor.Decode reads ahead, so concatenated blocks must be
// separated before decoding. Text between blocks is ignored.
func splitArmor(data []byte) [][]byte {
	var blocks [][]byte
	for {
		i := bytes.Index(data, []byte("-----BEGIN "))
		if i < 0 {
			return blocks
		}
		data = data[i:]
		j := bytes.Index(data, []byte("-----END "))
		if j < 0 {
			return append(blocks, data)
		}
		k := bytes.IndexByte(data[j:], '\n')
		if k < 0 {
			return append(blocks, data)
		}
		blocks = append(blocks, data[:j+k+1])
		data = data[j+k+1:]
	}
}

// parseKeyBlocks splits public keys (armored or binary, as gpg --export
// writes them) into key blocks, merging blocks of the same key.
func parseKeyBlocks(data []byte) ([]*keyBlock, error) {
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("more than %d bytes of keys", maxKeyFileSize)
	}
	bin, err := dearmor(data, publicKeyBlock)
	if err != nil {
		return nil, err
	}
	var blocks []*keyBlock
	var cur *keyBlock
	var part *keyPart
	or := packet.NewOpaqueReader(bytes.NewReader(bin))
	for {
		op, err := or.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("packet: %w", err)
		}
		switch op.Tag {
		case tagSecretKey, tagSecretSubkey:
			return nil, ErrSecretKey
		case tagMarker, tagTrust:
			continue // gpg's local trust packets and markers carry nothing to keep
		case tagPublicKey:
			pk, err := parsePublicKey(op)
			if err != nil {
				return nil, err
			}
			cur = &keyBlock{fpr: fingerprintOf(pk.Fingerprint), primary: op}
			part = nil
			blocks = append(blocks, cur)
			if len(blocks) > maxKeys {
				return nil, fmt.Errorf("more than %d keys", maxKeys)
			}
		case tagUserID, tagUserAttribute, tagPublicSubkey:
			if cur == nil {
				return nil, fmt.Errorf("packet type %d before any public key", op.Tag)
			}
			part = &keyPart{head: op}
			cur.parts = append(cur.parts, part)
			if len(cur.parts) > maxPartsPerKey {
				return nil, fmt.Errorf("key %s: more than %d user IDs and subkeys", cur.fpr, maxPartsPerKey)
			}
		case tagSignature:
			if cur == nil {
				return nil, errors.New("signature before any public key")
			}
			if part == nil {
				cur.direct = append(cur.direct, op)
				if len(cur.direct) > maxSigsPerPart {
					return nil, fmt.Errorf("key %s: more than %d key signatures", cur.fpr, maxSigsPerPart)
				}
			} else {
				part.sigs = append(part.sigs, op)
				if len(part.sigs) > maxSigsPerPart {
					return nil, fmt.Errorf("key %s: more than %d signatures on one user ID or subkey", cur.fpr, maxSigsPerPart)
				}
			}
		default:
			return nil, fmt.Errorf("unexpected packet type %d in a public key", op.Tag)
		}
	}
	if len(blocks) == 0 {
		return nil, errors.New("no public key found")
	}
	return mergeBlocks(blocks), nil
}

func parsePublicKey(op *packet.OpaquePacket) (*packet.PublicKey, error) {
	p, err := op.Parse()
	if err != nil {
		return nil, fmt.Errorf("public key packet: %w", err)
	}
	pk, ok := p.(*packet.PublicKey)
	if !ok || pk.IsSubkey {
		return nil, errors.New("public key packet: not a primary key")
	}
	return pk, nil
}

// mergeBlocks merges blocks of the same key: the union of their user IDs,
// subkeys and signatures, each packet once, in first-seen order. The result
// is sorted by fingerprint.
func mergeBlocks(blocks []*keyBlock) []*keyBlock {
	byFpr := map[Fingerprint]*keyBlock{}
	var out []*keyBlock
	for _, b := range blocks {
		m, ok := byFpr[b.fpr]
		if !ok {
			m = &keyBlock{fpr: b.fpr, primary: b.primary}
			byFpr[b.fpr] = m
			out = append(out, m)
		}
		m.direct = unionPackets(m.direct, b.direct)
		for _, p := range b.parts {
			var into *keyPart
			for _, q := range m.parts {
				if samePacket(p.head, q.head) {
					into = q
					break
				}
			}
			if into == nil {
				into = &keyPart{head: p.head}
				m.parts = append(m.parts, into)
			}
			into.sigs = unionPackets(into.sigs, p.sigs)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].fpr < out[j].fpr })
	return out
}

func samePacket(a, b *packet.OpaquePacket) bool {
	return a.Tag == b.Tag && bytes.Equal(a.Contents, b.Contents)
}

func unionPackets(have, add []*packet.OpaquePacket) []*packet.OpaquePacket {
	for _, p := range add {
		dup := false
		for _, q := range have {
			if samePacket(p, q) {
				dup = true
				break
			}
		}
		if !dup {
			have = append(have, p)
		}
	}
	return have
}

// binary returns the packets of b in OpenPGP order.
func (b *keyBlock) binary() []byte {
	var buf bytes.Buffer
	write := func(op *packet.OpaquePacket) {
		// Serializing to a bytes.Buffer cannot fail.
		_ = op.Serialize(&buf)
	}
	write(b.primary)
	for _, s := range b.direct {
		write(s)
	}
	for _, p := range b.parts {
		write(p.head)
		for _, s := range p.sigs {
			write(s)
		}
	}
	return buf.Bytes()
}

// armored returns b as an armored public key block.
func (b *keyBlock) armored() ([]byte, error) {
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, publicKeyBlock, nil)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(b.binary()); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}
