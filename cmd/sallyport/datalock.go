package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// dataLockFile is the file in the data folder that a running `serve` or
// `dev` holds locked. A dot file, so that backups leave it out.
const dataLockFile = ".sallyport.lock"

// dataLock is the exclusive lock of a data folder, held by the one `serve`
// or `dev` running on it: a second one would rewrite the first one's
// policy, bastion and demo target. Commands that only read the data folder,
// and those meant to run beside the server (`ca revoke`), do not take it.
type dataLock struct{ f *os.File }

// dataInUseError says that another process holds the data folder's lock.
type dataInUseError struct {
	Dir string
	// PID is the process holding the lock as it wrote it in the lock
	// file; 0 when unknown.
	PID int
	// Hint says what to do instead, e.g. "stop it or use another --data".
	Hint string
}

func (e *dataInUseError) Error() string {
	msg := "data folder " + e.Dir + " is in use by another sallyport"
	if e.PID > 0 {
		msg += fmt.Sprintf(" (pid %d)", e.PID)
	}
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg
}

// lockDataDir takes the data folder's lock without waiting, and records
// this process's id in the lock file for the message of a second taker,
// which is a *dataInUseError with hint. The lock ends with Close, or with
// the process however it ends, so a crash never leaves the folder locked.
func lockDataDir(dir, hint string) (*dataLock, error) {
	f, err := os.OpenFile(filepath.Join(dir, dataLockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock the data folder: %w", err)
	}
	held, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock the data folder: %w", err)
	}
	if !held {
		b, _ := io.ReadAll(io.LimitReader(f, 32))
		f.Close()
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return nil, &dataInUseError{Dir: dir, PID: pid, Hint: hint}
	}
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock the data folder: %w", err)
	}
	return &dataLock{f: f}, nil
}

// Close releases the lock. The lock file stays: removing it could let a
// second process lock a new file while a third still holds the old one.
func (l *dataLock) Close() error { return l.f.Close() }
