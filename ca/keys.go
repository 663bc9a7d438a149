package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/atomicfile"
)

// Kind names one of the three certificate authorities.
type Kind int

// The three authorities. Each key signs only certificates of its own kind.
const (
	KindUser Kind = iota + 1
	KindSession
	KindHost
)

// Kinds lists every authority in a fixed order.
var Kinds = []Kind{KindUser, KindSession, KindHost}

func (k Kind) String() string {
	switch k {
	case KindUser:
		return "user"
	case KindSession:
		return "session"
	case KindHost:
		return "host"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// FileName is the name of the private key file of this authority inside the
// data folder; the public key is beside it with ".pub" appended.
func (k Kind) FileName() string { return k.String() + "_ca" }

// KeyType is the algorithm of newly generated CA keys.
type KeyType string

// Supported CA key types. Ed25519 is the default.
const (
	KeyEd25519   KeyType = "ed25519"
	KeyECDSAP256 KeyType = "ecdsa-p256"
	KeyRSA3072   KeyType = "rsa-3072"
)

// ParseKeyType returns the key type named s.
func ParseKeyType(s string) (KeyType, error) {
	switch KeyType(s) {
	case KeyEd25519, KeyECDSAP256, KeyRSA3072:
		return KeyType(s), nil
	}
	return "", fmt.Errorf("unknown key type %q (want ed25519, ecdsa-p256 or rsa-3072)", s)
}

// Keys holds the signers of the three authorities.
type Keys struct {
	User, Session, Host ssh.Signer
}

// Signer returns the signer of kind k.
func (ks Keys) Signer(k Kind) ssh.Signer {
	switch k {
	case KindUser:
		return ks.User
	case KindSession:
		return ks.Session
	case KindHost:
		return ks.Host
	}
	return nil
}

// check verifies that all three keys are present and distinct: one key
// serving two authorities would let a certificate of one kind stand in for
// another.
func (ks Keys) check() error {
	seen := map[string]Kind{}
	for _, k := range Kinds {
		s := ks.Signer(k)
		if s == nil {
			return fmt.Errorf("ca: %s CA key missing", k)
		}
		b := string(s.PublicKey().Marshal())
		if other, ok := seen[b]; ok {
			return fmt.Errorf("ca: the %s CA and the %s CA use the same key; each authority needs its own", other, k)
		}
		seen[b] = k
	}
	return nil
}

// isCAKey reports whether pub is the public key of any of the authorities.
func (ks Keys) isCAKey(pub ssh.PublicKey) (Kind, bool) {
	b := pub.Marshal()
	for _, k := range Kinds {
		if s := ks.Signer(k); s != nil && bytes.Equal(s.PublicKey().Marshal(), b) {
			return k, true
		}
	}
	return 0, false
}

// ErrKeyPermissions is returned when a CA key file is readable or writable
// by group or others.
var ErrKeyPermissions = errors.New("key file is accessible by group or others")

// GenerateKeys creates the CA keys missing from dir, of type kt, and returns
// the kinds it created. Existing keys are never overwritten. dir is created
// with mode 0700 if missing; key files are created with mode 0600.
func GenerateKeys(dir string, kt KeyType, rnd io.Reader) ([]Kind, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if _, err := ParseKeyType(string(kt)); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca: create data folder: %w", err)
	}
	var created []Kind
	for _, k := range Kinds {
		path := filepath.Join(dir, k.FileName())
		if _, err := os.Lstat(path); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return created, fmt.Errorf("ca: %s CA key: %w", k, err)
		}
		priv, err := generateKey(kt, rnd)
		if err != nil {
			return created, fmt.Errorf("ca: generate %s CA key: %w", k, err)
		}
		block, err := ssh.MarshalPrivateKey(priv, "sallyport "+k.String()+" CA")
		if err != nil {
			return created, fmt.Errorf("ca: encode %s CA key: %w", k, err)
		}
		signer, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			return created, fmt.Errorf("ca: %s CA key: %w", k, err)
		}
		pub := bytes.TrimSpace(ssh.MarshalAuthorizedKey(signer.PublicKey()))
		pub = append(pub, []byte(" sallyport-"+k.String()+"-ca\n")...)
		// The public key goes first so that a crash never leaves a private
		// key without its public half. A stale public key without its
		// private key is simply replaced.
		if err := os.WriteFile(path+".pub", pub, 0o644); err != nil {
			return created, fmt.Errorf("ca: write %s CA public key: %w", k, err)
		}
		if err := atomicfile.Create(path, pem.EncodeToMemory(block), 0o600); err != nil {
			return created, fmt.Errorf("ca: write %s CA key: %w", k, err)
		}
		created = append(created, k)
	}
	return created, nil
}

func generateKey(kt KeyType, rnd io.Reader) (crypto.Signer, error) {
	switch kt {
	case KeyEd25519:
		_, priv, err := ed25519.GenerateKey(rnd)
		return priv, err
	case KeyECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rnd)
	case KeyRSA3072:
		return rsa.GenerateKey(rnd, 3072)
	}
	return nil, fmt.Errorf("unknown key type %q", kt)
}

// LoadKeys reads the three CA keys from dir. A key file that group or others
// may access is refused with ErrKeyPermissions.
func LoadKeys(dir string) (Keys, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return Keys{}, fmt.Errorf("ca: data folder: %w", err)
	}
	if !st.IsDir() {
		return Keys{}, fmt.Errorf("ca: data folder %s is not a folder", dir)
	}
	// A sealed server must say so, not fail to parse a PGP message as a key.
	if err := CheckUnsealed(dir); err != nil {
		return Keys{}, err
	}
	var ks Keys
	for _, k := range Kinds {
		s, err := LoadSigner(filepath.Join(dir, k.FileName()))
		if err != nil {
			return Keys{}, fmt.Errorf("ca: %s CA: %w", k, err)
		}
		switch k {
		case KindUser:
			ks.User = s
		case KindSession:
			ks.Session = s
		case KindHost:
			ks.Host = s
		}
	}
	if err := ks.check(); err != nil {
		return Keys{}, err
	}
	return ks, nil
}

// LoadSigner reads one unencrypted OpenSSH private key file, refusing it if
// it is not a regular file or if group or others may access it.
func LoadSigner(path string) (ssh.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("key file %s does not exist (run 'sallyport ca init')", path)
		}
		return nil, fmt.Errorf("open key file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("key file %s has mode %#o: %w (run 'chmod 600 %s')", path, perm, ErrKeyPermissions, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read key file %s: %w", path, err)
	}
	s, err := ssh.ParsePrivateKey(data)
	if err != nil {
		// The parse error never contains key material.
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return withSafeAlgorithms(s)
}

// withSafeAlgorithms makes an RSA signer sign with rsa-sha2-512, never the
// SHA-1 "ssh-rsa" algorithm that OpenSSH no longer accepts.
func withSafeAlgorithms(s ssh.Signer) (ssh.Signer, error) {
	if s.PublicKey().Type() != ssh.KeyAlgoRSA {
		return s, nil
	}
	as, ok := s.(ssh.AlgorithmSigner)
	if !ok {
		return nil, errors.New("rsa signer cannot choose its algorithm")
	}
	return ssh.NewSignerWithAlgorithms(as, []string{ssh.KeyAlgoRSASHA512})
}
