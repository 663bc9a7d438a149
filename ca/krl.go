package ca

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// ErrInvalidKRL is wrapped by the errors of KRL.Marshal for input that would
// make a list OpenSSH refuses or reads differently from what was meant.
var ErrInvalidKRL = errors.New("invalid key revocation list")

// KRL is an OpenSSH key revocation list, as sshd's RevokedKeys and
// `ssh-keygen -Q` read it. The format is OpenSSH's PROTOCOL.krl; the list is
// written unsigned, as ssh-keygen writes it by default.
//
// OpenSSH (ssh_krl_check_key in krl.c, used by both sshd and ssh-keygen)
// treats a certificate as revoked when its serial or key ID is listed under
// the CA that signed it or under any CA, when its own key is listed in Keys,
// or when its signing CA key is listed in Keys. sshd refuses every key when
// it cannot parse the list, so Marshal rejects what OpenSSH would not parse.
type KRL struct {
	// Version is krl_version; callers increase it with every new list.
	// Zero is allowed (ssh-keygen writes zero unless told otherwise).
	Version uint64
	// GeneratedAt is generated_date, stored in whole seconds. The zero time
	// and any time before 1970 are rejected, so that a forgotten clock shows.
	GeneratedAt time.Time
	// Comment is free text shown by `ssh-keygen -Q -l`; empty means none.
	Comment string
	// Certificates lists certificates revoked per signing CA. Entries with
	// the same CA are merged; an empty entry revokes nothing.
	Certificates []KRLCertificates
	// Keys lists plain keys revoked outright. A listed key also revokes every
	// certificate for that key and, if it is a CA key, every certificate
	// that CA signed. Certificates are rejected: revoking one certificate
	// goes through Certificates, and revoking its key must be said with the
	// plain key.
	Keys []ssh.PublicKey
}

// KRLCertificates lists certificates of one CA revoked by serial or by key ID.
type KRLCertificates struct {
	// CA is the plain public key of the signing CA; nil means any CA.
	CA ssh.PublicKey
	// Serials are revoked serial numbers, in any order and with repeats;
	// Marshal sorts and deduplicates them. Zero is rejected: OpenSSH refuses
	// such a list, and it never revokes a certificate by serial zero.
	Serials []uint64
	// KeyIDs are revoked certificate key IDs, matched exactly. Marshal sorts
	// and deduplicates them; a key ID must not contain a NUL byte.
	KeyIDs []string
}

// Sections and subsections of PROTOCOL.krl that Marshal writes.
const (
	krlMagic         = "SSHKRL\n\x00"
	krlFormatVersion = 1

	krlSectionCertificates = 1
	krlSectionExplicitKey  = 2

	krlSectionCertSerialList  = 0x20
	krlSectionCertSerialRange = 0x21
	krlSectionCertKeyID       = 0x23

	// krlMinRange is the shortest run of consecutive serials written as a
	// range subsection: a range costs 21 bytes, a run in a list 8 per serial.
	krlMinRange = 3
)

// Marshal encodes the KRL in the binary format of PROTOCOL.krl. The output is
// canonical: the same revocations give the same bytes whatever their order.
func (k *KRL) Marshal() ([]byte, error) {
	if k.GeneratedAt.Before(time.Unix(0, 0)) {
		return nil, fmt.Errorf("marshal krl: generated date %v before 1970: %w", k.GeneratedAt, ErrInvalidKRL)
	}
	if strings.IndexByte(k.Comment, 0) >= 0 {
		return nil, fmt.Errorf("marshal krl: comment contains a NUL byte: %w", ErrInvalidKRL)
	}

	b := []byte(krlMagic)
	b = binary.BigEndian.AppendUint32(b, krlFormatVersion)
	b = binary.BigEndian.AppendUint64(b, k.Version)
	b = binary.BigEndian.AppendUint64(b, uint64(k.GeneratedAt.Unix()))
	b = binary.BigEndian.AppendUint64(b, 0) // flags: none defined
	b = krlAppendString(b, nil)             // reserved
	b = krlAppendString(b, []byte(k.Comment))

	certs, err := krlMergeCertificates(k.Certificates)
	if err != nil {
		return nil, err
	}
	for _, c := range certs {
		b = append(b, krlSectionCertificates)
		b = krlAppendString(b, c.section())
	}

	blobs := make([][]byte, 0, len(k.Keys))
	for i, key := range k.Keys {
		switch key.(type) {
		case nil:
			return nil, fmt.Errorf("marshal krl: key %d is nil: %w", i, ErrInvalidKRL)
		case *ssh.Certificate:
			return nil, fmt.Errorf("marshal krl: key %d is a certificate, not a plain key: %w", i, ErrInvalidKRL)
		}
		blobs = append(blobs, key.Marshal())
	}
	// OpenSSH keeps revoked keys ordered by memcmp, then length: bytes.Compare.
	slices.SortFunc(blobs, bytes.Compare)
	blobs = slices.CompactFunc(blobs, bytes.Equal)
	if len(blobs) > 0 {
		var sect []byte
		for _, blob := range blobs {
			sect = krlAppendString(sect, blob)
		}
		b = append(b, krlSectionExplicitKey)
		b = krlAppendString(b, sect)
	}
	return b, nil
}

// krlCertificates is one CA's revocations after merging and validation.
type krlCertificates struct {
	ca      []byte // wire form of the CA key; empty for any CA
	serials []uint64
	keyIDs  []string
}

// krlMergeCertificates merges entries for the same CA, in order of first
// appearance, as OpenSSH does when it reads a list, and drops empty ones.
func krlMergeCertificates(in []KRLCertificates) ([]*krlCertificates, error) {
	var out []*krlCertificates
	byCA := make(map[string]*krlCertificates)
	for i, c := range in {
		var ca []byte
		switch c.CA.(type) {
		case nil:
		case *ssh.Certificate:
			return nil, fmt.Errorf("marshal krl: certificates %d: CA is a certificate, not a plain key: %w", i, ErrInvalidKRL)
		default:
			ca = c.CA.Marshal()
		}
		for _, s := range c.Serials {
			if s == 0 {
				return nil, fmt.Errorf("marshal krl: certificates %d: serial 0: %w", i, ErrInvalidKRL)
			}
		}
		for _, id := range c.KeyIDs {
			if strings.IndexByte(id, 0) >= 0 {
				return nil, fmt.Errorf("marshal krl: certificates %d: key ID %q contains a NUL byte: %w", i, id, ErrInvalidKRL)
			}
		}
		if len(c.Serials) == 0 && len(c.KeyIDs) == 0 {
			continue
		}
		m, ok := byCA[string(ca)]
		if !ok {
			m = &krlCertificates{ca: ca}
			byCA[string(ca)] = m
			out = append(out, m)
		}
		m.serials = append(m.serials, c.Serials...)
		m.keyIDs = append(m.keyIDs, c.KeyIDs...)
	}
	for _, m := range out {
		slices.Sort(m.serials)
		m.serials = slices.Compact(m.serials)
		slices.Sort(m.keyIDs)
		m.keyIDs = slices.Compact(m.keyIDs)
	}
	return out, nil
}

// section encodes a KRL_SECTION_CERTIFICATES body: the CA key and reserved
// field, then one serial list subsection for lone serials, one range
// subsection per run of at least krlMinRange consecutive serials, and one key
// ID subsection.
func (c *krlCertificates) section() []byte {
	b := krlAppendString(nil, c.ca)
	b = krlAppendString(b, nil) // reserved

	var list, ranges []byte
	for i := 0; i < len(c.serials); {
		j := i + 1
		for j < len(c.serials) && c.serials[j] == c.serials[j-1]+1 {
			j++
		}
		if j-i >= krlMinRange {
			var r []byte
			r = binary.BigEndian.AppendUint64(r, c.serials[i])
			r = binary.BigEndian.AppendUint64(r, c.serials[j-1])
			ranges = append(ranges, krlSectionCertSerialRange)
			ranges = krlAppendString(ranges, r)
		} else {
			for _, s := range c.serials[i:j] {
				list = binary.BigEndian.AppendUint64(list, s)
			}
		}
		i = j
	}
	if len(list) > 0 {
		b = append(b, krlSectionCertSerialList)
		b = krlAppendString(b, list)
	}
	b = append(b, ranges...)

	if len(c.keyIDs) > 0 {
		var ids []byte
		for _, id := range c.keyIDs {
			ids = krlAppendString(ids, []byte(id))
		}
		b = append(b, krlSectionCertKeyID)
		b = krlAppendString(b, ids)
	}
	return b
}

// krlAppendString appends s as an SSH wire string: uint32 length, then bytes.
func krlAppendString(b, s []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
