package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sallyport/sallyport/backup"
)

func TestBackupCommands(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	runCLI(t, "ca", "init", "--data", data)
	w := newGPGWorld(t, filepath.Join(data, "trust"))
	key := newUserKey(t, w.dir)
	for i := 0; i < 3; i++ {
		signUser(t, data, key, "--principal", "root", "--key-id", "alice github:1")
	}
	runCLI(t, "ca", "revoke", "--data", data, "--serial", "2", "--reason", "test")
	if err := os.MkdirAll(filepath.Join(data, "recordings", "2026"), 0o700); err != nil {
		t.Fatal(err)
	}
	cast := []byte(`{"version": 2, "width": 80, "height": 24}` + "\n")
	if err := os.WriteFile(filepath.Join(data, "recordings", "2026", "s1.cast"), cast, 0o600); err != nil {
		t.Fatal(err)
	}
	policy := w.write(t, "policy.yaml", []byte("org: example\n"))

	file := filepath.Join(t.TempDir(), "backup.pgp")
	out := runCLI(t, "backup", "create", "--data", data, "--out", file, "--policy", policy, "--with-recordings")
	if !strings.Contains(out, "last serial 3") || !strings.Contains(out, "github:admin/3") {
		t.Errorf("create output:\n%s", out)
	}
	if _, _, err := tryCLI(t, "backup", "create", "--data", data, "--out", file); err == nil {
		t.Errorf("create over an existing file succeeded")
	}
	enc, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	userCA, err := os.ReadFile(filepath.Join(data, "user_ca"))
	if err != nil {
		t.Fatal(err)
	}

	// Every admin reads the backup with plain gpg and tar.
	for _, fpr := range []string{w.root1, w.root2, w.admin} {
		t.Run("ok/gpg-decrypt-tar-"+fpr[:8], func(t *testing.T) {
			h := newHomeWith(t, w, fpr)
			plain := h.RunStdin(enc, "--decrypt")
			dir := t.TempDir()
			tar := exec.Command("tar", "-xf", "-", "-C", dir)
			tar.Stdin = bytes.NewReader(plain)
			if out, err := tar.CombinedOutput(); err != nil {
				t.Fatalf("tar: %v\n%s", err, out)
			}
			for _, p := range []string{"data/sallyport.db", "data/audit.jsonl", "data/host_ca.pub", "trust/roots", "policy/policy.yaml", "recordings/2026/s1.cast", "MANIFEST.json"} {
				if _, err := os.Stat(filepath.Join(dir, "sallyport-backup", p)); err != nil {
					t.Errorf("%s: %v", p, err)
				}
			}
			got, err := os.ReadFile(filepath.Join(dir, "sallyport-backup", "data", "user_ca"))
			if err != nil || !bytes.Equal(got, userCA) {
				t.Errorf("user_ca from the backup differs (%v)", err)
			}
		})
	}
	t.Run("fail/outsider-cannot-decrypt", func(t *testing.T) {
		if _, err := other(t, w).Try("--decrypt", file); err == nil {
			t.Errorf("the outsider decrypted the backup")
		}
	})

	secret := w.secret(t, w.admin)
	if out := runCLI(t, "backup", "verify", "--key", secret, file); !strings.Contains(out, "OK") || !strings.Contains(out, "3 certificates (last serial 3), 1 revocations") {
		t.Errorf("verify output:\n%s", out)
	}
	damaged := func(name string, f func([]byte) []byte) string {
		return w.write(t, name, f(bytes.Clone(enc)))
	}
	tests := []struct {
		name string
		file string
		key  string
		err  error
		text string
	}{
		{name: "fail/truncated-half", file: damaged("half.pgp", func(b []byte) []byte { return b[:len(b)/2] }), err: backup.ErrCorrupt},
		{name: "fail/truncated-end", file: damaged("end.pgp", func(b []byte) []byte { return b[:len(b)-1] }), err: backup.ErrCorrupt},
		{name: "fail/altered-middle", file: damaged("mid.pgp", func(b []byte) []byte { b[len(b)/2] ^= 1; return b }), err: backup.ErrCorrupt},
		{name: "fail/altered-end", file: damaged("last.pgp", func(b []byte) []byte { b[len(b)-5] ^= 0x40; return b }), err: backup.ErrCorrupt},
		{name: "fail/not-a-backup", file: w.write(t, "plain.pgp", w.gpg.RunStdin([]byte("hello"), "--encrypt", "--recipient", w.admin)), err: backup.ErrCorrupt},
		{name: "fail/wrong-key", file: file, key: w.secret(t, w.outsider), err: backup.ErrCorrupt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := secret
			if tc.key != "" {
				k = tc.key
			}
			_, _, err := tryCLI(t, "backup", "verify", "--key", k, tc.file)
			if !errors.Is(err, tc.err) {
				t.Errorf("err = %v; want %v", err, tc.err)
			}
		})
	}

	t.Run("ok/restore-continues-serials", func(t *testing.T) {
		restored := filepath.Join(t.TempDir(), "restored")
		out := runCLI(t, "backup", "restore", "--key", w.secret(t, w.root2), "--data", restored, "--serial-gap", "100", file)
		if !strings.Contains(out, "the next serial is 104") {
			t.Errorf("restore output:\n%s", out)
		}
		cert := signUser(t, restored, key, "--principal", "root", "--key-id", "after restore")
		if cert.Serial != 104 {
			t.Errorf("first serial after restore %d; want 104", cert.Serial)
		}
		if got, _ := os.ReadFile(filepath.Join(restored, "recordings", "2026", "s1.cast")); !bytes.Equal(got, cast) {
			t.Errorf("recording not restored")
		}
		if out := runCLI(t, "trust", "admins", "--trust", filepath.Join(restored, "trust")); !strings.Contains(out, "3 admin(s)") {
			t.Errorf("restored trust folder:\n%s", out)
		}
		if _, _, err := tryCLI(t, "backup", "restore", "--key", secret, "--data", restored, file); err == nil || !strings.Contains(err.Error(), "not empty") {
			t.Errorf("restore into a used folder: %v", err)
		}
	})
	t.Run("ok/restore-default-gap", func(t *testing.T) {
		restored := t.TempDir() // empty folder
		runCLI(t, "backup", "restore", "--key", secret, "--data", restored, file)
		if cert := signUser(t, restored, key, "--principal", "root", "--key-id", "x"); cert.Serial != 3+backup.DefaultSerialGap+1 {
			t.Errorf("serial %d; want %d", cert.Serial, 3+backup.DefaultSerialGap+1)
		}
	})
}
