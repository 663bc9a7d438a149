package trust

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/atomicfile"
	"github.com/sallyport/sallyport/ca"
)

// SealKeys encrypts each unsealed CA private key in dataDir to every
// admin, replacing the key file with an armored OpenPGP message (mode
// 0600). Keys already sealed are left alone. It returns the kinds it
// sealed. The plaintext is replaced by rename; copies the file system or
// earlier backups may keep are not wiped.
func SealKeys(dataDir string, a *Admins) ([]ca.Kind, []Recipient, error) {
	if _, err := a.Recipients(); err != nil {
		return nil, nil, err
	}
	var sealed []ca.Kind
	var recips []Recipient
	for _, k := range ca.Kinds {
		path := filepath.Join(dataDir, k.FileName())
		data, err := os.ReadFile(path)
		if err != nil {
			return sealed, nil, fmt.Errorf("trust: seal %s CA: %w", k, err)
		}
		if ca.IsSealed(data) {
			continue
		}
		// LoadSigner checks the file's mode and that it is a key.
		if _, err := ca.LoadSigner(path); err != nil {
			return sealed, nil, fmt.Errorf("trust: seal %s CA: %w", k, err)
		}
		var buf bytes.Buffer
		w, rs, err := a.Encrypt(&buf, true, FileHints{FileName: k.FileName()})
		if err != nil {
			return sealed, nil, err
		}
		if _, err := w.Write(data); err != nil {
			return sealed, nil, err
		}
		if err := w.Close(); err != nil {
			return sealed, nil, err
		}
		buf.WriteByte('\n')
		if err := atomicfile.Write(path, buf.Bytes(), 0o600); err != nil {
			return sealed, nil, fmt.Errorf("trust: seal %s CA: %w", k, err)
		}
		sealed = append(sealed, k)
		recips = rs
	}
	return sealed, recips, nil
}

// UnsealKeys decrypts each sealed CA key in dataDir with key, checks that
// it is the private key of the public key beside it, and writes it back in
// place with mode 0600. It returns the kinds it unsealed.
func UnsealKeys(dataDir string, key *SecretKey) ([]ca.Kind, error) {
	var done []ca.Kind
	for _, k := range ca.Kinds {
		path := filepath.Join(dataDir, k.FileName())
		data, err := os.ReadFile(path)
		if err != nil {
			return done, fmt.Errorf("trust: unseal %s CA: %w", k, err)
		}
		if !ca.IsSealed(data) {
			continue
		}
		r, err := key.Decrypt(bytes.NewReader(data))
		if err != nil {
			return done, fmt.Errorf("trust: unseal %s CA: %w", k, err)
		}
		plain, err := io.ReadAll(io.LimitReader(r, 1<<20))
		if err != nil {
			return done, fmt.Errorf("trust: unseal %s CA: %w", k, err)
		}
		if err := matchesPublicKey(plain, path+".pub"); err != nil {
			return done, fmt.Errorf("trust: unseal %s CA: %w", k, err)
		}
		if err := atomicfile.Write(path, plain, 0o600); err != nil {
			return done, fmt.Errorf("trust: unseal %s CA: %w", k, err)
		}
		done = append(done, k)
	}
	if len(done) == 0 {
		return nil, errors.New("trust: unseal: no sealed CA key in " + dataDir)
	}
	return done, nil
}

// matchesPublicKey checks that priv is an OpenSSH private key whose public
// half is the key in pubPath.
func matchesPublicKey(priv []byte, pubPath string) error {
	signer, err := ssh.ParsePrivateKey(priv)
	if err != nil {
		return fmt.Errorf("decrypted data is not a private key: %w", err)
	}
	pubData, err := os.ReadFile(pubPath)
	if err != nil {
		return err
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(pubData)
	if err != nil {
		return fmt.Errorf("%s: %w", pubPath, err)
	}
	if !bytes.Equal(pub.Marshal(), signer.PublicKey().Marshal()) {
		return fmt.Errorf("decrypted key does not match %s", pubPath)
	}
	return nil
}
