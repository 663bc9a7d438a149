package bastion

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/store"
)

func TestExitSignal(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := e.webSession(certOptions{})
	err := s.Run("kill -KILL $$")
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.Signal() != "KILL" {
		t.Fatalf("got %v; want exit signal KILL", err)
	}
	// The real client reports a signal death as 255, as with sshd alone.
	oc := e.client(e.issue(certOptions{}))
	if r := oc.ssh(nil, oc.direct(e.login, "web1"), "kill -TERM $$"); r.code != 255 {
		t.Fatalf("got code %d; want 255 (stderr %q)", r.code, r.stderr)
	}
}

func TestPTY(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(e.issue(certOptions{}))
	for _, args := range [][]string{c.direct(e.login, "web1", "-tt"), c.jump(e.login, "web1", "-tt")} {
		r := c.ssh(nil, args, "tty; echo TERM=$TERM")
		if r.code != 0 || !strings.Contains(r.stdout, "/dev/pts/") {
			t.Fatalf("got code %d stdout %q stderr %q; want a pts", r.code, r.stdout, r.stderr)
		}
	}
	// A grant without pty: the request is refused, the command still runs.
	k, cert := e.issue(certOptions{githubID: 1002, login: "rita"})
	rc := e.client(k, cert)
	// With -tt OpenSSH gives up when the pty is refused, as with sshd.
	r := rc.ssh(nil, rc.direct(e.login, "web1", "-tt"), "tty")
	if r.code != 255 || !strings.Contains(r.stderr, "PTY allocation request failed") {
		t.Fatalf("got code %d stdout %q stderr %q; want pty refused", r.code, r.stdout, r.stderr)
	}
	cl, err := e.xclient(e.login+"@web1", certSigner(t, k, cert))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	s, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RequestPty("xterm", 24, 80, nil); err == nil {
		t.Fatal("pty granted; want refused")
	}
	out, _ := s.CombinedOutput("tty")
	if !strings.Contains(string(out), "does not permit a pty") || !strings.Contains(string(out), "not a tty") {
		t.Fatalf("got %q; want the refusal and the command's output", out)
	}
}

// TestInteractiveRecorded drives a shell through a pty and checks the
// recording replays with asciinema to what was typed and printed.
func TestInteractiveRecorded(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(e.issue(certOptions{}))
	script := "echo one-$((40+2))\nexit 7\n"
	r := c.ssh(strings.NewReader(script), c.direct(e.login, "web1", "-tt"))
	if r.code != 7 || !strings.Contains(r.stdout, "one-42") {
		t.Fatalf("got code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	// The session ends at the bastion shortly after the client exits.
	waitFor(t, 5*time.Second, "session.end", func() bool { return len(e.audits(audit.TypeSessionEnd)) == 1 })
	recs, err := e.store.Recordings(context.Background(), store.RecordingFilter{})
	if err != nil || len(recs) != 1 {
		t.Fatalf("recordings: %v %v", recs, err)
	}
	path := filepath.Join(e.recDir, filepath.FromSlash(recs[0].Path))
	if b, err := os.ReadFile(path); err != nil || !strings.Contains(string(b), `"final `) {
		t.Fatalf("recording %s: %v\n%s", path, err, b)
	}
	// asciinema needs a terminal; script(1) gives it one.
	out, err := exec.Command("script", "-qec", "asciinema cat "+path, "/dev/null").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "one-42") {
		t.Fatalf("asciinema cat: %v\n%s", err, out)
	}
	if recs[0].ExitStatus != 7 || recs[0].User != "alice" || recs[0].Login != e.login || recs[0].Host != "web1" || !recs[0].PTY {
		t.Fatalf("index row %+v", recs[0])
	}
	ends := e.audits(audit.TypeSessionEnd)
	if len(ends) != 1 || ends[0].Fields["exit_status"] != "7" {
		t.Fatalf("session.end events %+v; want one with exit status 7", ends)
	}
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// TestBulkIntegrity moves a few MiB each way through both forms and checks
// every byte.
func TestBulkIntegrity(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(e.issue(certOptions{}))
	data := make([]byte, 8<<20+123)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{c.direct(e.login, "web1"), c.jump(e.login, "web1")} {
		r := c.ssh(bytes.NewReader(data), args, "sha256sum")
		if r.code != 0 || !strings.HasPrefix(r.stdout, sha(data)) {
			t.Fatalf("upload: got %q %q code %d", r.stdout, r.stderr, r.code)
		}
		f := filepath.Join(t.TempDir(), "blob")
		if err := os.WriteFile(f, data, 0o644); err != nil {
			t.Fatal(err)
		}
		r = c.ssh(nil, args, "cat", f)
		if r.code != 0 || sha([]byte(r.stdout)) != sha(data) {
			t.Fatalf("download: got %d bytes code %d stderr %q", len(r.stdout), r.code, r.stderr)
		}
	}
}

func TestSFTPServerCommand(t *testing.T) {
	for _, tc := range []struct {
		command string
		want    bool
	}{
		{"/usr/lib/openssh/sftp-server", true},
		{"sftp-server", true},
		{"/usr/libexec/sftp-server -l INFO", true},
		{"'/usr/lib/openssh/sftp-server'", true},
		{"exec /usr/lib/openssh/sftp-server", true},
		{"LC_ALL=C sudo /usr/lib/openssh/sftp-server", true},
		{"env -i sftp-server", false},
		{"ls /usr/lib/openssh/sftp-server", false},
		{"/usr/lib/openssh/sftp-server-wrapper", false},
		{"/usr/lib/openssh/sftp-server;sh", false},
		{"", false},
		{"scp -t /tmp", false},
	} {
		if got := sftpServerCommand(tc.command); got != tc.want {
			t.Errorf("sftpServerCommand(%q) = %v; want %v", tc.command, got, tc.want)
		}
	}
}

// TestSubsystemNameEscaped: the name of a refused subsystem is the
// client's; it is escaped and cut short in the audit record and in the
// message to the user.
func TestSubsystemNameEscaped(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := e.webSession(certOptions{})
	errPipe, _ := s.StderrPipe()
	var stderr syncBuffer
	go io.Copy(&stderr, errPipe)
	name := "\x1b]52;c;cm0gLXJmIH4=\a" + strings.Repeat("x", 30000)
	if err := s.RequestSubsystem(name); err == nil {
		t.Fatal("subsystem accepted")
	}
	deny := e.lastDeny()
	if !strings.Contains(deny, `subsystem "\x1b]52;c;`) || strings.ContainsAny(deny, "\x1b\a") || len(deny) > 200 {
		t.Errorf("deny reason %q; want the name escaped and cut short", deny)
	}
	waitFor(t, 5*time.Second, "the message to the user", func() bool { return strings.Contains(stderr.String(), "is not supported") })
	if msg := stderr.String(); strings.ContainsAny(msg, "\x1b\a") || len(msg) > 200 {
		t.Errorf("message %q; want the name escaped and cut short", msg)
	}
}
