package main

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHelpExplainsEveryCommand(t *testing.T) {
	out := runCLI(t, "--help")
	for name := range commands {
		if !strings.Contains(out, name) {
			t.Errorf("--help does not list %q:\n%s", name, out)
		}
	}
	for _, args := range [][]string{
		{"ca", "init", "--help"}, {"ca", "sign-user", "--help"}, {"ca", "sign-host", "--help"},
		{"ca", "revoke", "--help"}, {"ca", "krl", "--help"}, {"version", "--help"},
	} {
		_, stderr, err := tryCLI(t, args...)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%v: err = %v; want flag.ErrHelp", args, err)
		}
		if !strings.Contains(stderr, "Usage: sallyport "+strings.Join(args[:len(args)-1], " ")) || !strings.Contains(stderr, "-data") && args[0] == "ca" {
			t.Errorf("%v: usage does not explain the flags:\n%s", args, stderr)
		}
	}
	if out := runCLI(t, "version"); !strings.HasPrefix(out, "sallyport ") {
		t.Errorf("version printed %q", out)
	}
}

// snapshot returns the names, sizes and contents of every file under dir.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		files[path] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestBadInput checks that each kind of bad input gets a one-line error that
// names what was wrong, and leaves the data folder exactly as it was.
func TestBadInput(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	runCLI(t, "ca", "init", "--data", data)
	dir := t.TempDir()
	key := newUserKey(t, dir)
	garbage := filepath.Join(dir, "garbage.pub")
	if err := os.WriteFile(garbage, []byte("ssh-ed25519 AAAA-not-base64"), 0o644); err != nil {
		t.Fatal(err)
	}
	unreadable := filepath.Join(dir, "missing.pub")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"fail/missing-data-folder", []string{"ca", "sign-user", "--data", filepath.Join(dir, "nope"), "--principal", "root", "--key-id", "x", key + ".pub"}, "data folder"},
		{"fail/no-data-flag", []string{"ca", "krl", "--out", filepath.Join(dir, "k")}, "--data is required"},
		{"fail/unreadable-key", []string{"ca", "sign-user", "--data", data, "--principal", "root", "--key-id", "x", unreadable}, "missing.pub"},
		{"fail/malformed-key", []string{"ca", "sign-user", "--data", data, "--principal", "root", "--key-id", "x", garbage}, "garbage.pub: public key"},
		{"fail/bad-ttl", []string{"ca", "sign-user", "--data", data, "--principal", "root", "--key-id", "x", "--ttl", "1fortnight", key + ".pub"}, "invalid value \"1fortnight\" for flag -ttl"},
		{"fail/bad-permission", []string{"ca", "sign-user", "--data", data, "--principal", "root", "--key-id", "x", "--permit", "root-shell", key + ".pub"}, "unknown permission"},
		{"fail/bad-source", []string{"ca", "sign-user", "--data", data, "--principal", "root", "--key-id", "x", "--source-address", "10.0.0.1/8", key + ".pub"}, "host bits"},
		{"fail/bad-serial", []string{"ca", "revoke", "--data", data, "--serial", "0"}, "not a serial number"},
		{"fail/revoke-both", []string{"ca", "revoke", "--data", data, "--serial", "1", "--key", key + ".pub"}, "exactly one of"},
		{"fail/bad-key-type", []string{"ca", "init", "--data", data, "--key-type", "dsa"}, "unknown key type"},
		{"fail/two-keys", []string{"ca", "sign-host", "--data", data, "--hostname", "h", key + ".pub", key + ".pub"}, "exactly one"},
		{"fail/unknown-command", []string{"ca", "sign-everything"}, "unknown command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, data)
			_, _, err := tryCLI(t, tc.args...)
			if err == nil {
				t.Fatal("command succeeded")
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("error = %q; want one line containing %q", msg, tc.want)
			}
			after := snapshot(t, data)
			if len(after) != len(before) {
				t.Errorf("data folder changed: %d files before, %d after", len(before), len(after))
			}
			for path, content := range before {
				if strings.HasSuffix(path, ".db") || strings.HasSuffix(path, "-wal") || strings.HasSuffix(path, "-shm") {
					continue // SQLite may touch its files on open; their content is checked below
				}
				if after[path] != content {
					t.Errorf("%s changed", path)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "nope")); err == nil {
		t.Error("a missing data folder was created by sign-user")
	}
}

func TestRefusedIsAudited(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	runCLI(t, "ca", "init", "--data", data)
	key := newUserKey(t, t.TempDir())
	if _, _, err := tryCLI(t, "ca", "sign-user", "--data", data, "--principal", "*", "--key-id", "mallory", key+".pub"); err == nil {
		t.Fatal("wildcard principal accepted")
	}
	b, err := os.ReadFile(filepath.Join(data, auditFile))
	if err != nil {
		t.Fatal(err)
	}
	last := strings.Split(strings.TrimSpace(string(b)), "\n")
	if got := last[len(last)-1]; !strings.Contains(got, `"type":"refuse"`) || !strings.Contains(got, `character '*'`) {
		t.Errorf("last audit line = %s; want the refusal with its reason", got)
	}
}
