package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/store"
	"github.com/sallyport/sallyport/trust"
)

// ErrCorrupt means a backup failed a check: it is truncated, altered, not
// a Sallyport backup, or disagrees with its manifest.
var ErrCorrupt = errors.New("backup is damaged or not a Sallyport backup")

// Verify decrypts the backup on r with key, checks every file against the
// manifest, restores it into a temporary folder, and checks that the
// restored database opens, passes SQLite's integrity check and holds what
// the manifest says. Nothing is written outside the temporary folder.
func Verify(ctx context.Context, r io.Reader, key *trust.SecretKey) (*Manifest, error) {
	tmp, err := os.MkdirTemp("", "sallyport-verify-")
	if err != nil {
		return nil, fmt.Errorf("backup: verify: %w", err)
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "data")
	m, err := extract(ctx, r, key, dir)
	if err != nil {
		return nil, fmt.Errorf("backup: verify: %w", err)
	}
	return m, nil
}

// RestoreOptions configures Restore.
type RestoreOptions struct {
	// SerialGap is how far the serial counter is moved past the backed-up
	// one, so that serials issued after the backup was taken are never
	// issued again; zero means DefaultSerialGap.
	SerialGap uint64
	// Actor is who restores, for the audit log; required.
	Actor string
}

// DefaultSerialGap is the default RestoreOptions.SerialGap.
const DefaultSerialGap = 1_000_000

// Restore verifies the backup on r like Verify and restores it into
// dataDir, which must not exist or be empty. The data files go to
// dataDir, the trust folder to dataDir/trust, the recordings to
// dataDir/recordings and the policy files to dataDir/policy. The serial
// counter is then advanced by the serial gap. It returns the manifest and
// the new serial counter.
func Restore(ctx context.Context, r io.Reader, key *trust.SecretKey, dataDir string, opts RestoreOptions) (*Manifest, uint64, error) {
	if opts.Actor == "" {
		return nil, 0, errors.New("backup: restore: no actor")
	}
	gap := opts.SerialGap
	if gap == 0 {
		gap = DefaultSerialGap
	}
	entries, err := os.ReadDir(dataDir)
	exists := err == nil
	switch {
	case err == nil && len(entries) > 0:
		return nil, 0, fmt.Errorf("backup: restore: %s is not empty; restore only into a new or empty folder", dataDir)
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return nil, 0, fmt.Errorf("backup: restore: %w", err)
	}
	parent := filepath.Dir(filepath.Clean(dataDir))
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, 0, fmt.Errorf("backup: restore: %w", err)
	}
	// Extract beside the target, then rename: a failed restore leaves
	// nothing half-written at dataDir.
	tmp, err := os.MkdirTemp(parent, ".sallyport-restore-")
	if err != nil {
		return nil, 0, fmt.Errorf("backup: restore: %w", err)
	}
	defer os.RemoveAll(tmp)
	m, err := extract(ctx, r, key, tmp)
	if err != nil {
		return nil, 0, fmt.Errorf("backup: restore: %w", err)
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return nil, 0, fmt.Errorf("backup: restore: %w", err)
	}
	if exists {
		if err := os.Remove(dataDir); err != nil {
			return nil, 0, fmt.Errorf("backup: restore: %w", err)
		}
	}
	if err := os.Rename(tmp, dataDir); err != nil {
		return nil, 0, fmt.Errorf("backup: restore: %w", err)
	}
	log, err := os.OpenFile(filepath.Join(dataDir, auditFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, 0, fmt.Errorf("backup: restore: %w", err)
	}
	defer log.Close()
	s, err := store.Open(ctx, filepath.Join(dataDir, databaseFile), store.Options{AuditLog: log})
	if err != nil {
		return nil, 0, fmt.Errorf("backup: restore: %w", err)
	}
	defer s.Close()
	last, err := s.AdvanceSerials(ctx, gap, opts.Actor)
	if err != nil {
		return nil, 0, fmt.Errorf("backup: restore: %w", err)
	}
	return m, last, nil
}

// target maps an archive path to a path under dir, refusing anything
// outside the known folders.
func target(dir, name string) (string, error) {
	if !strings.HasPrefix(name, root+"/") || path.Clean(name) != name || strings.Contains(name, "\\") {
		return "", fmt.Errorf("%w: unexpected path %q", ErrCorrupt, name)
	}
	rel := strings.TrimPrefix(name, root+"/")
	first, rest, ok := strings.Cut(rel, "/")
	if !ok || rest == "" || strings.HasPrefix(rest, "../") || rest == ".." {
		return "", fmt.Errorf("%w: unexpected path %q", ErrCorrupt, name)
	}
	switch first {
	case "data":
		return filepath.Join(dir, filepath.FromSlash(rest)), nil
	case trustDirName, recordingsDir, policyDirName:
		return filepath.Join(dir, first, filepath.FromSlash(rest)), nil
	}
	return "", fmt.Errorf("%w: unexpected path %q", ErrCorrupt, name)
}

// extract decrypts and unpacks the backup into dir (created, must not
// exist) and checks it completely.
func extract(ctx context.Context, r io.Reader, key *trust.SecretKey, dir string) (*Manifest, error) {
	plain, err := key.Decrypt(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	tr := tar.NewReader(plain)
	got := map[string]File{}
	var manifest []byte
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		if manifest != nil {
			return nil, fmt.Errorf("%w: %s after the manifest", ErrCorrupt, hdr.Name)
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("%w: %s is not a regular file", ErrCorrupt, hdr.Name)
		}
		if hdr.Name == manifestName {
			if manifest, err = io.ReadAll(io.LimitReader(tr, maxManifest)); err != nil {
				return nil, fmt.Errorf("%w: manifest: %w", ErrCorrupt, err)
			}
			continue
		}
		dst, err := target(dir, hdr.Name)
		if err != nil {
			return nil, err
		}
		if _, dup := got[hdr.Name]; dup {
			return nil, fmt.Errorf("%w: %s twice", ErrCorrupt, hdr.Name)
		}
		f, err := writeEntry(tr, dst, hdr)
		if err != nil {
			return nil, err
		}
		got[hdr.Name] = f
	}
	// Read to the end so the OpenPGP integrity check runs: a truncated or
	// altered message fails here even if the tar archive looked whole.
	if _, err := io.Copy(io.Discard, plain); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if manifest == nil {
		return nil, fmt.Errorf("%w: no manifest (truncated?)", ErrCorrupt)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(manifest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %w", ErrCorrupt, err)
	}
	if m.Format != Format {
		return nil, fmt.Errorf("%w: format %q; this Sallyport reads %q", ErrCorrupt, m.Format, Format)
	}
	if err := checkFiles(&m, got); err != nil {
		return nil, err
	}
	if err := checkRestored(ctx, &m, dir); err != nil {
		return nil, err
	}
	return &m, nil
}

func writeEntry(tr io.Reader, dst string, hdr *tar.Header) (File, error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return File{}, err
	}
	mode := os.FileMode(0o600)
	if hdr.Mode&0o044 != 0 {
		mode = 0o644
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return File{}, fmt.Errorf("%w: %s: %w", ErrCorrupt, hdr.Name, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), tr)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return File{}, fmt.Errorf("%w: %s: %w", ErrCorrupt, hdr.Name, err)
	}
	return File{Path: hdr.Name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// checkFiles compares the archive's files with the manifest's list.
func checkFiles(m *Manifest, got map[string]File) error {
	var problems []error
	listed := map[string]bool{}
	for _, want := range m.Files {
		listed[want.Path] = true
		f, ok := got[want.Path]
		switch {
		case !ok:
			problems = append(problems, fmt.Errorf("%s is missing", want.Path))
		case f.Size != want.Size || f.SHA256 != want.SHA256:
			problems = append(problems, fmt.Errorf("%s: %d bytes, SHA-256 %s; manifest says %d bytes, %s", want.Path, f.Size, f.SHA256, want.Size, want.SHA256))
		}
	}
	var extra []string
	for name := range got {
		if !listed[name] {
			extra = append(extra, name)
		}
	}
	slices.Sort(extra)
	for _, name := range extra {
		problems = append(problems, fmt.Errorf("%s is not in the manifest", name))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %w", ErrCorrupt, errors.Join(problems...))
	}
	return nil
}

// checkRestored opens the restored data folder and compares it with the
// manifest.
func checkRestored(ctx context.Context, m *Manifest, dir string) error {
	s, err := openStore(ctx, filepath.Clean(dir))
	if err != nil {
		return fmt.Errorf("%w: restored database: %w", ErrCorrupt, err)
	}
	defer s.Close()
	if err := s.CheckIntegrity(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	sum, err := s.Summary(ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	// Opening may migrate an older backup forward; compare the contents.
	want := m.Store
	want.SchemaVersion, sum.SchemaVersion = 0, 0
	if sum != want {
		return fmt.Errorf("%w: restored database holds %+v; manifest says %+v", ErrCorrupt, sum, want)
	}
	for _, k := range ca.Kinds {
		fp, err := publicKeyFingerprint(filepath.Join(dir, k.FileName()+".pub"))
		if err != nil {
			return fmt.Errorf("%w: %s CA: %w", ErrCorrupt, k, err)
		}
		if fp != m.CAKeys[k.String()] {
			return fmt.Errorf("%w: %s CA public key %s; manifest says %s", ErrCorrupt, k, fp, m.CAKeys[k.String()])
		}
		priv := filepath.Join(dir, k.FileName())
		data, err := os.ReadFile(priv)
		if err != nil {
			return fmt.Errorf("%w: %s CA: %w", ErrCorrupt, k, err)
		}
		if ca.IsSealed(data) {
			continue
		}
		signer, err := ca.LoadSigner(priv)
		if err != nil {
			return fmt.Errorf("%w: %s CA: %w", ErrCorrupt, k, err)
		}
		if got := sshFingerprint(signer); got != fp {
			return fmt.Errorf("%w: %s CA private key does not match its public key", ErrCorrupt, k)
		}
	}
	return nil
}
