package bastion

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
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
	"github.com/sallyport/sallyport/recording"
	"github.com/sallyport/sallyport/store"
)

// castFile is a recording read back: its header, the bytes of its output
// and input events, its resize events and its end record.
type castFile struct {
	path    string
	header  recording.Header
	out, in []byte
	resizes []string
	end     struct {
		Stdin  recording.StreamSummary `json:"stdin"`
		Stdout recording.StreamSummary `json:"stdout"`
	}
}

// recordings returns the recordings of the test's sessions, oldest first,
// once n sessions have ended.
func (e *env) recordings(n int) []castFile {
	e.t.Helper()
	waitFor(e.t, 10*time.Second, "the sessions to end", func() bool { return len(e.audits(audit.TypeSessionEnd)) >= n })
	rows, err := e.store.Recordings(context.Background(), store.RecordingFilter{})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []castFile
	for i := len(rows) - 1; i >= 0; i-- {
		out = append(out, readCast(e.t, filepath.Join(e.recDir, filepath.FromSlash(rows[i].Path))))
	}
	return out
}

func readCast(t testing.TB, path string) castFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := recording.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	c := castFile{path: path, header: rd.Header}
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			return c
		}
		if err != nil {
			t.Fatal(err)
		}
		switch ev.Type {
		case "o":
			c.out = append(c.out, recording.DecodeBytes(ev.Data)...)
		case "i":
			c.in = append(c.in, recording.DecodeBytes(ev.Data)...)
		case "r":
			c.resizes = append(c.resizes, ev.Data)
		case "sallyport":
			if arg, ok := strings.CutPrefix(ev.Data, "end "); ok {
				if err := json.Unmarshal([]byte(arg), &c.end); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// asciinemaCat replays a recording with the real asciinema.
func asciinemaCat(t testing.TB, path string) string {
	t.Helper()
	// asciinema needs a terminal; script(1) gives it one.
	out, err := exec.Command("script", "-qec", "asciinema cat "+path, "/dev/null").CombinedOutput()
	if err != nil {
		t.Fatalf("asciinema cat: %v\n%s", err, out)
	}
	return string(out)
}

// recordInputRoles is defaultRoles with record_input set for the infra role.
var recordInputRoles = strings.Replace(defaultRoles, "permissions: [pty, port-forwarding]",
	"permissions: [pty, port-forwarding]\n    record_input: true", 1)

// TestShellWithoutPTYRecordedInFull: ssh -T opens a shell without a pty;
// all of its output is recorded, through both target forms, and the
// commands typed into it only when the policy's record_input asks (they
// may hold secrets: sudo -S reads a password there).
func TestShellWithoutPTYRecordedInFull(t *testing.T) {
	// Output well past the 64 KiB kept of an exec channel.
	script := "echo one-$((40+2))\nhead -c 100000 /dev/zero | tr '\\0' x; echo\necho secret-typed >/dev/null\nexit 7\n"
	for _, record := range []bool{false, true} {
		roles := defaultRoles
		if record {
			roles = recordInputRoles
		}
		e := newEnv(t, envOptions{policy: roles})
		c := e.client(e.issue(certOptions{}))
		forms := [][]string{c.direct(e.login, "web1", "-T"), c.jump(e.login, "web1", "-T")}
		for _, args := range forms {
			r := c.ssh(strings.NewReader(script), args)
			if r.code != 7 || !strings.Contains(r.stdout, "one-42") {
				t.Fatalf("record_input %v: got code %d stdout %.200q stderr %q", record, r.code, r.stdout, r.stderr)
			}
		}
		casts := e.recordings(len(forms))
		if len(casts) != len(forms) {
			t.Fatalf("record_input %v: %d recordings; want %d", record, len(casts), len(forms))
		}
		for _, cf := range casts {
			h := cf.header
			if h.Command != "" || h.Sallyport.PTY || h.Sallyport.Input != record || h.Sallyport.BulkHead != 0 {
				t.Errorf("record_input %v: header %+v %+v; want a shell without pty, input=%v, not bulk", record, h, h.Sallyport, record)
			}
			wantIn := ""
			if record {
				wantIn = script
			}
			if string(cf.in) != wantIn {
				t.Errorf("record_input %v: input events %q; want %q", record, cf.in, wantIn)
			}
			if s := cf.end.Stdin; s.Bytes != int64(len(script)) || s.Kept != int64(len(wantIn)) || s.SHA256 != "" {
				t.Errorf("record_input %v: end record stdin %+v; want %d bytes counted, %d kept", record, s, len(script), len(wantIn))
			}
			raw, err := os.ReadFile(cf.path)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(raw, []byte("secret-typed")) != record {
				t.Errorf("record_input %v: typed command in the file: %v", record, !record)
			}
			want := "one-42\n" + strings.Repeat("x", 100000) + "\n"
			if string(cf.out) != want {
				t.Errorf("record_input %v: output events: %d bytes; want all %d", record, len(cf.out), len(want))
			}
			if got := asciinemaCat(t, cf.path); !strings.Contains(got, "one-42") || !strings.Contains(got, strings.Repeat("x", 100000)) {
				t.Errorf("asciinema cat lacks the output: %.300q", got)
			}
		}
	}
}

// TestPTYWithoutReplyRecordedInFull: a pty requested without asking for a
// reply is still a pty on the target, so the session is recorded in full,
// not by the bulk rule for commands without one.
func TestPTYWithoutReplyRecordedInFull(t *testing.T) {
	e := newEnv(t, envOptions{})
	ch, reqs, err := e.webClient(certOptions{}).OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(reqs)
	if _, err := ch.SendRequest("pty-req", false, ssh.Marshal(ptyRequest{Term: "xterm", Cols: 80, Rows: 24})); err != nil {
		t.Fatal(err)
	}
	cmd := "tty; head -c 100000 /dev/zero | tr '\\0' a; echo; echo tail-kept"
	if ok, err := ch.SendRequest("exec", true, ssh.Marshal(struct{ Command string }{cmd})); err != nil || !ok {
		t.Fatalf("exec: %v %v", ok, err)
	}
	out, _ := io.ReadAll(ch)
	ch.Close()
	if !bytes.HasPrefix(out, []byte("/dev/pts/")) {
		t.Fatalf("the target gave no pty: %.40q", out)
	}
	cf := e.recordings(1)[0]
	if !cf.header.Sallyport.PTY || cf.header.Sallyport.BulkHead != 0 || !strings.Contains(string(cf.out), "tail-kept") || len(cf.out) < 100000 {
		t.Fatalf("recording: pty %v, bulk head %d, %d bytes kept, tail kept %v; want the pty session in full",
			cf.header.Sallyport.PTY, cf.header.Sallyport.BulkHead, len(cf.out), strings.Contains(string(cf.out), "tail-kept"))
	}
}

// TestExecOfShellKeptAsText: `ssh host sh < script` is an exec of a shell
// without a pty; its output, text, is kept past the 64 KiB head like a
// shell's, while a binary stream on the same rule keeps only the head.
func TestExecOfShellKeptAsText(t *testing.T) {
	e := newEnv(t, envOptions{})
	cl := e.webClient(certOptions{})
	script := "head -c 70000 /dev/zero | tr '\\0' a; echo; echo MARK$((40+2))\nexit\n"
	for i, tc := range []struct {
		name    string
		command string
		stdin   string
		want    string // at the end of what is kept
		full    bool
	}{
		{"ok/script-piped-to-sh", "sh", script, "MARK42\n", true},
		{"ok/binary-stream", "head -c 200000 /dev/urandom", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := cl.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			s.Stdin = strings.NewReader(tc.stdin)
			out, err := s.Output(tc.command)
			if err != nil {
				t.Fatal(err)
			}
			all := e.recordings(i + 1)
			cf := all[i]
			if cf.header.Command != tc.command {
				t.Fatalf("recording of %q; want %q", cf.header.Command, tc.command)
			}
			if tc.full {
				if string(cf.out) != string(out) || !strings.HasSuffix(string(cf.out), tc.want) {
					t.Fatalf("kept %d of %d bytes of text output; want all, ending %q", len(cf.out), len(out), tc.want)
				}
				return
			}
			if len(cf.out) != 64<<10 || cf.end.Stdout.Bytes != int64(len(out)) || cf.end.Stdout.SHA256 == "" {
				t.Fatalf("kept %d bytes, end %+v; want the 64 KiB head, %d bytes counted and hashed", len(cf.out), cf.end.Stdout, len(out))
			}
		})
	}
}

// TestExecInputHead: an exec channel without a pty keeps the first 64 KiB
// of its input, and not more, only when record_input is on; without it no
// input is kept, but its byte count and SHA-256 are.
func TestExecInputHead(t *testing.T) {
	data := make([]byte, 200<<10)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	for _, record := range []bool{false, true} {
		roles := defaultRoles
		want, wantSum := []byte{}, ""
		if record {
			roles = recordInputRoles
			want, wantSum = data[:recording.DefaultBulkHead], sha(data)
		}
		e := newEnv(t, envOptions{policy: roles})
		c := e.client(e.issue(certOptions{}))
		r := c.ssh(bytes.NewReader(data), c.direct(e.login, "web1"), "sha256sum")
		if r.code != 0 || !strings.HasPrefix(r.stdout, sha(data)) {
			t.Fatalf("record_input %v: got code %d stdout %q stderr %q", record, r.code, r.stdout, r.stderr)
		}
		cf := e.recordings(1)[0]
		if h := cf.header.Sallyport; h.Input != record || h.BulkHead != recording.DefaultBulkHead || h.PTY {
			t.Errorf("record_input %v: header %+v; want input=%v with a %d-byte head", record, h, record, recording.DefaultBulkHead)
		}
		if !bytes.Equal(cf.in, want) {
			t.Errorf("record_input %v: input events: %d bytes; want exactly the first %d", record, len(cf.in), len(want))
		}
		// The input's digest only with its head: unsalted, it would give
		// a short input (a password) away.
		if s := cf.end.Stdin; s.Bytes != int64(len(data)) || s.Kept != int64(len(want)) || s.SHA256 != wantSum {
			t.Errorf("record_input %v: end record stdin %+v", record, s)
		}
		rows, err := e.store.Recordings(context.Background(), store.RecordingFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if rows[0].InputRecorded != record || rows[0].StdinSHA256 != wantSum {
			t.Errorf("record_input %v: index row input recorded %v, stdin sha256 %q", record, rows[0].InputRecorded, rows[0].StdinSHA256)
		}
	}
}

// TestWindowSizeOutOfRange: a pty request and window changes with sizes
// the recording cannot hold do not end the session; they are forwarded and
// not recorded.
func TestWindowSizeOutOfRange(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := e.webSession(certOptions{})
	if err := s.RequestPty("xterm", 0, 0, ssh.TerminalModes{ssh.ECHO: 0}); err != nil {
		t.Fatalf("pty with size 0x0: %v", err)
	}
	stdin, err := s.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	s.Stdout = &out
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	for _, size := range [][2]int{{0, 0}, {20000, 20000}, {24, 0}, {0, 80}, {1 << 31, 80}, {30, 100}} {
		if err := s.WindowChange(size[0], size[1]); err != nil {
			t.Fatalf("window change %v: %v", size, err)
		}
	}
	if _, err := io.WriteString(stdin, "stty size; echo alive-$((1+1)); exit 3\n"); err != nil {
		t.Fatal(err)
	}
	err = s.Wait()
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 3 || !strings.Contains(out.String(), "alive-2") {
		t.Fatalf("got %v, output %q; want exit status 3 and alive-2", err, out.String())
	}
	// The last, valid size reached the target.
	if !strings.Contains(out.String(), "30 100") {
		t.Errorf("stty size: %q; want 30 100", out.String())
	}
	cf := e.recordings(1)[0]
	if cf.header.Width != 80 || cf.header.Height != 24 || strings.Join(cf.resizes, " ") != "100x30" {
		t.Errorf("header %dx%d, resizes %q; want 80x24 and only 100x30", cf.header.Width, cf.header.Height, cf.resizes)
	}
	if end := e.audits(audit.TypeSessionEnd); end[0].Reason != "" || end[0].Fields["recording_failure"] != "" {
		t.Errorf("session end %+v; want a normal end", end[0])
	}
}
