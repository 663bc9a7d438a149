package trust

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

// messageBlock is the armor type of an encrypted message.
const messageBlock = "PGP MESSAGE"

// Recipient is an admin a message is encrypted to.
type Recipient struct {
	Admin Admin
	// KeyFingerprint is the encryption subkey used.
	KeyFingerprint Fingerprint
}

// Recipients returns the encryption key of every admin. It fails if an
// admin has no valid encryption key: a message every admin can read must
// not silently leave one out.
func (a *Admins) Recipients() ([]Recipient, error) {
	if len(a.admins) == 0 {
		return nil, errors.New("trust: no admins to encrypt to")
	}
	cfg := pgpConfig(a.now)
	var out []Recipient
	for _, ad := range a.admins {
		k, err := ad.entity.EncryptionKeyWithError(a.now, cfg)
		if err != nil {
			return nil, fmt.Errorf("trust: admin %s (%s) has no valid encryption key (add one with gpg --quick-add-key FPR cv25519 encr): %w", ad.GitHub, ad.Fingerprint, err)
		}
		out = append(out, Recipient{Admin: *ad, KeyFingerprint: fingerprintOf(k.PublicKey.Fingerprint)})
	}
	return out, nil
}

// Encrypt returns a writer that encrypts what is written to it to every
// admin's encryption key (Recipients) as one OpenPGP message on w, binary
// or armored, readable with plain `gpg --decrypt`. Close finishes the
// message; it does not close w.
func (a *Admins) Encrypt(w io.Writer, armored bool, hints FileHints) (io.WriteCloser, []Recipient, error) {
	recips, err := a.Recipients()
	if err != nil {
		return nil, nil, err
	}
	var to []*openpgp.Entity
	for _, r := range recips {
		to = append(to, a.byFpr[r.Admin.Fingerprint].entity)
	}
	out := w
	var arm io.WriteCloser
	if armored {
		if arm, err = armor.Encode(w, messageBlock, nil); err != nil {
			return nil, nil, fmt.Errorf("trust: encrypt: %w", err)
		}
		out = arm
	}
	cfg := pgpConfig(a.now)
	cfg.DefaultCompressionAlgo = packet.CompressionZLIB
	cfg.DefaultCipher = packet.CipherAES256
	pt, err := openpgp.EncryptWithParams(out, to, nil, &openpgp.EncryptParams{
		Hints:  &openpgp.FileHints{FileName: hints.FileName, ModTime: hints.ModTime},
		Config: cfg,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("trust: encrypt: %w", err)
	}
	return &encryptWriter{pt: pt, arm: arm}, recips, nil
}

// FileHints name the plaintext inside an encrypted message, as gpg shows
// it with --list-packets and uses with --use-embedded-filename.
type FileHints struct {
	FileName string
	ModTime  time.Time
}

type encryptWriter struct {
	pt, arm io.WriteCloser
}

func (e *encryptWriter) Write(p []byte) (int, error) { return e.pt.Write(p) }

func (e *encryptWriter) Close() error {
	if err := e.pt.Close(); err != nil {
		return fmt.Errorf("trust: encrypt: %w", err)
	}
	if e.arm != nil {
		if err := e.arm.Close(); err != nil {
			return fmt.Errorf("trust: encrypt: %w", err)
		}
	}
	return nil
}

// SecretKey is an admin's OpenPGP secret key, for decrypting backups and
// sealed CA keys.
type SecretKey struct {
	keys openpgp.EntityList
}

// Fingerprint is the primary key's fingerprint.
func (k *SecretKey) Fingerprint() Fingerprint { return fingerprintOf(k.keys[0].PrimaryKey.Fingerprint) }

// ReadSecretKey reads a secret key as `gpg --export-secret-keys --armor`
// writes it, unlocking it with passphrase if it is protected.
func ReadSecretKey(data, passphrase []byte) (*SecretKey, error) {
	var el openpgp.EntityList
	var err error
	if bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("-----BEGIN")) {
		el, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	} else {
		el, err = openpgp.ReadKeyRing(bytes.NewReader(data))
	}
	if err != nil {
		return nil, fmt.Errorf("trust: secret key: %w", err)
	}
	if len(el) == 0 || el[0].PrivateKey == nil {
		return nil, errors.New("trust: secret key: no secret key found (export it with gpg --export-secret-keys --armor)")
	}
	for _, e := range el {
		if e.PrivateKey == nil {
			continue
		}
		if err := unlock(e, passphrase); err != nil {
			return nil, err
		}
	}
	return &SecretKey{keys: el}, nil
}

func unlock(e *openpgp.Entity, passphrase []byte) error {
	encrypted := e.PrivateKey.Encrypted
	for _, sk := range e.Subkeys {
		if sk.PrivateKey != nil && sk.PrivateKey.Encrypted {
			encrypted = true
		}
	}
	if !encrypted {
		return nil
	}
	if len(passphrase) == 0 {
		return errors.New("trust: secret key is protected by a passphrase; give it with --passphrase-file")
	}
	if err := e.DecryptPrivateKeys(passphrase); err != nil {
		return fmt.Errorf("trust: secret key: wrong passphrase? %w", err)
	}
	return nil
}

// Decrypt returns a reader of the plaintext of the OpenPGP message on r
// (binary or armored). The message's integrity is checked as it is read:
// the reader returns an error instead of io.EOF if the message was
// truncated or altered, so read it to the end before trusting any of it.
func (k *SecretKey) Decrypt(r io.Reader) (io.Reader, error) {
	br := bufio.NewReader(r)
	head, _ := br.Peek(64)
	var in io.Reader = br
	if bytes.HasPrefix(bytes.TrimLeft(head, " \t\r\n"), []byte("-----BEGIN")) {
		block, err := armor.Decode(br)
		if err != nil {
			return nil, fmt.Errorf("trust: decrypt: %w", err)
		}
		if block.Type != messageBlock {
			return nil, fmt.Errorf("trust: decrypt: armored %q block; want %q", block.Type, messageBlock)
		}
		in = block.Body
	}
	cfg := pgpConfig(time.Now())
	md, err := openpgp.ReadMessage(in, k.keys, nil, cfg)
	if err != nil {
		return nil, fmt.Errorf("trust: decrypt: %w", err)
	}
	if !md.IsEncrypted {
		return nil, errors.New("trust: decrypt: the message is not encrypted")
	}
	return &decryptReader{md: md}, nil
}

type decryptReader struct{ md *openpgp.MessageDetails }

func (d *decryptReader) Read(p []byte) (int, error) {
	n, err := d.md.UnverifiedBody.Read(p)
	if err != nil && err != io.EOF {
		return n, fmt.Errorf("trust: decrypt: %w", err)
	}
	if err == io.EOF && d.md.IsSigned && d.md.SignatureError != nil {
		return n, fmt.Errorf("trust: decrypt: signature: %w", d.md.SignatureError)
	}
	return n, err
}
