package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/internal/sshdtest"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// binary builds the sallyport command once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sallyport-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "sallyport")
		out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = err
			builtBin = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("go build: %v\n%s", buildErr, builtBin)
	}
	return builtBin
}

var devURL = regexp.MustCompile(`Sallyport dev server: (http://127\.0\.0\.1:\d+)`)

// devProc is a `sallyport dev` process started by startDevProc.
type devProc struct {
	cmd            *exec.Cmd
	base, banner   string
	stderr         *lockedBuffer
	done           chan error
	stopOnce       sync.Once
	stopErr        error
	stopWithinTime bool
}

// startDevProc runs `sallyport dev` as a process and returns it, with its
// URL and the banner it printed. The process is interrupted, and killed if
// it lingers, when the test ends.
func startDevProc(t *testing.T, data string) *devProc {
	t.Helper()
	cmd := exec.Command(binary(t), "dev", "--listen", "127.0.0.1:0", "--bastion", "127.0.0.1:0", "--data", data)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	d := &devProc{cmd: cmd, stderr: new(lockedBuffer), done: make(chan error, 1)}
	cmd.Stderr = d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if err := d.stop(); err != nil {
			t.Errorf("sallyport dev exited with %v after SIGINT\n%s", err, d.stderr.String())
		}
		if !d.stopWithinTime {
			t.Error("sallyport dev did not stop within 30s of SIGINT")
		}
	})
	found := make(chan string, 1)
	go func() {
		// The banner ends with the ssh-config line.
		var b strings.Builder
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "sallyport ssh-config --server") {
				found <- b.String()
				break
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case d.banner = <-found:
	case err := <-d.done:
		t.Fatalf("sallyport dev exited: %v\n%s", err, d.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("sallyport dev printed no banner within 30s\n%s", d.stderr.String())
	}
	m := devURL.FindStringSubmatch(d.banner)
	if m == nil {
		t.Fatalf("sallyport dev printed no URL:\n%s", d.banner)
	}
	d.base = m[1]
	return d
}

// stop interrupts dev, as Ctrl-C does, and waits up to 30s for it to exit
// (then kills it); it returns how it exited. Only the first call acts.
func (d *devProc) stop() error {
	d.stopOnce.Do(func() {
		d.cmd.Process.Signal(syscall.SIGINT)
		select {
		case d.stopErr = <-d.done:
			d.stopWithinTime = true
		case <-time.After(30 * time.Second):
			d.cmd.Process.Kill()
			d.stopErr = <-d.done
		}
	})
	return d.stopErr
}

// TestDevLoginSSH is the whole path a volunteer takes: `sallyport dev`,
// `sallyport login --dev-user alice` (both as processes), then the real ssh
// client with the certificate into a real sshd that trusts the user CA.
func TestDevLoginSSH(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	dev := startDevProc(t, data)
	base := dev.base
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	keys := t.TempDir()

	// A second dev on the same data folder refuses at once, naming the
	// process that has it, and leaves the first one's policy alone.
	t.Run("fail/data-in-use", func(t *testing.T) {
		policyPath := filepath.Join(data, "policy.yaml")
		before, err := os.ReadFile(policyPath)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, binary(t), "dev", "--listen", "127.0.0.1:0", "--bastion", "127.0.0.1:0", "--data", data).CombinedOutput()
		want := fmt.Sprintf("data folder %s is in use by another sallyport (pid %d); stop it or use another --data", data, dev.cmd.Process.Pid)
		if err == nil || !strings.Contains(string(out), want) {
			t.Errorf("second dev: %v\n%s\nwant %q", err, out, want)
		}
		if after, _ := os.ReadFile(policyPath); string(after) != string(before) {
			t.Errorf("the second dev changed the first one's policy:\n%s", after)
		}
	})

	tests := []struct {
		name    string
		user    string
		ok      bool
		message string
	}{
		{"ok/alice", "alice", true, "principals: deploy, root"},
		{"fail/not-in-org", "erin", false, "not a member of the example-oss organisation"},
		{"fail/invitation-pending", "dave", false, "pending"},
		{"fail/unknown-user", "nobody", false, "no demo user nobody; demo users are alice, bob, carol, "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := filepath.Join(keys, tc.user)
			cmd := exec.CommandContext(ctx, binary(t), "login", "--server", base, "--dev-user", tc.user, "--key", key)
			cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
			out, err := cmd.CombinedOutput()
			if (err == nil) != tc.ok {
				t.Fatalf("login: err = %v; want ok=%v\n%s", err, tc.ok, out)
			}
			if !strings.Contains(string(out), tc.message) {
				t.Errorf("login output lacks %q:\n%s", tc.message, out)
			}
			if strings.Contains(string(out), "/authorize") || strings.Contains(string(out), "<") {
				t.Errorf("login output holds a URL or HTML:\n%s", out)
			}
			if !tc.ok {
				if _, err := os.Stat(key + "-cert.pub"); err == nil {
					t.Error("a refused login wrote a certificate")
				}
				return
			}
			if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("new key %s: %v, mode %v; want 0600", key, err, fi.Mode())
			}
			out, err = exec.CommandContext(ctx, binary(t), "status", "--key", key).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "alice github:1001 serial=") {
				t.Errorf("status: %v\n%s", err, out)
			}
		})
	}

	// Signing in as someone else with a key that holds a certificate says
	// whose certificate is replaced; signing in again as the same person
	// does not.
	t.Run("ok/replace-identity", func(t *testing.T) {
		key := filepath.Join(t.TempDir(), "shared")
		for _, tc := range []struct{ user, want string }{
			{"alice", ""},
			{"bob", "replacing the certificate of alice with one for bob"},
			{"bob", ""},
		} {
			cmd := exec.CommandContext(ctx, binary(t), "login", "--server", base, "--dev-user", tc.user, "--key", key)
			cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("login %s: %v\n%s", tc.user, err, out)
			}
			if got := strings.Contains(string(out), "replacing"); got != (tc.want != "") || !strings.Contains(string(out), tc.want) {
				t.Errorf("login %s said:\n%s\nwant %q", tc.user, out, tc.want)
			}
		}
	})

	t.Run("ok/ssh-agent", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "agent.sock")
		agentCmd := exec.Command("ssh-agent", "-D", "-a", sock)
		if err := agentCmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { agentCmd.Process.Kill(); agentCmd.Wait() })
		for i := 0; i < 100; i++ {
			if _, err := os.Stat(sock); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		cmd := exec.CommandContext(ctx, binary(t), "login", "--server", base, "--dev-user", "bob", "--key", filepath.Join(keys, "bob"))
		cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "Added to ssh-agent") {
			t.Fatalf("login: %v\n%s", err, out)
		}
		list := exec.CommandContext(ctx, "ssh-add", "-L")
		list.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
		out, err := list.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "ssh-ed25519-cert-v01@openssh.com") || !strings.Contains(string(out), "sallyport bob github:1002") {
			t.Errorf("ssh-add -L: %v\n%s; want bob's certificate", err, out)
		}
	})

	userCA, err := os.ReadFile(filepath.Join(data, ca.KindUser.FileName()+".pub"))
	if err != nil {
		t.Fatal(err)
	}
	caKey, _, _, _, err := ssh.ParseAuthorizedKey(userCA)
	if err != nil {
		t.Fatal(err)
	}
	srv := sshdtest.Start(t, sshdtest.Config{TrustedUserCAKeys: []ssh.PublicKey{caKey}})
	out, err := srv.Command(ctx, filepath.Join(keys, "alice"), "echo", "signed-in-through-sallyport").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "signed-in-through-sallyport") {
		t.Fatalf("ssh with the certificate: %v\n%s\n%s", err, out, srv.Log())
	}
	// Without the certificate the same key gets nowhere.
	os.Rename(filepath.Join(keys, "alice-cert.pub"), filepath.Join(keys, "alice-cert.off"))
	if out, err := srv.Command(ctx, filepath.Join(keys, "alice"), "true").CombinedOutput(); err == nil {
		t.Errorf("ssh without the certificate succeeded:\n%s", out)
	}
	// An edit of the policy is confirmed; one failing its own tests is
	// refused with why and how to see more.
	policyPath := filepath.Join(data, "policy.yaml")
	good, err := os.ReadFile(policyPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(policyPath, append(good, "# edited\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	waitLog(t, dev.stderr, "policy loaded", 1)
	bad := breakPolicyTest(string(good))
	if bad == string(good) {
		t.Fatal("breakPolicyTest did not change the dev policy")
	}
	if err := os.WriteFile(policyPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	waitLog(t, dev.stderr, "run `sallyport policy test "+policyPath+"` for details", 1)
	if log := dev.stderr.String(); !strings.Contains(log, "deploy@web1: allowed, want denied") {
		t.Errorf("the refusal does not say why the test fails:\n%s", log)
	}
	if err := os.WriteFile(policyPath, good, 0o600); err != nil {
		t.Fatal(err)
	}
	waitLog(t, dev.stderr, "policy loaded", 2)

	audit, err := os.ReadFile(filepath.Join(data, auditFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"type":"login","actor":"github:1001"`, `"type":"issue","actor":"github:1001"`, `"type":"login","actor":"github-login:erin"`} {
		if !strings.Contains(string(audit), want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
}

// TestDevBastion follows what `sallyport dev` prints, as a volunteer would:
// the login as alice, then the real ssh client through the bastion to the
// demo target (a real sshd trusting only the session CA) in both target
// forms, bob's refusal, and the recordings: listed, verified intact, and
// played by asciinema.
func TestDevBastion(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	dev := startDevProc(t, data)
	banner := dev.banner
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	printed := func(substrs ...string) []string {
		t.Helper()
	lines:
		for _, l := range strings.Split(banner, "\n") {
			l = strings.TrimSpace(l)
			if !strings.HasPrefix(l, "ssh ") && !strings.HasPrefix(l, "sallyport ") {
				continue
			}
			for _, s := range substrs {
				if !strings.Contains(l, s) {
					continue lines
				}
			}
			return strings.Fields(l)
		}
		t.Fatalf("sallyport dev printed no command with %q:\n%s", substrs, banner)
		return nil
	}
	run := func(t *testing.T, args []string, extra ...string) (string, string, error) {
		t.Helper()
		name := args[0]
		if name == "sallyport" {
			name = binary(t)
		}
		cmd := exec.CommandContext(ctx, name, append(args[1:len(args):len(args)], extra...)...)
		cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	mustRun := func(t *testing.T, args []string, extra ...string) string {
		t.Helper()
		out, errOut, err := run(t, args, extra...)
		if err != nil {
			t.Fatalf("%s: %v\n%s%s", strings.Join(append(args, extra...), " "), err, out, errOut)
		}
		return out
	}
	if !strings.Contains(banner, "demo target:      host \"demo\", a real sshd on 127.0.0.1:") {
		t.Fatalf("sallyport dev started no demo target:\n%s", banner)
	}
	mustRun(t, printed("sallyport login", "--dev-user alice"))

	jump := printed("ssh -F", " -J ")
	name := printed("ssh -F", " -p ")
	tests := []struct {
		name string
		cmd  []string
		want string
	}{
		{"ok/proxyjump", append(jump, "echo", "through-proxyjump"), "through-proxyjump"},
		{"ok/target-in-user-name", append(name, "echo", "through-user-name"), "through-user-name"},
		{"ok/pty", append([]string{"ssh", "-tt"}, append(name[1:len(name):len(name)], "echo", "pty-session")...), "pty-session"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if out := mustRun(t, tc.cmd); !strings.Contains(out, tc.want) {
				t.Errorf("got %q; want %q", out, tc.want)
			}
		})
	}
	t.Run("fail/bob-not-granted", func(t *testing.T) {
		mustRun(t, printed("sallyport login", "--dev-user bob"))
		out, errOut, err := run(t, printed("ssh -o UserKnownHostsFile"), "echo", "should-not-run")
		if err == nil || strings.Contains(out, "should-not-run") {
			t.Fatalf("bob got in: %v\n%s", err, out)
		}
		if !regexp.MustCompile(`(?m)^sallyport: .*not valid for login`).MatchString(errOut) {
			t.Errorf("ssh said %q; want one line from the bastion saying why", errOut)
		}
	})

	list := mustRun(t, printed("sallyport recordings list"))
	for _, want := range []string{"through-proxyjump", "through-user-name", "pty-session"} {
		var id string
		for _, l := range strings.Split(list, "\n") {
			if strings.Contains(l, want) && strings.Contains(l, "@demo") && strings.Contains(l, "alice") {
				id = strings.Fields(l)[0]
			}
		}
		if id == "" {
			t.Errorf("recordings list lacks the session %q:\n%s", want, list)
			continue
		}
		verify := printed("sallyport recordings verify")
		out := mustRun(t, append(verify[:len(verify)-1:len(verify)-1], id))
		if !strings.Contains(out, "intact") {
			t.Errorf("recordings verify %s: %s", id, out)
		}
		path := strings.TrimSuffix(strings.Fields(out)[0], ":")
		cat := exec.CommandContext(ctx, "script", "-qec", "asciinema cat "+path, "/dev/null")
		if got, err := cat.Output(); err != nil || !strings.Contains(string(got), want) {
			t.Errorf("asciinema cat %s: %v\n%q; want %q", path, err, got, want)
		}
	}

	// Ctrl-C with a session open says at once that sessions are being
	// ended, rather than waiting silently.
	t.Run("ok/stop-with-open-session", func(t *testing.T) {
		args := printed("ssh -F", " -p ")
		cmd := exec.CommandContext(ctx, args[0], append(args[1:len(args):len(args)], "echo open-session-started; sleep 60")...)
		cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		if line, _ := bufio.NewReader(out).ReadString('\n'); line != "open-session-started\n" {
			t.Fatalf("the session did not start: %q", line)
		}
		dev.cmd.Process.Signal(syscall.SIGINT)
		deadline := time.Now().Add(2 * time.Second)
		for !strings.Contains(dev.stderr.String(), "stopping: ending open sessions in up to 10s") {
			if time.Now().After(deadline) {
				t.Fatalf("dev said nothing within 2s of Ctrl-C with a session open:\n%s", dev.stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
