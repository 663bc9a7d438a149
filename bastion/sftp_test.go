package bastion

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
)

// sftpForms are the sftp arguments for both target forms.
func sftpForms(e *env) []struct {
	name   string
	opts   []string
	remote string
} {
	return []struct {
		name   string
		opts   []string
		remote string
	}{
		{"direct", []string{"-P", strconv.Itoa(e.port), "-o", "User=" + e.login + "@web1"}, "127.0.0.1"},
		{"jump", []string{"-J", "jumper@127.0.0.1:" + strconv.Itoa(e.port), "-o", "User=" + e.login}, "web1"},
	}
}

// sftpOps waits until the SFTP audit holds every operation of want (keys
// "op path", "close path bytes_written", "rename path new_path"),
// successful, and fails the test otherwise.
func sftpOps(t *testing.T, e *env, what string, want ...string) {
	t.Helper()
	seen := map[string]bool{}
	for _, k := range want {
		seen[k] = false
	}
	waitFor(t, 5*time.Second, what+": the SFTP audit records", func() bool {
		for _, ev := range e.audits(audit.TypeSFTP) {
			k := ev.Fields["op"] + " " + ev.Fields["path"]
			switch ev.Fields["op"] {
			case "close":
				k += " " + ev.Fields["bytes_written"]
			case "rename":
				k += " " + ev.Fields["new_path"]
			}
			if _, ok := seen[k]; ok && ev.Outcome == audit.OutcomeOK {
				seen[k] = true
			}
		}
		for _, ok := range seen {
			if !ok {
				return false
			}
		}
		return true
	})
}

// TestSFTPExecProbed: sftp -s with a command that starts sftp-server
// through another program with options of its own (as WinSCP and FileZilla
// are often set up with sudo -u; here programs that need no privilege:
// env -i, nice -n, timeout, sh -c) is found by its first packet and
// audited like the sftp subsystem, through both target forms.
func TestSFTPExecProbed(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(e.issue(certOptions{}))
	src, data := randomFile(t, 100<<10+3)
	commands := []struct{ name, command string }{
		{"env", "env -i " + sftpServerPath},
		{"sh", "sh -c 'exec " + sftpServerPath + "'"},
		{"nice", "nice -n 5 " + sftpServerPath},
		{"timeout", "timeout -k 5 60 " + sftpServerPath},
	}
	remoteDir := t.TempDir()
	for _, cmd := range commands {
		t.Run(cmd.name, func(t *testing.T) {
			for _, f := range sftpForms(e) {
				up := filepath.Join(remoteDir, cmd.name+"-"+f.name+"-up.bin")
				moved := filepath.Join(remoteDir, cmd.name+"-"+f.name+"-moved.bin")
				batch := "put " + src + " " + up + "\nrename " + up + " " + moved + "\nrm " + moved + "\n"
				args := append(append([]string{"-q", "-b", "-", "-F", c.config, "-s", cmd.command}, f.opts...), f.remote)
				if r := run(t, strings.NewReader(batch), "sftp", args...); r.code != 0 {
					t.Fatalf("%s: sftp: code %d stderr %q", f.name, r.code, r.stderr)
				}
				if _, err := os.Stat(moved); !os.IsNotExist(err) {
					t.Fatalf("%s: %s still there (%v)", f.name, moved, err)
				}
				sftpOps(t, e, f.name, "open "+up, "close "+up+" "+strconv.Itoa(len(data)), "rename "+up+" "+moved, "remove "+moved)
			}
		})
	}
	for _, ev := range e.audits(audit.TypeSFTP) {
		if ev.Outcome != audit.OutcomeOK {
			t.Errorf("sftp event %+v; want all successful", ev)
		}
	}
}

// TestSFTPForcedCommandProbed: a forced command that starts sftp-server
// through another program serves plain sftp (a subsystem request, replaced
// by the command), and is audited.
func TestSFTPForcedCommandProbed(t *testing.T) {
	forced := "env -i " + sftpServerPath
	e := newEnv(t, envOptions{policy: `
  - name: infra
    members:
      teams: [infra]
    principals: [%[1]s]
    hosts: [web1]
    permissions: []
    force_command: ` + forced + "\n"})
	c := e.client(e.issue(certOptions{}))
	dir := t.TempDir()
	for _, f := range sftpForms(e) {
		made := filepath.Join(dir, f.name)
		args := append(append([]string{"-q", "-b", "-", "-F", c.config}, f.opts...), f.remote)
		if r := run(t, strings.NewReader("mkdir "+made+"\nrmdir "+made+"\n"), "sftp", args...); r.code != 0 {
			t.Fatalf("%s: sftp: code %d stderr %q", f.name, r.code, r.stderr)
		}
		sftpOps(t, e, f.name, "mkdir "+made, "rmdir "+made)
	}
}

// TestExecNotSFTP: exec channels that carry no SFTP, some of whose bytes
// look like SFTP packets, pass byte for byte, end with their own status,
// and leave nothing in the SFTP audit.
func TestExecNotSFTP(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(e.issue(certOptions{}))
	dir := t.TempDir()
	random := make([]byte, 2<<20+5)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	file := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A length and the type of INIT, then no version a client sends; a
	// one-image icon of 256 pixels (length 256, type INIT, version 0); a
	// zero length; an SFTP VERSION.
	lookalikes := [][]byte{
		append([]byte{0, 0, 0, 5, 1, 'a', 'b', 'c', 'd'}, random...),
		append([]byte{0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 32, 0}, random...),
		append([]byte{0, 0, 0, 0, 1, 0, 0, 0, 3}, random...),
		append(sftpPacket(fxpVersionT, uint32(3)), random...),
	}
	sessions := 0
	for i, b := range lookalikes {
		src := file("lookalike"+strconv.Itoa(i), b)
		// On stdin, echoed back.
		r := c.ssh(bytes.NewReader(b), c.direct(e.login, "web1"), "cat")
		sessions++
		if r.code != 0 || r.stdout != string(b) {
			t.Fatalf("lookalike %d through cat: code %d, %d bytes out (want %d identical), stderr %q", i, r.code, len(r.stdout), len(b), r.stderr)
		}
		// On stdout, with an empty stdin and with input after it.
		r = c.ssh(nil, c.jump(e.login, "web1"), "cat "+src)
		sessions++
		if r.code != 0 || r.stdout != string(b) {
			t.Fatalf("lookalike %d from cat: code %d, %d bytes out (want %d identical), stderr %q", i, r.code, len(r.stdout), len(b), r.stderr)
		}
		r = c.ssh(strings.NewReader("input\n"), c.direct(e.login, "web1"), "cat "+src+" && cat >/dev/null")
		sessions++
		if r.code != 0 || r.stdout != string(b) {
			t.Fatalf("lookalike %d before input: code %d, %d bytes out (want %d identical), stderr %q", i, r.code, len(r.stdout), len(b), r.stderr)
		}
	}
	// printf of bytes like an SFTP packet, first on stdout.
	r := c.ssh(nil, c.direct(e.login, "web1"), `printf '\0\0\0\5\1\0\0\0\3\0\0\0\5\2\0\0\0\3'`)
	sessions++
	if want := "\x00\x00\x00\x05\x01\x00\x00\x00\x03\x00\x00\x00\x05\x02\x00\x00\x00\x03"; r.code != 0 || r.stdout != want {
		t.Fatalf("printf: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}

	// A binary file up and down with cat, scp -O and rsync.
	bin := file("random.bin", random)
	check := func(what, path string) {
		t.Helper()
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, random) {
			t.Fatalf("%s: %d bytes (%v); want %d identical", what, len(got), err, len(random))
		}
	}
	up := filepath.Join(dir, "cat-up.bin")
	if r := c.ssh(bytes.NewReader(random), c.direct(e.login, "web1"), "cat >"+up); r.code != 0 {
		t.Fatalf("cat up: code %d stderr %q", r.code, r.stderr)
	}
	sessions++
	check("cat up", up)
	if r := c.ssh(nil, c.jump(e.login, "web1"), "cat "+bin); r.code != 0 || r.stdout != string(random) {
		t.Fatalf("cat down: code %d, %d bytes", r.code, len(r.stdout))
	}
	sessions++
	scpOpts := []string{"-O", "-q", "-F", c.config, "-P", strconv.Itoa(e.port), "-o", "User=" + e.login + "@web1"}
	if r := run(t, nil, "scp", append(scpOpts, bin, "127.0.0.1:"+filepath.Join(dir, "scp-up.bin"))...); r.code != 0 {
		t.Fatalf("scp -O up: code %d stderr %q", r.code, r.stderr)
	}
	sessions++
	check("scp -O up", filepath.Join(dir, "scp-up.bin"))
	if r := run(t, nil, "scp", append(scpOpts, "127.0.0.1:"+bin, filepath.Join(dir, "scp-down.bin"))...); r.code != 0 {
		t.Fatalf("scp -O down: code %d stderr %q", r.code, r.stderr)
	}
	sessions++
	check("scp -O down", filepath.Join(dir, "scp-down.bin"))
	if _, err := exec.LookPath("rsync"); err != nil {
		t.Fatal("rsync is not installed; .ci/run installs it")
	}
	{
		rsh := "ssh -F " + c.config + " -p " + strconv.Itoa(e.port) + " -l " + e.login + "@web1"
		if r := run(t, nil, "rsync", "-e", rsh, bin, "127.0.0.1:"+filepath.Join(dir, "rsync-up.bin")); r.code != 0 {
			t.Fatalf("rsync up: code %d stderr %q", r.code, r.stderr)
		}
		sessions++
		check("rsync up", filepath.Join(dir, "rsync-up.bin"))
		if r := run(t, nil, "rsync", "-e", rsh, "127.0.0.1:"+bin, filepath.Join(dir, "rsync-down.bin")); r.code != 0 {
			t.Fatalf("rsync down: code %d stderr %q", r.code, r.stderr)
		}
		sessions++
		check("rsync down", filepath.Join(dir, "rsync-down.bin"))
	}

	waitFor(t, 10*time.Second, "every session's end", func() bool { return len(e.audits(audit.TypeSessionEnd)) == sessions })
	for _, ev := range e.audits(audit.TypeSessionEnd) {
		if ev.Outcome != audit.OutcomeOK || ev.Reason != "" || ev.Fields["exit_status"] != "0" {
			t.Errorf("session end %+v; want ok, exit status 0", ev)
		}
	}
	if evs := e.audits(audit.TypeSFTP); len(evs) != 0 {
		t.Errorf("sftp audit %+v; want none", evs)
	}
}

// TestSFTPReusedIDs: the review's reproduction against the real
// sftp-server. A REMOVE and a STAT with the same ID, both answered: the
// REMOVE is audited, and a later REMOVE with that ID, refused, is audited
// as refused. Through the subsystem and through a probed exec.
func TestSFTPReusedIDs(t *testing.T) {
	e := newEnv(t, envOptions{})
	cl := e.webClient(certOptions{})
	for _, form := range []struct {
		name  string
		start func(*ssh.Session) error
	}{
		{"subsystem", func(s *ssh.Session) error { return s.RequestSubsystem("sftp") }},
		{"probed", func(s *ssh.Session) error { return s.Start("env -i " + sftpServerPath) }},
	} {
		dir := t.TempDir()
		important := filepath.Join(dir, "important")
		if err := os.WriteFile(important, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		missing := filepath.Join(dir, "missing")
		audited := len(e.audits(audit.TypeSFTP))
		s, err := cl.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		stdin, _ := s.StdinPipe()
		stdout, _ := s.StdoutPipe()
		if err := form.start(s); err != nil {
			t.Fatal(err)
		}
		status := func() uint32 {
			t.Helper()
			typ, body := readSFTP(t, stdout)
			if typ != fxpStatusT || binary.BigEndian.Uint32(body) != 7 {
				t.Fatalf("%s: got packet type %d %q; want a status for ID 7", form.name, typ, body)
			}
			return binary.BigEndian.Uint32(body[4:])
		}
		stdin.Write(sftpPacket(fxpInitT, uint32(3)))
		if typ, _ := readSFTP(t, stdout); typ != fxpVersionT {
			t.Fatalf("%s: got packet type %d; want VERSION", form.name, typ)
		}
		stdin.Write(append(sftpPacket(fxpRemoveT, uint32(7), important), sftpPacket(fxpStatT, uint32(7), "/tmp")...))
		if code := status(); code != 0 {
			t.Fatalf("%s: remove: status %d", form.name, code)
		}
		if typ, _ := readSFTP(t, stdout); typ != fxpAttrsT {
			t.Fatalf("%s: stat: got packet type %d; want ATTRS", form.name, typ)
		}
		stdin.Write(sftpPacket(fxpRemoveT, uint32(7), missing))
		if code := status(); code != 2 {
			t.Fatalf("%s: remove of a missing file: status %d; want 2", form.name, code)
		}
		stdin.Close()
		io.Copy(io.Discard, stdout)
		s.Close()
		waitFor(t, 5*time.Second, form.name+": the SFTP audit records", func() bool { return len(e.audits(audit.TypeSFTP)) >= audited+2 })
		time.Sleep(100 * time.Millisecond) // nothing else is to come
		evs := e.audits(audit.TypeSFTP)[audited:]
		if len(evs) != 2 ||
			evs[0].Fields["op"] != "remove" || evs[0].Fields["path"] != important || evs[0].Outcome != audit.OutcomeOK ||
			evs[1].Fields["op"] != "remove" || evs[1].Fields["path"] != missing || evs[1].Outcome != audit.OutcomeError || evs[1].Fields["status"] != "2" {
			t.Fatalf("%s: sftp audit %+v; want the remove of %s, then the refused remove of %s", form.name, evs, important, missing)
		}
	}
}

// More SFTP packet types used by the tests.
const (
	fxpStatT  = 17
	fxpAttrsT = 105
)
