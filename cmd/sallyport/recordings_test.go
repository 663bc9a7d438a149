package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/recording"
)

// recordSession writes one finished recording into the data folder, as the
// bastion would, and returns it.
func recordSession(t *testing.T, data string, m recording.Meta, output string) recording.Summary {
	t.Helper()
	keys, err := ca.LoadKeys(data)
	if err != nil {
		t.Fatal(err)
	}
	st, err := openStore(t.Context(), data)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rec, err := recording.New(recording.Options{Dir: filepath.Join(data, recordingsDir), Index: st, Signer: keys.Session})
	if err != nil {
		t.Fatal(err)
	}
	s, err := rec.Start(t.Context(), m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stdout().Write([]byte(output)); err != nil {
		t.Fatal(err)
	}
	sum, err := s.Close(t.Context(), recording.End{ExitStatus: 0})
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func TestRecordingsCommands(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	runCLI(t, "ca", "init", "--data", data)
	alice := recordSession(t, data, recording.Meta{Identity: "github:1", User: "alice", Login: "root", Host: "web1", PTY: true},
		"$ echo hi\r\nhi\r\n\x1b]52;c;cm0gLXJmIH4=\a\x1b[21t$ exit\r\n")
	bob := recordSession(t, data, recording.Meta{Identity: "github:2", User: "bob", Login: "deploy", Host: "db1", Command: "uptime"},
		"up 3 days\n")

	list := runCLI(t, "recordings", "list", "--data", data)
	for _, want := range []string{alice.ID, bob.ID, "alice", "root@web1", "(shell)", "deploy@db1", "uptime", "exit 0"} {
		if !strings.Contains(list, want) {
			t.Errorf("list does not show %q:\n%s", want, list)
		}
	}
	if list := runCLI(t, "recordings", "list", "--data", data, "--user", "bob"); strings.Contains(list, alice.ID) || !strings.Contains(list, bob.ID) {
		t.Errorf("list --user bob:\n%s", list)
	}
	if list := runCLI(t, "recordings", "list", "--data", data, "--host", "web1"); !strings.Contains(list, alice.ID) || strings.Contains(list, bob.ID) {
		t.Errorf("list --host web1:\n%s", list)
	}

	out, errOut, err := tryCLI(t, "recordings", "play", alice.ID, "--data", data, "--speed", "1000")
	if err != nil {
		t.Fatalf("play: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "$ echo hi\r\nhi\r\n$ exit\r\n") || strings.Contains(out, "\x1b]52") || strings.Contains(out, "[21t") {
		t.Errorf("play output %q: want the session without OSC 52 and CSI 21 t", out)
	}

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"ok/by-id", []string{alice.ID, "--data", data}, "intact"},
		{"ok/by-file", []string{alice.Path, "--key", filepath.Join(data, "session_ca.pub")}, "intact"},
		{"fail/other-ca-key", []string{alice.Path, "--key", filepath.Join(data, "host_ca.pub")}, "NOT INTACT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := tryCLI(t, append([]string{"recordings", "verify"}, tc.args...)...)
			if strings.HasPrefix(tc.name, "ok/") && err != nil {
				t.Fatalf("verify: %v\n%s%s", err, out, errOut)
			}
			if strings.HasPrefix(tc.name, "fail/") {
				var ec exitCode
				if !errors.As(err, &ec) || ec != 1 {
					t.Fatalf("verify: err %v; want exit status 1", err)
				}
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("verify printed %q; want %q", out, tc.want)
			}
		})
	}

	// Alter one byte of the output: verify names the block and byte range.
	b, err := os.ReadFile(alice.Path)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(b, []byte("echo hi"))
	b[at] = 'E'
	if err := os.WriteFile(alice.Path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err = tryCLI(t, "recordings", "verify", alice.ID, "--data", data)
	var ec exitCode
	if !errors.As(err, &ec) || ec != 1 {
		t.Fatalf("verify of an altered file: err %v; want exit status 1", err)
	}
	if !strings.Contains(out, "NOT INTACT: block 1") || !strings.Contains(out, "does not match") {
		t.Errorf("verify printed %q", out)
	}
	// The byte range printed contains the altered byte.
	f := strings.Fields(out[strings.Index(out, "bytes ")+len("bytes "):])
	lo, hi, _ := strings.Cut(strings.TrimSuffix(f[0], ":"), "-")
	l, _ := strconv.Atoi(lo)
	h, _ := strconv.Atoi(hi)
	if at < l || at >= h {
		t.Errorf("altered byte %d outside the reported range %d-%d", at, l, h)
	}
}
