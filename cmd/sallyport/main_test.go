package main

import (
	"os"
	"os/exec"
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
	// Every --help and -h prints the usage to stdout and succeeds, as
	// `sallyport --help` does; nothing goes to stderr.
	for _, args := range [][]string{
		{"ca", "init", "--help"}, {"ca", "sign-user", "--help"}, {"ca", "sign-host", "--help"},
		{"ca", "revoke", "--help"}, {"ca", "krl", "--help"}, {"ca", "seal", "-h"}, {"version", "--help"},
		{"ca", "lift", "--help"}, {"ca", "suspended", "--help"}, {"ca", "logins", "--help"}, {"ca", "pin", "-h"}, {"ca", "unpin", "--help"},
		{"dev", "--help"}, {"login", "--help"}, {"status", "-h"}, {"serve", "--help"}, {"ssh-config", "--help"},
		{"recordings", "list", "--help"}, {"policy", "test", "--help"}, {"policy", "test", "FILE", "--help"},
		{"backup", "create", "--help"}, {"trust", "admins", "-h"}, {"breakglass", "request", "--help"},
	} {
		cmd := strings.Join(args[:len(args)-1], " ")
		cmd = strings.TrimSuffix(cmd, " FILE")
		stdout, stderr, err := tryCLI(t, args...)
		if err != nil {
			t.Errorf("%v: err = %v; want nil", args, err)
		}
		if stderr != "" {
			t.Errorf("%v: printed to stderr:\n%s", args, stderr)
		}
		if !strings.HasPrefix(stdout, "Usage: sallyport "+cmd+" ") || !strings.Contains(stdout, "-data") && args[0] == "ca" {
			t.Errorf("%v: usage does not explain the flags:\n%s", args, stdout)
		}
	}
	if out := runCLI(t, "version"); !strings.HasPrefix(out, "sallyport ") {
		t.Errorf("version printed %q", out)
	}
	if out := runCLI(t, "--version"); !strings.HasPrefix(out, "sallyport ") || out != runCLI(t, "version") {
		t.Errorf("--version printed %q; want what version prints", out)
	}
	if out := runCLI(t, "version", "--help"); strings.Contains(out, "Flags:") {
		t.Errorf("version --help shows a Flags section though version has no flags:\n%s", out)
	}
	if out := runCLI(t, "dev", "--help"); !strings.Contains(out, "\nFlags:\n") {
		t.Errorf("dev --help shows no Flags section:\n%s", out)
	}
	// -trust defaults to DATA/trust where there is a data folder.
	for _, args := range [][]string{{"backup", "create", "--help"}, {"ca", "seal", "--help"}, {"ca", "breakglass", "--help"}} {
		out := runCLI(t, args...)
		line := flagLine(out, "-trust")
		if strings.Contains(line, "required") || !strings.Contains(line, "DATA/trust") {
			t.Errorf("%v: -trust is described as %q; want its default DATA/trust, not required", args, line)
		}
	}
	if line := flagLine(runCLI(t, "trust", "admins", "--help"), "-trust"); !strings.Contains(line, "required") {
		t.Errorf("trust admins: -trust is described as %q; want required", line)
	}
}

// TestHelpExitStatus runs the binary: --help and -h exit 0 with the usage on
// stdout, for a command as for the program; a bad flag exits non-zero with
// the usage on stderr.
func TestHelpExitStatus(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		ok     bool
		stdout string
		stderr string
	}{
		{"ok/program", []string{"--help"}, true, "Sallyport: ", ""},
		{"ok/leaf", []string{"dev", "--help"}, true, "Usage: sallyport dev ", ""},
		{"ok/leaf-short", []string{"login", "-h"}, true, "Usage: sallyport login ", ""},
		{"ok/sub", []string{"ca", "init", "--help"}, true, "Usage: sallyport ca init ", ""},
		{"ok/version", []string{"--version"}, true, "sallyport ", ""},
		{"fail/bad-flag", []string{"status", "--bogus"}, false, "", "Usage: sallyport status "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			cmd := exec.Command(binary(t), tc.args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if (err == nil) != tc.ok {
				t.Fatalf("%v: err = %v; want ok=%v\n%s%s", tc.args, err, tc.ok, stdout.String(), stderr.String())
			}
			if !strings.HasPrefix(stdout.String(), tc.stdout) || tc.stdout == "" && stdout.Len() > 0 {
				t.Errorf("%v: stdout = %q; want it to start with %q", tc.args, stdout.String(), tc.stdout)
			}
			if !strings.Contains(stderr.String(), tc.stderr) || tc.stderr == "" && stderr.Len() > 0 {
				t.Errorf("%v: stderr = %q; want %q", tc.args, stderr.String(), tc.stderr)
			}
		})
	}
}

// flagLine returns the usage line naming flag and its description.
func flagLine(usage, flag string) string {
	lines := strings.Split(usage, "\n")
	for i, l := range lines {
		if f := strings.Fields(l); len(f) > 0 && f[0] == flag {
			if i+1 < len(lines) {
				return strings.TrimSpace(l + " " + lines[i+1])
			}
			return l
		}
	}
	return ""
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
		{"fail/revoke-serial-and-identity", []string{"ca", "revoke", "--data", data, "--serial", "1", "--identity", "github:5"}, "exactly one of"},
		{"fail/suspend-a-login", []string{"ca", "revoke", "--data", data, "--identity", "carol", "--reason", "x"}, "never a login"},
		{"fail/suspend-without-reason", []string{"ca", "revoke", "--data", data, "--identity", "github:5"}, "--reason is required"},
		{"fail/lift-not-suspended", []string{"ca", "lift", "--data", data, "--identity", "github:5", "--reason", "x"}, "github:5 is not suspended"},
		{"fail/pin-bad-id", []string{"ca", "pin", "--data", data, "--login", "carol", "--github-id", "carol", "--reason", "x"}, "not a numeric GitHub user ID"},
		{"fail/pin-bad-login", []string{"ca", "pin", "--data", data, "--login", "car ol", "--github-id", "5", "--reason", "x"}, "is not a GitHub login"},
		{"fail/unpin-not-pinned", []string{"ca", "unpin", "--data", data, "--login", "carol", "--reason", "x"}, "login carol is not pinned"},
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
