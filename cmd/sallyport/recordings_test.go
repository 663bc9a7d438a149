package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/recording"
	"github.com/sallyport/sallyport/store"
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

// recordingsData returns a new data folder holding alice's terminal session
// and bob's exec session.
func recordingsData(t *testing.T) (data string, alice, bob recording.Summary) {
	t.Helper()
	data = filepath.Join(t.TempDir(), "data")
	runCLI(t, "ca", "init", "--data", data)
	alice = recordSession(t, data, recording.Meta{Identity: "github:1", User: "alice", Login: "root", Host: "web1", PTY: true},
		"$ echo hi\r\nhi\r\n$ exit\r\n")
	bob = recordSession(t, data, recording.Meta{Identity: "github:2", User: "bob", Login: "deploy", Host: "db1", Command: "uptime"},
		"up 3 days\n")
	return data, alice, bob
}

// setRow changes a recording's index row in the database directly, as
// someone who can write the data folder could.
func setRow(t *testing.T, data, id, set string, args ...any) {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(data, databaseFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	res, err := db.ExecContext(t.Context(), "UPDATE recordings SET "+set+" WHERE id = ?", append(args, id)...)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("set %s on %s: %d rows", set, id, n)
	}
}

// swapFiles swaps the files of two recordings, leaving the index alone.
func swapFiles(t *testing.T, a, b string) {
	t.Helper()
	tmp := a + ".swap"
	for _, mv := range [][2]string{{a, tmp}, {b, a}, {tmp, b}} {
		if err := os.Rename(mv[0], mv[1]); err != nil {
			t.Fatal(err)
		}
	}
}

// editFile replaces the recording at path with what edit makes of its
// lines (each with its newline).
func editFile(t *testing.T, path string, edit func(lines []string) []string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	lines = lines[:len(lines)-1]
	if err := os.WriteFile(path, []byte(strings.Join(edit(lines), "")), 0o600); err != nil {
		t.Fatal(err)
	}
}

type noIndex struct{}

func (noIndex) AddRecording(context.Context, store.Recording) error    { return nil }
func (noIndex) FinishRecording(context.Context, store.Recording) error { return nil }

// forge rewrites the recording s as someone without the session CA's
// private key but with write access to the data folder would: a new file
// with the same ID and metadata signed with a key of their own, their
// public key as DATA/session_ca.pub and the new digest in the index.
func forge(t *testing.T, data string, s recording.Summary, m recording.Meta, output string) ssh.PublicKey {
	t.Helper()
	signer := newSigner(t)
	rec, err := recording.New(recording.Options{Dir: t.TempDir(), Index: noIndex{}, Signer: signer, Now: func() time.Time { return s.Start }})
	if err != nil {
		t.Fatal(err)
	}
	m.ID = s.ID
	sess, err := rec.Start(t.Context(), m)
	if err != nil {
		t.Fatal(err)
	}
	mustWriteString(t, sess.Stdout(), output)
	sum, err := sess.Close(t.Context(), recording.End{ExitStatus: 0})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(sum.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "session_ca.pub"), ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	setRow(t, data, s.ID, "digest = ?, file_bytes = ?, bytes_out = ?", sum.Digest, sum.Bytes, sum.Stdout.Bytes)
	return signer.PublicKey()
}

func mustWriteString(t *testing.T, w io.Writer, s string) {
	t.Helper()
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatal(err)
	}
}

func fingerprintOf(t *testing.T, path string) string {
	t.Helper()
	k, err := readAnyPublicKey(path)
	if err != nil {
		t.Fatal(err)
	}
	return ssh.FingerprintSHA256(k)
}

// TestRecordingsVerifyChecks: verify compares the file with the index
// row and the key with the signer the index records, and tells truncation
// of a completed recording from a crash.
func TestRecordingsVerifyChecks(t *testing.T) {
	tests := []struct {
		name    string
		alter   func(t *testing.T, data string, alice, bob recording.Summary)
		args    []string // after the ID; "DATA" is the data folder
		want    []string // in stdout
		notWant []string
	}{
		{"ok/as-recorded", nil, nil,
			[]string{"intact", "from the data folder", "compare it with the session CA"}, []string{"NOT INTACT"}},
		{"ok/key-given", nil, []string{"--key", "DATA/session_ca.pub"},
			[]string{"intact", "from DATA/session_ca.pub"}, []string{"from the data folder"}},
		{"fail/index-host", func(t *testing.T, data string, alice, _ recording.Summary) {
			setRow(t, data, alice.ID, "host = ?", "db1")
		}, nil, []string{"NOT INTACT", "index says host db1, recording says web1"}, nil},
		{"fail/index-user-and-login", func(t *testing.T, data string, alice, _ recording.Summary) {
			setRow(t, data, alice.ID, "user_name = ?, login = ?, identity = ?", "mallory", "nobody", "github:666")
		}, nil, []string{"index says user mallory, recording says alice", "index says login nobody, recording says root",
			"index says identity github:666, recording says github:1"}, nil},
		{"fail/index-command-and-start", func(t *testing.T, data string, alice, _ recording.Summary) {
			setRow(t, data, alice.ID, "command = ?, started_at = ?", "ls", "2001-02-03T04:05:06Z")
		}, nil, []string{"index says command ls, recording says (none)", "index says start 2001-02-03T04:05:06Z, recording says "}, nil},
		{"fail/index-end", func(t *testing.T, data string, alice, _ recording.Summary) {
			setRow(t, data, alice.ID, "exit_status = 1, bytes_out = 3, bytes_in = 7")
		}, nil, []string{"index says exit status 1, recording says 0", "index says bytes out 3, recording says 23",
			"index says bytes in 7, recording says 0"}, nil},
		{"fail/truncated-after-signed", func(t *testing.T, _ string, alice, _ recording.Summary) {
			editFile(t, alice.Path, func(l []string) []string { return l[:len(l)-2] })
		}, nil, []string{"NOT INTACT", "truncated after it was completed and signed"}, []string{"still being written"}},
		{"fail/block0-signature-stripped", func(t *testing.T, _ string, alice, _ recording.Summary) {
			editFile(t, alice.Path, func(l []string) []string {
				l[1] = l[1][:strings.Index(l[1], " sig ")] + "\"]\n"
				return l
			})
		}, nil, []string{"NOT INTACT: line 2", "block 0 (the header) is not signed"}, nil},
		{"fail/files-swapped", func(t *testing.T, _ string, alice, bob recording.Summary) {
			swapFiles(t, alice.Path, bob.Path)
		}, nil, []string{"NOT INTACT", "header names recording", "index says host web1, recording says db1"}, nil},
		{"fail/other-key-given", nil, []string{"--key", "DATA/host_ca.pub"},
			[]string{"not verified: the key's fingerprint", "from DATA/host_ca.pub"}, []string{"intact"}},
		{"fail/ca-key-and-recording-replaced", func(t *testing.T, data string, alice, _ recording.Summary) {
			forge(t, data, alice, recording.Meta{Identity: "github:1", User: "alice", Login: "root", Host: "web1", PTY: true}, "$ exit\r\n")
		}, nil, []string{"not verified: the key's fingerprint", "from the data folder"}, []string{"intact"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, alice, bob := recordingsData(t)
			sessionFP := fingerprintOf(t, filepath.Join(data, "session_ca.pub"))
			if tc.alter != nil {
				tc.alter(t, data, alice, bob)
			}
			keyFP := fingerprintOf(t, filepath.Join(data, "session_ca.pub"))
			args := []string{"recordings", "verify", alice.ID, "--data", data}
			for _, a := range tc.args {
				args = append(args, strings.ReplaceAll(a, "DATA", data))
			}
			if i := slices.Index(tc.args, "--key"); i >= 0 {
				keyFP = fingerprintOf(t, strings.ReplaceAll(tc.args[i+1], "DATA", data))
			}
			out, errOut, err := tryCLI(t, args...)
			if strings.HasPrefix(tc.name, "ok/") && err != nil {
				t.Fatalf("verify: %v\n%s%s", err, out, errOut)
			}
			if strings.HasPrefix(tc.name, "fail/") {
				var ec exitCode
				if !errors.As(err, &ec) || ec != 1 {
					t.Fatalf("verify: err %v; want exit status 1\n%s%s", err, out, errOut)
				}
			}
			// The fingerprint verified against is always printed.
			for _, w := range append([]string{"\n  key " + keyFP + " from "}, tc.want...) {
				if w = strings.ReplaceAll(w, "DATA", data); !strings.Contains(out, w) {
					t.Errorf("verify printed %q; want %q", out, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out, w) {
					t.Errorf("verify printed %q; want no %q", out, w)
				}
			}
			// A key that is not the signer the index records is named
			// beside it.
			if strings.Contains(out, "not verified: the key's fingerprint") && (!strings.Contains(out, keyFP) || !strings.Contains(out, sessionFP)) {
				t.Errorf("verify printed %q; want both %s and %s", out, keyFP, sessionFP)
			}
		})
	}
}

// TestRecordingsPlayChecks: play verifies as verify does; when the
// recording is not intact it warns in one line on stderr, exits 1 and plays
// nothing, or with --force plays it and warns again after it.
func TestRecordingsPlayChecks(t *testing.T) {
	tests := []struct {
		name    string
		alter   func(t *testing.T, data string, alice, bob recording.Summary)
		args    []string // "ALICE" is alice's ID, "DATA" the data folder
		want    string   // in stdout
		warning []string // in the warning line; none means no warning
	}{
		{"ok/intact", nil, []string{"ALICE", "--data", "DATA"}, "$ echo hi\r\nhi\r\n", nil},
		{"ok/text-exec", nil, []string{"BOB", "--data", "DATA"}, "up 3 days\n", nil},
		{"fail/files-swapped", func(t *testing.T, _ string, alice, bob recording.Summary) {
			swapFiles(t, alice.Path, bob.Path)
		}, []string{"ALICE", "--data", "DATA"}, "up 3 days\n",
			[]string{"recording ALICE is not intact", "header names recording", "sallyport recordings verify"}},
		{"fail/index-host", func(t *testing.T, data string, alice, _ recording.Summary) {
			setRow(t, data, alice.ID, "host = ?", "db1")
		}, []string{"ALICE", "--data", "DATA"}, "$ echo hi\r\n",
			[]string{"recording ALICE is not intact", "index says host db1, recording says web1"}},
		{"fail/truncated-after-signed", func(t *testing.T, _ string, alice, _ recording.Summary) {
			editFile(t, alice.Path, func(l []string) []string { return l[:len(l)-2] })
		}, []string{"ALICE", "--data", "DATA"}, "$ echo hi\r\n", []string{"truncated after it was completed and signed"}},
		{"fail/other-key", nil, []string{"ALICE", "--data", "DATA", "--key", "DATA/host_ca.pub"}, "$ echo hi\r\n",
			[]string{"not verified: the key's fingerprint"}},
		{"fail/file-without-key", nil, []string{"ALICEPATH"}, "$ echo hi\r\n", []string{"not verified", "--key"}},
	}
	for _, tc := range tests {
		for _, force := range []bool{false, true} {
			if tc.warning == nil && force {
				continue
			}
			name := tc.name
			if force {
				name += "-forced"
			}
			t.Run(name, func(t *testing.T) {
				data, alice, bob := recordingsData(t)
				if tc.alter != nil {
					tc.alter(t, data, alice, bob)
				}
				r := strings.NewReplacer("ALICEPATH", alice.Path, "ALICE", alice.ID, "BOB", bob.ID, "DATA", data)
				args := []string{"recordings", "play", "--speed", "1000"}
				if force {
					args = append(args, "--force")
				}
				for _, a := range tc.args {
					args = append(args, r.Replace(a))
				}
				out, errOut, err := tryCLI(t, args...)
				if tc.warning == nil && err != nil {
					t.Fatalf("play: %v\n%s", err, errOut)
				}
				if tc.warning != nil {
					var ec exitCode
					if !errors.As(err, &ec) || ec != 1 {
						t.Fatalf("play: err %v; want exit status 1\n%s", err, errOut)
					}
				}
				switch {
				case tc.warning != nil && !force && out != "":
					t.Errorf("played %q without --force; want nothing", out)
				case (tc.warning == nil || force) && !strings.Contains(out, tc.want):
					t.Errorf("played %q; want %q", out, tc.want)
				}
				// stdout is not a terminal here: no reset sequence.
				if strings.Contains(out, "\x1b[?25h") || strings.Contains(out, "\x1b7\x1b[r") {
					t.Errorf("played %q; want no terminal reset on a stdout that is not a terminal", out)
				}
				var warnings []string
				lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
				for _, l := range lines {
					if strings.Contains(l, "warning") {
						warnings = append(warnings, l)
					}
				}
				switch {
				case tc.warning == nil && len(warnings) > 0:
					t.Errorf("warned %q; want no warning", warnings)
				case tc.warning != nil && !force && (len(warnings) != 1 || !strings.Contains(warnings[0], "give --force")):
					t.Errorf("stderr %q; want one warning line, saying to give --force", errOut)
				case tc.warning != nil && force && (len(warnings) != 2 || warnings[0] != warnings[1] || warnings[1] != lines[len(lines)-1]):
					t.Errorf("stderr %q; want the warning before the replay and again as the last line", errOut)
				case tc.warning != nil:
					for _, w := range tc.warning {
						if w = r.Replace(w); !strings.Contains(warnings[0], w) {
							t.Errorf("warned %q; want %q", warnings[0], w)
						}
					}
				}
			})
		}
	}
}

// TestRecordingsPlayBinaryBulk: an exec channel without a pty whose
// output is not text is summarised, not sent to the terminal.
func TestRecordingsPlayBinaryBulk(t *testing.T) {
	data, _, _ := recordingsData(t)
	blob := "\x7fELF\x02\x01\x01\x00\xff\xfe"
	s := recordSession(t, data, recording.Meta{Identity: "github:1", User: "alice", Login: "root", Host: "web1", Command: "cat /bin/ls"}, blob)
	out, errOut, err := tryCLI(t, "recordings", "play", s.ID, "--data", data, "--speed", "1000")
	if err != nil {
		t.Fatalf("play: %v\n%s", err, errOut)
	}
	sum := sha256.Sum256([]byte(blob))
	for _, w := range []string{"binary output not shown: cat /bin/ls", "10 bytes out", "0 bytes in", hex.EncodeToString(sum[:])} {
		if !strings.Contains(out, w) {
			t.Errorf("played %q; want %q", out, w)
		}
	}
	if strings.Contains(out, "ELF") {
		t.Errorf("played %q; want the summary instead of the bytes", out)
	}
}

// TestRecordingsPlayVerifiedBytes: play shows the bytes it verified, not
// what the file holds by the time it would be read again.
func TestRecordingsPlayVerifiedBytes(t *testing.T) {
	data, alice, _ := recordingsData(t)
	rewritten := false
	afterPlayCheck = func() {
		// Someone who can write the recordings folder rewrites what is
		// still to be played, between the check and the replay.
		b, err := os.ReadFile(alice.Path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(alice.Path, bytes.Replace(b, []byte("echo hi"), []byte("rm -rf"), 1), 0o600); err != nil {
			t.Fatal(err)
		}
		rewritten = true
	}
	t.Cleanup(func() { afterPlayCheck = func() {} })
	out, errOut, err := tryCLI(t, "recordings", "play", alice.ID, "--data", data, "--speed", "1000")
	if !rewritten {
		t.Fatal("the file was not rewritten between the check and the replay")
	}
	if err != nil {
		t.Fatalf("play: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "$ echo hi\r\n") || strings.Contains(out, "rm -rf") {
		t.Errorf("played %q; want the verified session, with echo hi", out)
	}
}

// TestRecordingsPlayKeepsWarning: a recording that is not intact cannot
// wipe the warning about it: replay clears neither the scrollback (CSI 3
// J) nor the terminal (RIS), and the warning comes again after it.
func TestRecordingsPlayKeepsWarning(t *testing.T) {
	data, _, _ := recordingsData(t)
	s := recordSession(t, data, recording.Meta{Identity: "github:1", User: "alice", Login: "root", Host: "web1", PTY: true},
		"\x1b[H\x1b[2J\x1b[3Jhello from the session: ls\r\n\x1bc\x1b[?3J$ ")
	b, err := os.ReadFile(s.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path, bytes.Replace(b, []byte(`ls\r`), []byte(`id\r`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := tryCLI(t, "recordings", "play", s.ID, "--data", data, "--speed", "1000", "--force")
	var ec exitCode
	if !errors.As(err, &ec) || ec != 1 {
		t.Fatalf("play: err %v; want exit status 1\n%s", err, errOut)
	}
	if !strings.Contains(out, "session: id") {
		t.Errorf("played %q; want the altered session", out)
	}
	for _, bad := range []string{"\x1b[3J", "\x1b[?3J", "\x1bc"} {
		if strings.Contains(out, bad) {
			t.Errorf("played %q; want no %q", out, bad)
		}
	}
	lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "warning: recording "+s.ID+" is not intact") {
		t.Errorf("stderr %q; want the warning as its last line", errOut)
	}
}

// TestRecordingsPlayLocale: unless the locale is UTF-8, play shows every
// character that is not ASCII as '?', on stdout and stderr, since a
// terminal reading Latin-1 takes byte 0x9B of "Û" for CSI.
func TestRecordingsPlayLocale(t *testing.T) {
	data, _, _ := recordingsData(t)
	s := recordSession(t, data, recording.Meta{Identity: "github:1", User: "alice", Login: "root", Host: "web1", PTY: true},
		"\u00db6n caf\u00e9\r\n")
	// A file named with non-ASCII, played without a key: the warning
	// names it.
	dir := filepath.Join(t.TempDir(), "r\u00e9c")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "\u00dd.cast")
	b, err := os.ReadFile(s.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name                 string
		lcAll, lcCtype, lang string
		want                 string
	}{
		{"ok/utf8-lang", "", "", "en_US.UTF-8", "\u00db6n caf\u00e9"},
		{"ok/utf8-c", "C.utf8", "", "", "\u00db6n caf\u00e9"},
		{"fail/c", "C", "", "en_US.UTF-8", "?6n caf?"},
		{"fail/latin1", "", "de_DE.ISO-8859-1", "en_US.UTF-8", "?6n caf?"},
		{"fail/unset", "", "", "", "?6n caf?"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("LC_ALL", tc.lcAll)
			t.Setenv("LC_CTYPE", tc.lcCtype)
			t.Setenv("LANG", tc.lang)
			out, errOut, err := tryCLI(t, "recordings", "play", path, "--speed", "1000", "--force")
			var ec exitCode
			if !errors.As(err, &ec) || ec != 1 {
				t.Fatalf("play: err %v; want exit status 1 (not verified)\n%s", err, errOut)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("played %q; want %q", out, tc.want)
			}
			if !strings.HasPrefix(tc.name, "ok/") {
				for _, s := range []string{out, errOut} {
					if i := strings.IndexFunc(s, func(r rune) bool { return r > 0x7e }); i >= 0 {
						t.Errorf("wrote %q, not ASCII at %d", s, i)
					}
				}
			}
		})
	}
}

func TestUTF8Locale(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"ok/lang", map[string]string{"LANG": "en_US.UTF-8"}, true},
		{"ok/lowercase-utf8", map[string]string{"LANG": "C.utf8"}, true},
		{"ok/modifier", map[string]string{"LC_CTYPE": "de_DE.UTF-8@euro", "LANG": "C"}, true},
		{"ok/lc-all-first", map[string]string{"LC_ALL": "C.UTF-8", "LC_CTYPE": "C", "LANG": "C"}, true},
		{"fail/none", map[string]string{}, false},
		{"fail/c", map[string]string{"LANG": "C"}, false},
		{"fail/posix", map[string]string{"LC_ALL": "POSIX", "LANG": "en_US.UTF-8"}, false},
		{"fail/latin1", map[string]string{"LC_CTYPE": "en_US.ISO-8859-1", "LANG": "en_US.UTF-8"}, false},
		{"fail/no-codeset", map[string]string{"LANG": "en_US"}, false},
		{"fail/utf16", map[string]string{"LANG": "en_US.UTF-16"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := utf8Locale(func(k string) string { return tc.env[k] }); got != tc.want {
				t.Errorf("utf8Locale(%v) = %v; want %v", tc.env, got, tc.want)
			}
		})
	}
}
