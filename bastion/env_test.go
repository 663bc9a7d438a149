package bastion

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/internal/sshdtest"
	"github.com/sallyport/sallyport/policy"
	"github.com/sallyport/sallyport/recording"
	"github.com/sallyport/sallyport/store"
)

// directory is an in-memory Directory.
type directory struct {
	mu  sync.Mutex
	ids map[int64]policy.Identity
}

func (d *directory) Identity(id int64) (policy.Identity, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	who, ok := d.ids[id]
	return who, ok
}

func (d *directory) set(id int64, who policy.Identity, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ok {
		d.ids[id] = who
	} else {
		delete(d.ids, id)
	}
}

// env is a bastion in front of one real sshd target ("web1"), with a real
// store, CA and recorder.
type env struct {
	t      testing.TB
	dir    string
	keys   ca.Keys
	caKeys map[ca.Kind]ed25519.PrivateKey
	offset atomic.Int64 // added to the server's clock
	store  *store.SQLite
	auth   *ca.Authority
	target *sshdtest.Server
	dirs   *directory
	pol    atomic.Pointer[policy.Policy]
	srv    *Server
	addr   string
	port   int
	recDir string
	login  string // the account on the target: the user running the test
}

// randomFile writes n random bytes to a new file and returns its path and
// contents.
func randomFile(t testing.TB, n int) (string, []byte) {
	t.Helper()
	data := make([]byte, n)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "src.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, data
}

func newSigner(t testing.TB) (ed25519.PrivateKey, ssh.Signer) {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, s
}

// envOptions tune newEnv.
type envOptions struct {
	policy    string // roles: section; %s is replaced by the login
	extraHost string // extra hosts: entries
	configure func(*Server)
	unsigned  bool // the target presents a plain host key

	targetExtra []string // more sshd_config lines for the target
	untrusting  bool     // the target trusts another CA, not the session CA
}

const defaultRoles = `
  - name: infra
    members:
      teams: [infra]
    principals: [%[1]s]
    hosts: [web1]
    permissions: [pty, port-forwarding]
  - name: readers
    members:
      teams: [readers]
    principals: [%[1]s]
    hosts: [web1]
    permissions: []
`

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), dirs: &directory{ids: map[int64]policy.Identity{}}}
	uk, us := newSigner(t)
	sk, ss := newSigner(t)
	hk, hs := newSigner(t)
	e.keys = ca.Keys{User: us, Session: ss, Host: hs}
	e.caKeys = map[ca.Kind]ed25519.PrivateKey{ca.KindUser: uk, ca.KindSession: sk, ca.KindHost: hk}
	st, err := store.Open(context.Background(), filepath.Join(e.dir, "sallyport.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.store = st
	e.auth, err = ca.New(e.keys, st)
	if err != nil {
		t.Fatal(err)
	}

	// The target trusts only the session CA and presents a host
	// certificate from the host CA.
	tk, tks := newSigner(t)
	cfg := sshdtest.Config{TrustedUserCAKeys: []ssh.PublicKey{ss.PublicKey()}, HostKey: tk}
	if o.untrusting {
		_, other := newSigner(t)
		cfg.TrustedUserCAKeys = []ssh.PublicKey{other.PublicKey()}
	}
	if !o.unsigned {
		hc, err := e.auth.IssueHost(context.Background(), ca.HostRequest{PublicKey: tks.PublicKey(), Hostnames: []string{"web1", "127.0.0.1"}, TTL: time.Hour, MaxTTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		cfg.HostCertificate = hc
	}
	cfg.Extra = append(o.targetExtra, "AcceptEnv LANG LC_* FOO", "AllowAgentForwarding yes", "AllowTcpForwarding yes")
	e.target = sshdtest.Start(t, cfg)
	e.login = e.target.User

	roles := o.policy
	if roles == "" {
		roles = defaultRoles
	}
	e.setPolicy(roles, o.extraHost)
	e.dirs.set(1001, policy.Identity{Login: "alice", Teams: []string{"infra"}}, true)
	e.dirs.set(1002, policy.Identity{Login: "rita", Teams: []string{"readers"}}, true)

	e.recDir = filepath.Join(e.dir, "recordings")
	rec, err := recording.New(recording.Options{Dir: e.recDir, Index: st, Signer: ss})
	if err != nil {
		t.Fatal(err)
	}
	_, bk := newSigner(t)
	e.srv = &Server{
		Authority: e.auth,
		HostKey:   bk,
		HostNames: []string{"127.0.0.1"},
		Policy:    e.pol.Load,
		Directory: e.dirs,
		Store:     st,
		Recorder:  NewRecorder(rec),
		Now:       func() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) },
		Logger:    slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if o.configure != nil {
		o.configure(e.srv)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = l.Addr().String()
	e.port = l.Addr().(*net.TCPAddr).Port
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(l) }()
	t.Cleanup(func() {
		if err := e.srv.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if err := <-served; err != ErrServerClosed {
			t.Errorf("Serve returned %v; want ErrServerClosed", err)
		}
	})
	return e
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (e *env) setPolicy(roles, extraHosts string) {
	e.t.Helper()
	src := fmt.Sprintf(`version: 1
github:
  org: example
defaults:
  ttl: 8h
  max_ttl: 24h
hosts:
  - name: web1
    address: %s
%s
roles:
%s`, e.target.Addr, extraHosts, fmt.Sprintf(roles, e.login))
	p, err := policy.Parse("policy.yaml", []byte(src))
	if err != nil {
		e.t.Fatalf("policy: %v\n%s", err, src)
	}
	e.pol.Store(p)
}

// userCert issues a certificate for a user of the directory.
type certOptions struct {
	githubID   int64
	login      string
	principals []string
	ttl        time.Duration
	perms      []ca.Permission
	force      string
	sources    []netip.Prefix
}

func (e *env) issue(o certOptions) (ed25519.PrivateKey, *ssh.Certificate) {
	e.t.Helper()
	k, s := newSigner(e.t)
	if o.githubID == 0 {
		o.githubID = 1001
	}
	if o.login == "" {
		o.login = "alice"
	}
	if o.principals == nil {
		o.principals = []string{e.login}
	}
	if o.ttl == 0 {
		o.ttl = time.Hour
	}
	if o.perms == nil {
		o.perms = []ca.Permission{ca.PermitPTY, ca.PermitPortForwarding, ca.PermitAgentForwarding}
	}
	c, err := e.auth.IssueUser(context.Background(), ca.UserRequest{
		PublicKey: s.PublicKey(), Principals: o.principals, TTL: o.ttl, MaxTTL: 24 * time.Hour,
		Permissions: o.perms, ForceCommand: o.force, SourceAddresses: o.sources,
		KeyID: fmt.Sprintf("%s github:%d", o.login, o.githubID), Identity: fmt.Sprintf("github:%d", o.githubID),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return k, c
}

// client is a real OpenSSH client configuration for one identity.
type client struct {
	e      *env
	config string // ssh_config path, read by ProxyJump's second ssh too
	id     string
}

func (e *env) client(key ed25519.PrivateKey, cert *ssh.Certificate) *client {
	e.t.Helper()
	dir := e.t.TempDir()
	id := sshdtest.WriteIdentity(e.t, dir, key, cert)
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte(sshdtest.CertAuthorityLine(e.keys.Host.PublicKey())), 0o600); err != nil {
		e.t.Fatal(err)
	}
	cfg := filepath.Join(dir, "ssh_config")
	lines := []string{
		"Host *",
		"BatchMode yes",
		"IdentitiesOnly yes",
		"IdentityAgent none",
		"IdentityFile " + id,
		"UserKnownHostsFile " + kh,
		"GlobalKnownHostsFile none",
		"StrictHostKeyChecking yes",
		"UpdateHostKeys no",
		"CheckHostIP no",
		"ControlMaster no",
		"ControlPath none",
		"ConnectTimeout 10",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"ForwardAgent no",
		"ForwardX11 no",
	}
	if cert != nil {
		lines = append(lines, "CertificateFile "+id+"-cert.pub")
	}
	if err := os.WriteFile(cfg, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return &client{e: e, config: cfg, id: id}
}

// direct returns ssh arguments for login@host@bastion.
func (c *client) direct(login, host string, args ...string) []string {
	out := []string{"-F", c.config, "-p", strconv.Itoa(c.e.port)}
	out = append(out, args...)
	return append(out, "-l", login+"@"+host, "127.0.0.1")
}

// jump returns ssh arguments for ssh -J bastion login@host.
func (c *client) jump(login, host string, args ...string) []string {
	out := []string{"-F", c.config, "-J", "jumper@127.0.0.1:" + strconv.Itoa(c.e.port)}
	out = append(out, args...)
	return append(out, "-l", login, host)
}

// form is one way of naming the target: ssh arguments and its name.
type form struct {
	name string
	args []string
}

// forms returns ssh arguments for login on host in both target forms.
func (c *client) forms(login, host string, args ...string) []form {
	return []form{{"direct", c.direct(login, host, args...)}, {"jump", c.jump(login, host, args...)}}
}

type result struct {
	stdout, stderr string
	code           int
	err            error
}

// run runs a command with a deadline and returns its output and exit code.
func run(t testing.TB, stdin io.Reader, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &stdout, &stderr, stdin
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), err: err}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return r
}

func (c *client) ssh(stdin io.Reader, args []string, remote ...string) result {
	c.e.t.Helper()
	if len(remote) > 0 {
		args = append(append(args, "--"), remote...)
	}
	return run(c.e.t, stdin, "ssh", args...)
}

// audits returns the audit events of type typ, oldest first.
func (e *env) audits(typ string) []audit.Event {
	e.t.Helper()
	evs, err := e.store.AuditEvents(context.Background(), store.AuditQuery{Type: typ})
	if err != nil {
		e.t.Fatal(err)
	}
	for i, j := 0, len(evs)-1; i < j; i, j = i+1, j-1 {
		evs[i], evs[j] = evs[j], evs[i]
	}
	return evs
}

// waitFor polls cond every 20ms for up to d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// xclient connects with the x/crypto client as user, authenticating with
// the given signers in order.
// webClient issues a certificate with o and logs in with it, as the
// target's login on web1, with x/crypto's client; the connection is closed
// at the end of the test.
func (e *env) webClient(o certOptions) *ssh.Client {
	e.t.Helper()
	k, cert := e.issue(o)
	cl, err := e.xclient(e.login+"@web1", certSigner(e.t, k, cert))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cl.Close() })
	return cl
}

// webSession opens a session on a new webClient connection.
func (e *env) webSession(o certOptions) *ssh.Session {
	e.t.Helper()
	s, err := e.webClient(o).NewSession()
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) xclient(user string, signers ...ssh.Signer) (*ssh.Client, error) {
	cl, _, err := e.xclientBanner(user, signers...)
	return cl, err
}

// xclientBanner is xclient, also returning the banners the server sent.
func (e *env) xclientBanner(user string, signers ...ssh.Signer) (*ssh.Client, string, error) {
	e.t.Helper()
	var banners strings.Builder
	checker := &ssh.CertChecker{IsHostAuthority: func(k ssh.PublicKey, _ string) bool {
		return bytes.Equal(k.Marshal(), e.keys.Host.PublicKey().Marshal())
	}}
	cl, err := ssh.Dial("tcp", e.addr, &ssh.ClientConfig{
		User:              user,
		BannerCallback:    func(m string) error { banners.WriteString(m); return nil },
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signers...)},
		HostKeyCallback:   checker.CheckHostKey,
		HostKeyAlgorithms: hostCertAlgorithms,
		Timeout:           10 * time.Second,
	})
	return cl, banners.String(), err
}

func certSigner(t testing.TB, key ed25519.PrivateKey, cert *ssh.Certificate) ssh.Signer {
	t.Helper()
	s, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := ssh.NewCertSigner(cert, s)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
