package ca

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// ErrSealed means CA keys are sealed: encrypted at rest to the admins'
// OpenPGP keys. A sealed key file holds an armored OpenPGP message in
// place of the private key, so 'ca init' never replaces it and nothing can
// sign with it until an admin unseals it.
var ErrSealed = errors.New("CA keys are sealed")

// sealedPrefix begins every sealed key file.
const sealedPrefix = "-----BEGIN PGP MESSAGE-----"

// IsSealed reports whether the contents of a key file are a sealed key.
func IsSealed(data []byte) bool {
	return bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte(sealedPrefix))
}

// SealedKinds returns the authorities whose key file in dir is sealed.
// Missing key files are not sealed.
func SealedKinds(dir string) ([]Kind, error) {
	var sealed []Kind
	for _, k := range Kinds {
		f, err := os.Open(filepath.Join(dir, k.FileName()))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("ca: %s CA: %w", k, err)
		}
		if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
			// Not a key file at all: LoadSigner says what is wrong with it.
			f.Close()
			continue
		}
		head := make([]byte, 64)
		n, err := io.ReadFull(f, head)
		f.Close()
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("ca: %s CA: %w", k, err)
		}
		if IsSealed(head[:n]) {
			sealed = append(sealed, k)
		}
	}
	return sealed, nil
}

// CheckUnsealed returns nil if no CA key in dir is sealed, and otherwise
// an error wrapping ErrSealed that says which keys are sealed and how an
// admin unseals them. Call it before LoadKeys, so that a sealed server
// says why it cannot start.
func CheckUnsealed(dir string) error {
	sealed, err := SealedKinds(dir)
	if err != nil {
		return err
	}
	if len(sealed) == 0 {
		return nil
	}
	names := make([]string, len(sealed))
	for i, k := range sealed {
		names[i] = k.String()
	}
	return fmt.Errorf("ca: %w: the %s CA key(s) in %s are encrypted to the admins' PGP keys; an admin must run 'sallyport ca unseal --data %s --key SECRET.asc' before Sallyport can start",
		ErrSealed, strings.Join(names, ", "), dir, dir)
}
