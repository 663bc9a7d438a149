package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/bastion"
	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/identity"
	"github.com/sallyport/sallyport/internal/githubtest"
	"github.com/sallyport/sallyport/web"
)

// devPolicy is the reference policy (../shared/policy-example.yaml); its
// teams and users match the stand-in's demo users.
//
//go:embed dev-policy.yaml
var devPolicy []byte

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := newFlagSet("dev", "", `
Run Sallyport for trying it out, in one process on loopback, with no
configuration: a data folder with freshly generated CAs (a temporary one
unless --data is given), the reference demo policy, and a built-in stand-in
for GitHub with demo users and teams. Its sign-in page lets you pick a demo
user; 'sallyport login --dev-user LOGIN' picks one without a browser. The
SSH bastion listens on --bastion and records every session into the data
folder; when OpenSSH's sshd is installed, a demo target (host "demo", a real
sshd on a free loopback port trusting only the session CA) stands behind it.
Nothing of this mode is available in 'sallyport serve'.`, stderr)
	listen := flags.String("listen", "127.0.0.1:8080", "loopback `address` to serve on")
	bastionListen := flags.String("bastion", "127.0.0.1:2222", "loopback `address` for the SSH bastion")
	dataDir := flags.String("data", "", "data `folder` to use (default: a new temporary folder, removed on exit)")
	rest, err := parseFlags(flags, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	for _, a := range []struct{ flag, addr string }{{"--listen", *listen}, {"--bastion", *bastionListen}} {
		host, _, err := net.SplitHostPort(a.addr)
		if err != nil {
			return fmt.Errorf("dev: %s: %w", a.flag, err)
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("dev: %s %s: the dev server only listens on a loopback IP address such as 127.0.0.1", a.flag, a.addr)
		}
	}
	data := *dataDir
	if data == "" {
		if data, err = os.MkdirTemp("", "sallyport-dev-"); err != nil {
			return fmt.Errorf("dev: %w", err)
		}
		defer os.RemoveAll(data)
	} else if err := os.MkdirAll(data, 0o700); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	if data, err = filepath.Abs(data); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	// Before anything is written: a second dev would rewrite the demo
	// target's address in the first one's policy.
	lock, err := lockDataDir(data, "stop it or use another --data")
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	defer lock.Close()
	if _, err := ca.GenerateKeys(data, ca.KeyEd25519, nil); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	keys, err := ca.LoadKeys(data)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := openStore(ctx, data)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	defer st.Close()

	// The demo target: a real sshd the bastion reaches as host "demo".
	offline, err := ca.New(keys, st)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	// Without it (sshd missing or failing to start) dev still runs, and
	// says why there is no target.
	target, targetErr := startDemoTarget(ctx, filepath.Join(data, "demo-sshd"), keys, offline)
	if targetErr == nil {
		defer target.Close()
	}
	policyPath := filepath.Join(data, "policy.yaml")
	pol, err := os.ReadFile(policyPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		pol = devPolicy
		if target != nil {
			if pol, err = withDemoTarget(devPolicy, target.Addr, target.Login); err != nil {
				return fmt.Errorf("dev: %w", err)
			}
		}
		if err := os.WriteFile(policyPath, pol, 0o600); err != nil {
			return fmt.Errorf("dev: %w", err)
		}
	case err != nil:
		return fmt.Errorf("dev: %w", err)
	case target != nil:
		if upd := setDemoAddress(pol, target.Addr); string(upd) != string(pol) {
			if err := os.WriteFile(policyPath, upd, 0o600); err != nil {
				return fmt.Errorf("dev: %w", err)
			}
		}
	}
	// The policy file says each reload ("policy loaded", its hosts and
	// roles) though dev logs only warnings otherwise; the banner says what
	// was loaded at the start.
	policyLevel := new(slog.LevelVar)
	policyLevel.Set(slog.LevelWarn)
	policyLog := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: policyLevel}))
	pf, err := web.LoadPolicyFile(ctx, policyPath, st, policyLog, nil)
	if err != nil {
		return fmt.Errorf("dev: %w", explainPolicyTests(err, policyPath))
	}
	policyLevel.Set(slog.LevelInfo)
	org := pf.Policy().GitHub.Org

	bastionHost, _, _ := net.SplitHostPort(*bastionListen)
	hostKey, _, err := loadBastionHostKey(filepath.Join(data, bastionHostKeyFile))
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	bln, err := net.Listen("tcp", *bastionListen)
	if err != nil {
		return fmt.Errorf("dev: bastion: %w", err)
	}
	defer bln.Close()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	base := "http://" + ln.Addr().String()
	gh, err := githubtest.Start("127.0.0.1:0")
	if err != nil {
		ln.Close()
		return fmt.Errorf("dev: %w", err)
	}
	defer gh.Close()
	users, err := gh.AddDemoUsers(org)
	if err != nil {
		ln.Close()
		return fmt.Errorf("dev: %w", err)
	}
	secret := rand.Text()
	if err := gh.RegisterOAuthApp(githubtest.OAuthApp{ClientID: "sallyport-dev", ClientSecret: secret, CallbackURL: base + web.CallbackPath}); err != nil {
		ln.Close()
		return fmt.Errorf("dev: %w", err)
	}
	signIn, err := identity.NewGitHub(identity.GitHubConfig{ClientID: "sallyport-dev", ClientSecret: secret, Org: org,
		RedirectURL: base + web.CallbackPath, WebURL: gh.URL, APIURL: gh.URL})
	if err != nil {
		ln.Close()
		return fmt.Errorf("dev: %w", err)
	}
	// The organisation directory reads with the first demo member's token,
	// as an org-level credential would in production.
	dir, err := identity.NewDirectory(identity.DirectoryConfig{Org: org, APIURL: gh.URL,
		Token: identity.StaticToken(gh.TokenWithScopes(users[0], "read:org")), Interval: 30 * time.Second, Logger: logger})
	if err != nil {
		ln.Close()
		return fmt.Errorf("dev: %w", err)
	}
	bastionAddr := bln.Addr().String()
	opts := web.Options{
		BaseURL:               base,
		Audit:                 st,
		Standing:              st,
		Policy:                pf,
		GitHub:                signIn,
		Directory:             dir,
		HostCA:                keys.Host.PublicKey(),
		Bastion:               bastionAddr,
		SignInPerMinute:       120,
		CertificatesPerMinute: 600,
		Logger:                logger,
	}
	bs := &bastionSetup{
		ln: bln,
		srv: &bastion.Server{
			HostKey:   hostKey,
			HostNames: devBastionNames(bastionHost),
			Logger:    logger,
		},
		dir:            dir,
		revocationPoll: time.Second,
		recordings:     filepath.Join(data, recordingsDir),
	}
	try, err := devTryLines(data, base, bastionAddr, keys.Host.PublicKey(), target)
	if err != nil {
		ln.Close()
		return fmt.Errorf("dev: %w", err)
	}
	fmt.Fprintf(stdout, `Sallyport dev server: %s  (stop with Ctrl-C)
  data folder:      %s%s
  policy:           %s (edit it: changes load within seconds)
  GitHub stand-in:  %s  organisation %s
  demo users:       alice (teams infra, website), bob (website), carol (release-managers),
                    octo-admin (no team), dave (invited, not yet a member), erin (another organisation)
  SSH bastion:      %s  (every session recorded into %s)
%s
Try:
  open %s in a browser and pick a demo user, or from a terminal:
%s`, base, data, tempNote(*dataDir == ""), policyPath, gh.URL, org, bastionAddr, bs.recordings, targetLine(target, targetErr), base, try)
	return serveWeb(ctx, ln, st, keys, opts, pf, time.Second, [2]string{}, []func(context.Context){
		func(ctx context.Context) { dir.Run(ctx) }, //nolint:errcheck // returns ctx.Err()
		pinDirectoryLogins(dir, st, logger),
	}, bs, logger)
}

// devBastionNames are the names the dev bastion's host certificate
// carries: the address it listens on, and localhost.
func devBastionNames(host string) []string {
	names := []string{host}
	if host != "localhost" {
		names = append(names, "localhost")
	}
	return names
}

func targetLine(t *demoTarget, err error) string {
	if t == nil {
		return fmt.Sprintf("  demo target:      none: %v\n", err)
	}
	return fmt.Sprintf("  demo target:      host %q, a real sshd on %s trusting only the session CA, login %s\n", demoHost, t.Addr, t.Login)
}

// devTryLines writes DATA/known_hosts (the one @cert-authority line) and
// DATA/ssh_config (alice's key and certificate, that known_hosts), and
// returns the commands to try, indented.
func devTryLines(data, base, bastionAddr string, hostCA ssh.PublicKey, t *demoTarget) (string, error) {
	caLine := "@cert-authority * " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostCA))) + " sallyport-host-ca"
	knownHosts := filepath.Join(data, "known_hosts")
	if err := os.WriteFile(knownHosts, []byte(caLine+"\n"), 0o644); err != nil {
		return "", err
	}
	alice := filepath.Join(data, "alice")
	sshConfig := filepath.Join(data, "ssh_config")
	conf := fmt.Sprintf(`# Written by sallyport dev: alice's key and certificate, and the host CA.
Host *
    IdentityFile "%[1]s"
    CertificateFile "%[1]s-cert.pub"
    IdentitiesOnly yes
    UserKnownHostsFile "%[2]s"
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
`, alice, knownHosts)
	if err := os.WriteFile(sshConfig, []byte(conf), 0o644); err != nil {
		return "", err
	}
	bhost, bport, _ := net.SplitHostPort(bastionAddr)
	var b strings.Builder
	fmt.Fprintf(&b, "  sallyport login --server %s --dev-user alice --key %s\n", base, alice)
	fmt.Fprintf(&b, "  sallyport status --key %s\n", alice)
	if t != nil {
		fmt.Fprintf(&b, `
Then ssh through the bastion to the demo target (a recorded shell), either form:
  ssh -F %[1]s -J %[2]s %[3]s@%[4]s
  ssh -F %[1]s -p %[5]s %[3]s@%[4]s@%[6]s
%[1]s names alice's key and certificate and %[7]s,
which holds the one line trusting every host certificate:
  %[8]s
bob may not log in there; the bastion says why:
  sallyport login --server %[9]s --dev-user bob --key %[10]s
  ssh -o UserKnownHostsFile=%[7]s -o IdentitiesOnly=yes -i %[10]s -o CertificateFile=%[10]s-cert.pub -p %[5]s %[3]s@%[4]s@%[6]s
Then the recordings:
  sallyport recordings list --data %[11]s
  sallyport recordings play --data %[11]s ID
  sallyport recordings verify --data %[11]s ID
`, sshConfig, bastionAddr, t.Login, demoHost, bport, bhost, knownHosts, caLine, base, filepath.Join(data, "bob"), data)
	}
	fmt.Fprintf(&b, "\n  sallyport ssh-config --server %s\n", base)
	return b.String(), nil
}

func tempNote(temp bool) string {
	if temp {
		return " (temporary: removed when this stops)"
	}
	return ""
}
