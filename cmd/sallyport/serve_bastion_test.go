package main

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/internal/githubtest"
	"github.com/sallyport/sallyport/internal/sshdtest"
	"github.com/sallyport/sallyport/store"
)

// endWithin bounds how long a live session may outlive the change that
// ends it in these tests (revocation_poll and github.refresh are short).
const endWithin = 20 * time.Second

// TestServeBastion runs `sallyport serve` with its bastion in front of a
// real sshd, and checks the wiring of continuous authorisation: a live
// session through the real ssh client ends, with the reason, when its
// certificate is revoked with `sallyport ca revoke`, when the person is
// suspended (in the store, or with `sallyport ca revoke --identity`), when
// a policy reload removes the access, and when the person leaves the team
// granting it.
func TestServeBastion(t *testing.T) {
	gh := githubtest.New(t)
	users, err := gh.AddDemoUsers("example-oss")
	if err != nil {
		t.Fatal(err)
	}
	var alice githubtest.User
	for _, u := range users {
		if u.Login == "alice" {
			alice = u
		}
	}
	listen, bastionAddr := freeAddr(t), freeAddr(t)
	if err := gh.RegisterOAuthApp(githubtest.OAuthApp{ClientID: "test-app", ClientSecret: "s3cret-value", CallbackURL: "http://" + listen + "/auth/github/callback"}); err != nil {
		t.Fatal(err)
	}
	cfg := serveSetup(t, gh, listen, fmt.Sprintf(`  org_token: {file: org-token}
  refresh: 300ms
policy_poll: 100ms
bastion_listen: %s
bastion_names: [127.0.0.1]
bastion_limits: {revocation_poll: 200ms}
limits: {sign_in_per_minute: 60}
`, bastionAddr))
	dir := filepath.Dir(cfg)
	data := filepath.Join(dir, "data")
	if err := os.WriteFile(filepath.Join(dir, "org-token"), []byte(gh.TokenWithScopes(users[0], "read:org")), 0o600); err != nil {
		t.Fatal(err)
	}
	target := startTarget(t, data)
	policyPath := filepath.Join(dir, "policy.yaml")
	withDemo, err := withDemoTarget(devPolicy, target.Addr, target.User)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(policyPath, withDemo, 0o600); err != nil {
		t.Fatal(err)
	}

	// A recording an earlier bastion left unfinished (killed mid-session)
	// is closed when the bastion starts, not shown as running for ever.
	pre, err := store.Open(t.Context(), filepath.Join(data, databaseFile), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	left := store.Recording{ID: "left-running", Identity: "github:1", Login: "root", Host: demoHost, Path: "2026/01/left-running.cast",
		Start: time.Now().Add(-time.Hour).UTC(), ExitStatus: -1}
	if err := pre.AddRecording(t.Context(), left); err != nil {
		t.Fatal(err)
	}
	pre.Close()

	stdout, stderr := startServe(t, cfg)
	waitListening(t, listen, stderr)
	waitListening(t, bastionAddr, stderr)
	idx, err := store.Open(t.Context(), filepath.Join(data, databaseFile), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	if r, err := idx.Recording(t.Context(), left.ID); err != nil || r.Reason != interruptedReason || !r.End.Equal(r.Start) {
		t.Errorf("the unfinished recording's row: %+v %v; want it ended at its start (no file) with %q", r, err, interruptedReason)
	}
	if !strings.Contains(stderr.String(), "recording interrupted by an earlier stop") {
		t.Errorf("serve did not log the interrupted recording:\n%s", stderr.String())
	}
	if !strings.Contains(stdout.String(), "sallyport bastion on "+bastionAddr) {
		t.Errorf("serve did not say where the bastion listens:\n%s", stdout.String())
	}
	if fi, err := os.Stat(filepath.Join(data, bastionHostKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("bastion host key: %v, %v; want a 0600 file in the data folder", err, fi)
	}

	keys := t.TempDir()
	knownHosts := filepath.Join(keys, "known_hosts")
	hostCA := runCLIKey(t, filepath.Join(data, ca.KindHost.FileName()+".pub"))
	if err := os.WriteFile(knownHosts, []byte("@cert-authority * "+hostCA+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// loginWith runs `sallyport login` as alice with the key file name.
	loginWith := func(name string) (key string, out []byte, err error) {
		key = filepath.Join(keys, name)
		cmd := exec.Command(binary(t), "login", "--server", "http://"+listen, "--dev-user", "alice", "--key", key)
		cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
		out, err = cmd.CombinedOutput()
		return key, out, err
	}
	keyName := "alice" // the suspend subtest revokes it, and moves on to another
	login := func(t *testing.T) (key string, serial uint64) {
		t.Helper()
		key, out, err := loginWith(keyName)
		if err != nil {
			t.Fatalf("login: %v\n%s", err, out)
		}
		return key, certSerial(t, key+"-cert.pub")
	}
	_, port, _ := net.SplitHostPort(bastionAddr)
	// live starts a shell session through the bastion, in the form
	// login@target@bastion, that lasts until something ends it.
	live := func(t *testing.T, key string) (wait func() string) {
		t.Helper()
		cmd := exec.Command("ssh", "-F", "none", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", key,
			"-o", "CertificateFile="+key+"-cert.pub", "-o", "UserKnownHostsFile="+knownHosts, "-o", "StrictHostKeyChecking=yes",
			"-p", port, target.User+"@"+demoHost+"@127.0.0.1", "echo live-session-started; sleep 120")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var errOut lockedBuffer
		cmd.Stderr = &errOut
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		t.Cleanup(func() { cmd.Process.Kill(); <-exited })
		started := make(chan bool, 1)
		go func() {
			sc := bufio.NewScanner(out)
			started <- sc.Scan() && sc.Text() == "live-session-started"
			io.Copy(io.Discard, out)
		}()
		select {
		case ok := <-started:
			if !ok {
				t.Fatalf("the session did not start:\n%s\n%s", errOut.String(), stderr.String())
			}
		case <-time.After(endWithin):
			t.Fatalf("the session did not start within %v:\n%s", endWithin, errOut.String())
		}
		return func() string {
			t.Helper()
			select {
			case <-exited:
				return errOut.String()
			case <-time.After(endWithin):
				t.Fatalf("the live session was not ended within %v:\n%s", endWithin, stderr.String())
			}
			return ""
		}
	}

	t.Run("revoke", func(t *testing.T) {
		key, serial := login(t)
		wait := live(t, key)
		runCLI(t, "ca", "revoke", "--data", data, "--serial", strconv.FormatUint(serial, 10), "--reason", "laptop lost")
		if got := wait(); !strings.Contains(got, "revoked") || !strings.Contains(got, "laptop lost") {
			t.Errorf("ssh said %q; want the revocation and its reason", got)
		}
	})
	t.Run("suspend", func(t *testing.T) {
		key, _ := login(t)
		wait := live(t, key)
		// As the admin page of another server sharing the store would.
		if _, _, err := idx.Suspend(t.Context(), store.Suspension{Subject: "github:1001", Reason: "account hijacked", Actor: "github:1003"}); err != nil {
			t.Fatal(err)
		}
		if got := wait(); !strings.Contains(got, "github:1001 is suspended since") || !strings.Contains(got, "account hijacked") {
			t.Errorf("ssh said %q; want the suspension and its reason", got)
		}
		if _, out, err := loginWith("alice-new"); err == nil || !strings.Contains(string(out), "suspended") {
			t.Errorf("login while suspended: %v\n%s; want it refused, saying why", err, out)
		}
		runCLI(t, "ca", "lift", "--data", data, "--identity", "github:1001", "--reason", "account recovered")
		// `ca revoke --identity` suspends again and revokes every key of
		// alice's; the live session ends either way.
		key, _ = login(t)
		wait = live(t, key)
		runCLI(t, "ca", "revoke", "--data", data, "--identity", "github:1001", "--reason", "hijacked again")
		if got := wait(); !strings.Contains(got, "hijacked again") {
			t.Errorf("ssh said %q; want the reason", got)
		}
		runCLI(t, "ca", "lift", "--data", data, "--identity", "github:1001", "--reason", "recovered again")
		if _, out, err := loginWith("alice-new"); err != nil {
			t.Errorf("login with a new key after the lift: %v\n%s", err, out)
		}
		keyName = "alice-new" // every earlier key of alice's is revoked
	})
	t.Run("policy-reload", func(t *testing.T) {
		key, _ := login(t)
		wait := live(t, key)
		if err := os.WriteFile(policyPath, devPolicy, 0o600); err != nil { // no demo host
			t.Fatal(err)
		}
		if got := wait(); !strings.Contains(got, demoHost) {
			t.Errorf("ssh said %q; want the reason naming %s", got, demoHost)
		}
		loads := strings.Count(stderr.String(), "policy loaded")
		if err := os.WriteFile(policyPath, withDemo, 0o600); err != nil {
			t.Fatal(err)
		}
		waitLog(t, stderr, "policy loaded", loads+1)
	})
	t.Run("team-removal", func(t *testing.T) {
		key, _ := login(t)
		wait := live(t, key)
		gh.RemoveFromTeam(alice, "example-oss", "infra")
		if got := wait(); !strings.Contains(got, "denied") {
			t.Errorf("ssh said %q; want the denial", got)
		}
	})
	audit, err := os.ReadFile(filepath.Join(data, auditFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"live session ended", `"trigger":"certificate revoked"`, `"trigger":"suspensions changed"`, `"trigger":"policy reloaded`, `"trigger":"teams changed`} {
		if !strings.Contains(string(audit), want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
}

// startTarget starts a real sshd that trusts only the session CA of data
// and presents a host certificate from its host CA for the demo host.
func startTarget(t *testing.T, data string) *sshdtest.Server {
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
	authority, err := ca.New(keys, st)
	if err != nil {
		t.Fatal(err)
	}
	_, hostKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(hostKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := authority.IssueHost(t.Context(), ca.HostRequest{PublicKey: pub, Hostnames: []string{demoHost}, TTL: time.Hour, MaxTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return sshdtest.Start(t, sshdtest.Config{TrustedUserCAKeys: []ssh.PublicKey{keys.Session.PublicKey()}, HostKey: hostKey, HostCertificate: cert})
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitListening(t *testing.T, addr string, log *lockedBuffer) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s after 15s:\n%s", addr, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLog waits until want occurs at least n times in log.
func waitLog(t *testing.T, log *lockedBuffer, want string, n int) {
	t.Helper()
	deadline := time.Now().Add(endWithin)
	for strings.Count(log.String(), want) < n {
		if time.Now().After(deadline) {
			t.Fatalf("log lacks %d× %q:\n%s", n, want, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func certSerial(t *testing.T, path string) uint64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		t.Fatal(err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		t.Fatalf("%s holds no certificate", path)
	}
	return cert.Serial
}

func runCLIKey(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		t.Fatalf("%s: not a public key", path)
	}
	return f[0] + " " + f[1]
}
