package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/backup"
)

func runBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return subcommands(ctx, "backup", map[string]command{
		"create":  {"write an encrypted backup readable by every admin", runBackupCreate},
		"verify":  {"decrypt a backup and check every part of it", runBackupVerify},
		"restore": {"restore a backup into a new data folder", runBackupRestore},
	}, args, stdout, stderr)
}

func runBackupCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("backup create", "", `
Write a consistent backup of the data folder (database taken online, CA
keys, audit log), the trust folder, the policy files and, with
--with-recordings, the session recordings, as one OpenPGP message encrypted
to every admin's key (per the trust folder, now). Any admin can read it
with: gpg --decrypt FILE | tar -xvf -`, stderr)
	dataDir := fs.String("data", "", "data `folder` to back up (required)")
	out := fs.String("out", "", "backup `file` to write; must not exist (required)")
	tf := addTrustFlags(fs, true)
	var policies stringList
	fs.Var(&policies, "policy", "policy `file` to include (repeat for several)")
	recDir := fs.String("recordings", "", "recordings `folder` (default DATA/recordings)")
	withRec := fs.Bool("with-recordings", false, "include the session recordings themselves (their index is always included)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	if *dataDir == "" || *out == "" {
		return errors.New("backup create: --data and --out are required")
	}
	if *tf.dir == "" {
		*tf.dir = dataTrustDir(*dataDir)
	}
	admins, err := tf.admins()
	if err != nil {
		return fmt.Errorf("backup create: %w", err)
	}
	st, err := openStore(ctx, *dataDir)
	if err != nil {
		return fmt.Errorf("backup create: %w", err)
	}
	defer st.Close()
	if _, err := os.Lstat(*out); err == nil {
		return fmt.Errorf("backup create: %s already exists", *out)
	}
	tmp, err := os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".tmp*")
	if err != nil {
		return fmt.Errorf("backup create: %w", err)
	}
	defer os.Remove(tmp.Name())
	m, err := backup.Create(ctx, tmp, st, admins, backup.Options{
		DataDir: *dataDir, TrustDir: *tf.dir, PolicyFiles: policies, RecordingsDir: *recDir, WithRecordings: *withRec,
	})
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp.Name(), *out)
	}
	outcome, reason := audit.OutcomeOK, ""
	if err != nil {
		outcome, reason = audit.OutcomeError, err.Error()
	}
	ev := audit.Event{Type: "backup", Actor: offlineActor(), Subject: *out, Outcome: outcome, Reason: reason}
	if m != nil {
		ev.Fields = map[string]string{"recipients": strings.Join(m.Recipients, ","), "files": fmt.Sprint(len(m.Files)), "last_serial": fmt.Sprint(m.Store.LastSerial)}
	}
	if aerr := st.Audit(ctx, ev); aerr != nil {
		err = errors.Join(err, aerr)
	}
	if err != nil {
		return fmt.Errorf("backup create: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s: %d files, %d certificates, last serial %d\nencrypted to %s\nread it with: gpg --decrypt %s | tar -xvf -\n",
		*out, len(m.Files), m.Store.Certificates, m.Store.LastSerial, strings.Join(m.Recipients, ", "), *out)
	return nil
}

func printManifest(w io.Writer, m *backup.Manifest) {
	fmt.Fprintf(w, "backup of %s: %d files, schema %d, %d certificates (last serial %d), %d revocations, %d audit events\n",
		m.Created.Format("2006-01-02T15:04:05Z"), len(m.Files), m.Store.SchemaVersion, m.Store.Certificates, m.Store.LastSerial,
		m.Store.Revocations, m.Store.AuditEvents)
	for _, k := range []string{"user", "session", "host"} {
		fmt.Fprintf(w, "  %s CA %s\n", k, m.CAKeys[k])
	}
	if len(m.SealedCAKeys) > 0 {
		fmt.Fprintf(w, "  sealed CA keys: %s\n", strings.Join(m.SealedCAKeys, ", "))
	}
	fmt.Fprintf(w, "  encrypted to %s\n", strings.Join(m.Recipients, ", "))
}

func runBackupVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("backup verify", "FILE", `
Decrypt a backup with one admin's PGP secret key, check every file against
the manifest, restore it into a temporary folder and check that the
restored database opens and holds what the manifest says. Compare the CA
fingerprints it prints with the ones you know: anyone can encrypt a file to
the admins' public keys.`, stderr)
	sk := addSecretKeyFlags(fs)
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return fmt.Errorf("backup verify: want exactly one FILE argument, got %d", len(rest))
	}
	key, err := sk.load()
	if err != nil {
		return fmt.Errorf("backup verify: %w", err)
	}
	f, err := os.Open(rest[0])
	if err != nil {
		return fmt.Errorf("backup verify: %w", err)
	}
	defer f.Close()
	m, err := backup.Verify(ctx, f, key)
	if err != nil {
		return fmt.Errorf("backup verify: %s: %w", rest[0], err)
	}
	printManifest(stdout, m)
	fmt.Fprintf(stdout, "%s: OK\n", rest[0])
	return nil
}

func runBackupRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("backup restore", "FILE", `
Verify a backup like 'backup verify' and restore it into a new or empty
data folder: data files into DATA, the trust folder into DATA/trust,
recordings into DATA/recordings and policy files into DATA/policy. The
serial counter is moved forward by --serial-gap so that certificates
issued after the backup was taken never share a serial with new ones.`, stderr)
	sk := addSecretKeyFlags(fs)
	dataDir := fs.String("data", "", "new or empty data `folder` to restore into (required)")
	gap := fs.Uint64("serial-gap", backup.DefaultSerialGap, "how many serials to skip after the backed-up ones")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return fmt.Errorf("backup restore: want exactly one FILE argument, got %d", len(rest))
	}
	if *dataDir == "" {
		return errors.New("backup restore: --data is required")
	}
	key, err := sk.load()
	if err != nil {
		return fmt.Errorf("backup restore: %w", err)
	}
	f, err := os.Open(rest[0])
	if err != nil {
		return fmt.Errorf("backup restore: %w", err)
	}
	defer f.Close()
	m, last, err := backup.Restore(ctx, f, key, *dataDir, backup.RestoreOptions{SerialGap: *gap, Actor: offlineActor()})
	if err != nil {
		return fmt.Errorf("backup restore: %s: %w", rest[0], err)
	}
	printManifest(stdout, m)
	fmt.Fprintf(stdout, "restored into %s; the next serial is %d\n", *dataDir, last+1)
	if len(m.SealedCAKeys) > 0 {
		fmt.Fprintf(stdout, "the CA keys are sealed: sallyport ca unseal --data %s --key SECRET.asc\n", *dataDir)
	}
	return nil
}
