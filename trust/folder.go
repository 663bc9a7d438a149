package trust

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"

	"github.com/sallyport/sallyport/atomicfile"
)

// Names inside a trust folder.
const (
	// RootsFile holds the full fingerprints of the root keys.
	RootsFile = "roots"
	// KeysDir holds the public keys of admin candidates, one armored file
	// per key named FINGERPRINT.asc, with every certification.
	KeysDir = "keys"
)

// Folder is a loaded trust folder: the pinned roots and the candidates'
// public keys. It is public data; it holds no secret.
type Folder struct {
	// Dir is the folder it was loaded from; "" if parsed from memory.
	Dir string
	// Roots are the pinned root fingerprints.
	Roots []Fingerprint
	keys  []*keyBlock
}

// Fingerprints lists the keys in the folder, sorted.
func (f *Folder) Fingerprints() []Fingerprint {
	out := make([]Fingerprint, len(f.keys))
	for i, k := range f.keys {
		out[i] = k.fpr
	}
	return out
}

// InitFolder creates a trust folder at dir pinning roots. It refuses a
// folder that already has a roots file: changing the roots is a deliberate
// edit, reviewed like code.
func InitFolder(dir string, roots []Fingerprint) error {
	if len(roots) == 0 {
		return errors.New("trust: init: no root fingerprints")
	}
	seen := map[Fingerprint]bool{}
	for _, r := range roots {
		if _, err := ParseFingerprint(string(r)); err != nil {
			return fmt.Errorf("trust: init: %w", err)
		}
		if seen[r] {
			return fmt.Errorf("trust: init: root %s given twice", r)
		}
		seen[r] = true
	}
	if err := os.MkdirAll(filepath.Join(dir, KeysDir), 0o755); err != nil {
		return fmt.Errorf("trust: init: %w", err)
	}
	path := filepath.Join(dir, RootsFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("trust: init: %s already exists; edit it to change the roots", path)
	}
	if err != nil {
		return fmt.Errorf("trust: init: %w", err)
	}
	if _, err := f.Write(FormatRoots(roots)); err != nil {
		f.Close()
		return fmt.Errorf("trust: init: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("trust: init: %w", err)
	}
	return nil
}

// LoadFolder reads the trust folder at dir: the roots file and every *.asc
// file under keys/. Any unreadable file fails the whole load, so that a
// damaged folder is never read as a smaller admin set.
func LoadFolder(dir string) (*Folder, error) {
	roots, err := os.ReadFile(filepath.Join(dir, RootsFile))
	if err != nil {
		return nil, fmt.Errorf("trust: folder %s: %w (run 'sallyport trust init')", dir, err)
	}
	files := map[string][]byte{}
	entries, err := os.ReadDir(filepath.Join(dir, KeysDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("trust: folder %s: %w", dir, err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".asc") {
			continue
		}
		data, err := readLimited(filepath.Join(dir, KeysDir, e.Name()), maxKeyFileSize)
		if err != nil {
			return nil, fmt.Errorf("trust: folder %s: %w", dir, err)
		}
		files[e.Name()] = data
	}
	f, err := ParseFolder(roots, files)
	if err != nil {
		return nil, fmt.Errorf("trust: folder %s: %w", dir, err)
	}
	f.Dir = dir
	return f, nil
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, limit+1)); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(buf.Len()) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return buf.Bytes(), nil
}

// ParseFolder builds a Folder from the contents of a roots file and of key
// files (name to contents). Keys that appear in several files are merged.
func ParseFolder(roots []byte, keyFiles map[string][]byte) (*Folder, error) {
	rs, err := ParseRoots(roots)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(keyFiles))
	for n := range keyFiles {
		names = append(names, n)
	}
	sort.Strings(names)
	var all []*keyBlock
	for _, n := range names {
		blocks, err := parseKeyBlocks(keyFiles[n])
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", KeysDir, n, err)
		}
		all = append(all, blocks...)
		if len(all) > maxKeys {
			return nil, fmt.Errorf("more than %d keys", maxKeys)
		}
	}
	return &Folder{Roots: rs, keys: mergeBlocks(all)}, nil
}

// AddedKey reports one key written by AddKeys.
type AddedKey struct {
	Fingerprint Fingerprint
	UserIDs     []string
	// New is true if the folder did not hold the key before; otherwise
	// its new user IDs, subkeys and signatures were merged in.
	New bool
}

// AddKeys adds the public keys in data (as `gpg --export --armor` writes
// them) to the trust folder at dir, merging each with the copy already
// there, and writes each as keys/FINGERPRINT.asc. Adding a key does not make
// it an admin; only certifications by admins do.
func AddKeys(dir string, data []byte) ([]AddedKey, error) {
	if _, err := os.Stat(filepath.Join(dir, RootsFile)); err != nil {
		return nil, fmt.Errorf("trust: add: %w (run 'sallyport trust init' first)", err)
	}
	blocks, err := parseKeyBlocks(data)
	if err != nil {
		return nil, fmt.Errorf("trust: add: %w", err)
	}
	var added []AddedKey
	for _, b := range blocks {
		if _, err := b.entity(); err != nil {
			return nil, fmt.Errorf("trust: add: key %s: %w", b.fpr, err)
		}
		path := filepath.Join(dir, KeysDir, string(b.fpr)+".asc")
		isNew := true
		merged := b
		if old, err := os.ReadFile(path); err == nil {
			oldBlocks, err := parseKeyBlocks(old)
			if err != nil {
				return nil, fmt.Errorf("trust: add: existing %s: %w", path, err)
			}
			isNew = false
			for _, ob := range mergeBlocks(append(oldBlocks, b)) {
				if ob.fpr == b.fpr {
					merged = ob
				}
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("trust: add: %w", err)
		}
		out, err := merged.armored()
		if err != nil {
			return nil, fmt.Errorf("trust: add: %w", err)
		}
		if err := atomicfile.Write(path, out, 0o644); err != nil {
			return nil, fmt.Errorf("trust: add: %w", err)
		}
		added = append(added, AddedKey{Fingerprint: b.fpr, UserIDs: merged.userIDs(), New: isNew})
	}
	return added, nil
}

func (b *keyBlock) userIDs() []string {
	var ids []string
	for _, p := range b.parts {
		if p.head.Tag != tagUserID {
			continue
		}
		if pkt, err := p.head.Parse(); err == nil {
			if uid, ok := pkt.(*packet.UserId); ok {
				ids = append(ids, uid.Id)
			}
		}
	}
	return ids
}

// entity parses b afresh. Every call returns a new Entity, because
// go-crypto caches signature validity for the first time it is asked about.
func (b *keyBlock) entity() (*openpgp.Entity, error) {
	e, err := openpgp.ReadEntity(packet.NewReader(bytes.NewReader(b.binary())))
	if err != nil {
		return nil, fmt.Errorf("unreadable key: %w", err)
	}
	return e, nil
}
