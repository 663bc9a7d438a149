// Package atomicfile writes files so that a crash or a concurrent reader
// never sees a partial one: data goes to a synced temporary file in the same
// folder, which then takes the final name, and the folder is synced.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path with data, created with mode. Readers see either the
// old file or the new one.
func Write(path string, data []byte, mode os.FileMode) error {
	return write(path, data, mode, os.Rename)
}

// Create writes data to a new file at path with mode, failing with an error
// matching fs.ErrExist if path exists: an existing file is never replaced.
func Create(path string, data []byte, mode os.FileMode) error {
	return write(path, data, mode, os.Link)
}

func write(path string, data []byte, mode os.FileMode, place func(tmp, path string) error) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	// The mode is set before any data is written, so a secret is never
	// readable by others, not even for a moment.
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := place(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
