// Package backup owns Sallyport's backups: one OpenPGP message, encrypted
// to every admin's key, holding a tar archive of a consistent snapshot of
// the data folder (the SQLite database taken online with VACUUM INTO, the
// CA keys, the audit log), the trust folder, the policy files, and
// optionally the session recordings, with a manifest of every file's size
// and SHA-256 and of what the database holds.
//
// Any admin can read a backup with plain GnuPG:
//
//	gpg --decrypt sallyport-backup.pgp | tar -xvf -
//
// which writes the folder sallyport-backup/ (data/, trust/, policy/,
// recordings/, MANIFEST.json). Verify and Restore check everything the
// manifest says before anything is trusted.
package backup

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/store"
	"github.com/sallyport/sallyport/trust"
)

// Format names the backup layout; Verify refuses any other.
const Format = "sallyport-backup-v1"

// Names inside the archive and in a data folder.
const (
	root          = "sallyport-backup"
	manifestName  = root + "/MANIFEST.json"
	databaseFile  = "sallyport.db"
	auditFile     = "audit.jsonl"
	trustDirName  = "trust"
	recordingsDir = "recordings"
	policyDirName = "policy"
	maxManifest   = 64 << 20
)

// Manifest describes a backup. It is the archive's last entry.
type Manifest struct {
	Format  string    `json:"format"`
	Created time.Time `json:"created"`
	// Recipients are the admins the backup is encrypted to.
	Recipients []string `json:"recipients"`
	// Store summarises the database snapshot.
	Store store.Summary `json:"store"`
	// CAKeys maps each authority to its public key's SHA-256 fingerprint.
	CAKeys map[string]string `json:"ca_keys"`
	// SealedCAKeys lists the authorities whose keys were sealed.
	SealedCAKeys   []string `json:"sealed_ca_keys,omitempty"`
	WithRecordings bool     `json:"with_recordings"`
	Files          []File   `json:"files"`
}

// File is one archived file.
type File struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Snapshotter takes a consistent copy of the live database; the store
// implements it.
type Snapshotter interface {
	Snapshot(ctx context.Context, path string) error
}

// Options says what to back up.
type Options struct {
	// DataDir is the data folder: CA keys, database, audit log. Required.
	DataDir string
	// TrustDir is the trust folder; "" means DataDir/trust if it exists.
	TrustDir string
	// PolicyFiles are copied under policy/ by base name; none means none.
	PolicyFiles []string
	// RecordingsDir is the recordings folder; "" means DataDir/recordings.
	RecordingsDir string
	// WithRecordings includes the recordings themselves; their index is
	// always in the database.
	WithRecordings bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Create writes a backup of opts to w, encrypted to every admin in admins,
// and returns its manifest. The database is copied from live with
// st.Snapshot; files growing while they are read (the audit log, running
// recordings) are copied up to their size when opened.
func Create(ctx context.Context, w io.Writer, st Snapshotter, admins *trust.Admins, opts Options) (*Manifest, error) {
	if opts.DataDir == "" {
		return nil, errors.New("backup: no data folder")
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	trustDir := opts.TrustDir
	if trustDir == "" {
		if fi, err := os.Stat(filepath.Join(opts.DataDir, trustDirName)); err == nil && fi.IsDir() {
			trustDir = filepath.Join(opts.DataDir, trustDirName)
		}
	}
	recDir := opts.RecordingsDir
	if recDir == "" {
		recDir = filepath.Join(opts.DataDir, recordingsDir)
	}

	scratch, err := os.MkdirTemp("", "sallyport-backup-")
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer os.RemoveAll(scratch)
	snap := filepath.Join(scratch, databaseFile)
	if err := st.Snapshot(ctx, snap); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	summary, err := summarize(ctx, snap)
	if err != nil {
		return nil, fmt.Errorf("backup: snapshot: %w", err)
	}
	m := &Manifest{Format: Format, Created: now().UTC(), Store: summary, CAKeys: map[string]string{}, WithRecordings: opts.WithRecordings}
	for _, k := range ca.Kinds {
		fp, err := publicKeyFingerprint(filepath.Join(opts.DataDir, k.FileName()+".pub"))
		if err != nil {
			return nil, fmt.Errorf("backup: %s CA: %w", k, err)
		}
		m.CAKeys[k.String()] = fp
	}
	if m.SealedCAKeys, err = sealedNames(opts.DataDir); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}

	enc, recips, err := admins.Encrypt(w, false, trust.FileHints{FileName: "sallyport-backup.tar", ModTime: m.Created})
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	for _, r := range recips {
		m.Recipients = append(m.Recipients, r.Admin.GitHub.String()+" "+string(r.Admin.Fingerprint))
	}
	tw := tar.NewWriter(enc)
	add := func(name, src string) error {
		f, err := addFile(tw, name, src, m.Created)
		if err != nil {
			return fmt.Errorf("backup: %s: %w", src, err)
		}
		m.Files = append(m.Files, f)
		return nil
	}
	if err := add(root+"/data/"+databaseFile, snap); err != nil {
		return nil, err
	}
	skip := map[string]bool{
		filepath.Clean(trustDir): true, filepath.Clean(recDir): true,
	}
	if err := walkFiles(opts.DataDir, skip, func(rel, src string) error {
		base := path.Base(rel)
		if rel == databaseFile || strings.HasPrefix(rel, databaseFile+"-") || strings.HasPrefix(base, ".") {
			return nil // the snapshot stands for the live database; dot files are temporary
		}
		return add(root+"/data/"+rel, src)
	}); err != nil {
		return nil, err
	}
	if trustDir != "" {
		if err := walkFiles(trustDir, nil, func(rel, src string) error { return add(root+"/"+trustDirName+"/"+rel, src) }); err != nil {
			return nil, err
		}
	}
	seen := map[string]bool{}
	for _, p := range opts.PolicyFiles {
		base := filepath.Base(p)
		if seen[base] {
			return nil, fmt.Errorf("backup: two policy files named %s", base)
		}
		seen[base] = true
		if err := add(root+"/"+policyDirName+"/"+base, p); err != nil {
			return nil, err
		}
	}
	if opts.WithRecordings {
		if _, err := os.Stat(recDir); err == nil {
			if err := walkFiles(recDir, nil, func(rel, src string) error { return add(root+"/"+recordingsDir+"/"+rel, src) }); err != nil {
				return nil, err
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("backup: recordings: %w", err)
		}
	}
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("backup: manifest: %w", err)
	}
	mj = append(mj, '\n')
	if err := tw.WriteHeader(&tar.Header{Name: manifestName, Mode: 0o600, Size: int64(len(mj)), ModTime: m.Created, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if _, err := tw.Write(mj); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	return m, nil
}

// summarize opens a database copy and summarises it.
func summarize(ctx context.Context, dbPath string) (store.Summary, error) {
	s, err := store.Open(ctx, dbPath, store.Options{})
	if err != nil {
		return store.Summary{}, err
	}
	defer s.Close()
	if err := s.CheckIntegrity(ctx); err != nil {
		return store.Summary{}, err
	}
	return s.Summary(ctx)
}

func publicKeyFingerprint(p string) (string, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	return ssh.FingerprintSHA256(pub), nil
}

func sealedNames(dataDir string) ([]string, error) {
	kinds, err := ca.SealedKinds(dataDir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, k := range kinds {
		out = append(out, k.String())
	}
	return out, nil
}

// walkFiles calls fn for every regular file under dir, in name order,
// with its slash-separated path relative to dir, skipping the folders in
// skip. Symbolic links and other special files are skipped.
func walkFiles(dir string, skip map[string]bool, fn func(rel, src string) error) error {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != dir && skip[filepath.Clean(p)] {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	sort.Strings(files)
	for _, p := range files {
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if err := fn(filepath.ToSlash(rel), p); err != nil {
			return err
		}
	}
	return nil
}

// addFile writes src to tw as name, copying as many bytes as the file had
// when opened.
func addFile(tw *tar.Writer, name, src string, mtime time.Time) (File, error) {
	f, err := os.Open(src)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return File{}, err
	}
	mode := int64(0o600)
	if strings.HasPrefix(name, root+"/"+trustDirName+"/") || strings.HasPrefix(name, root+"/"+policyDirName+"/") {
		mode = 0o644
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: fi.Size(), ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return File{}, err
	}
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(tw, h), f, fi.Size()); err != nil {
		return File{}, err
	}
	return File{Path: name, Size: fi.Size(), SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}
