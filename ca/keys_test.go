package ca

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenerateAndLoadKeys(t *testing.T) {
	for _, kt := range []KeyType{KeyEd25519, KeyECDSAP256, KeyRSA3072} {
		t.Run("ok/"+string(kt), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			created, err := GenerateKeys(dir, kt, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(created) != 3 {
				t.Fatalf("created %v; want all three", created)
			}
			st, err := os.Stat(dir)
			if err != nil || st.Mode().Perm() != 0o700 {
				t.Errorf("data folder mode = %v, %v; want 0700", st.Mode().Perm(), err)
			}
			for _, k := range Kinds {
				st, err := os.Stat(filepath.Join(dir, k.FileName()))
				if err != nil {
					t.Fatal(err)
				}
				if st.Mode().Perm() != 0o600 {
					t.Errorf("%s key mode = %#o; want 0600", k, st.Mode().Perm())
				}
			}
			keys, err := LoadKeys(dir)
			if err != nil {
				t.Fatal(err)
			}
			wantType := map[KeyType]string{KeyEd25519: "ssh-ed25519", KeyECDSAP256: "ecdsa-sha2-nistp256", KeyRSA3072: "ssh-rsa"}[kt]
			if got := keys.User.PublicKey().Type(); got != wantType {
				t.Errorf("user CA type = %s; want %s", got, wantType)
			}
			a, err := New(keys, &memLedger{})
			if err != nil {
				t.Fatal(err)
			}
			cert, err := a.IssueUser(t.Context(), okUserRequest(t))
			if err != nil {
				t.Fatal(err)
			}
			if kt == KeyRSA3072 && cert.Signature.Format != "rsa-sha2-512" {
				t.Errorf("RSA CA signed with %s; want rsa-sha2-512", cert.Signature.Format)
			}
		})
	}
}

func TestGenerateKeysNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	if _, err := GenerateKeys(dir, KeyEd25519, nil); err != nil {
		t.Fatal(err)
	}
	before := map[Kind][]byte{}
	for _, k := range Kinds {
		b, err := os.ReadFile(filepath.Join(dir, k.FileName()))
		if err != nil {
			t.Fatal(err)
		}
		before[k] = b
	}
	// Remove one key: a rerun creates only that one.
	if err := os.Remove(filepath.Join(dir, KindHost.FileName())); err != nil {
		t.Fatal(err)
	}
	created, err := GenerateKeys(dir, KeyRSA3072, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(created) != 1 || created[0] != KindHost {
		t.Fatalf("created %v; want only the host CA", created)
	}
	for _, k := range []Kind{KindUser, KindSession} {
		b, _ := os.ReadFile(filepath.Join(dir, k.FileName()))
		if string(b) != string(before[k]) {
			t.Errorf("%s CA key was rewritten", k)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func TestLoadKeysRefusals(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
		is    error
	}{
		{"fail/group-readable", func(t *testing.T, dir string) {
			if err := os.Chmod(filepath.Join(dir, "user_ca"), 0o640); err != nil {
				t.Fatal(err)
			}
		}, "mode 0640", ErrKeyPermissions},
		{"fail/world-readable", func(t *testing.T, dir string) {
			if err := os.Chmod(filepath.Join(dir, "session_ca"), 0o604); err != nil {
				t.Fatal(err)
			}
		}, "chmod 600", ErrKeyPermissions},
		{"fail/missing", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "host_ca")); err != nil {
				t.Fatal(err)
			}
		}, "does not exist", nil},
		{"fail/garbage", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "user_ca"), []byte("not a key"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "user CA: key file", nil},
		{"fail/directory", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "user_ca")
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file", nil},
		{"fail/same-key-twice", func(t *testing.T, dir string) {
			b, err := os.ReadFile(filepath.Join(dir, "user_ca"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "host_ca"), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "same key", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := GenerateKeys(dir, KeyEd25519, nil); err != nil {
				t.Fatal(err)
			}
			tc.setup(t, dir)
			_, err := LoadKeys(dir)
			if err == nil {
				t.Fatal("LoadKeys succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %q; want it to contain %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error = %v; want errors.Is %v", err, tc.is)
			}
		})
	}
	if _, err := LoadKeys(filepath.Join(t.TempDir(), "nope")); err == nil || !strings.Contains(err.Error(), "data folder") {
		t.Errorf("LoadKeys on a missing folder = %v; want a data folder error", err)
	}
}
