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
	"time"

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
user; 'sallyport login --dev-user LOGIN' picks one without a browser.
Nothing of this mode is available in 'sallyport serve'.`, stderr)
	listen := flags.String("listen", "127.0.0.1:8080", "loopback `address` to serve on")
	dataDir := flags.String("data", "", "data `folder` to use (default: a new temporary folder, removed on exit)")
	rest, err := parseFlags(flags, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		return fmt.Errorf("dev: --listen: %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("dev: --listen %s: the dev server only listens on a loopback IP address such as 127.0.0.1", *listen)
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
	if _, err := ca.GenerateKeys(data, ca.KeyEd25519, nil); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	keys, err := ca.LoadKeys(data)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	policyPath := filepath.Join(data, "policy.yaml")
	if _, err := os.Stat(policyPath); errors.Is(err, fs.ErrNotExist) {
		if err := os.WriteFile(policyPath, devPolicy, 0o600); err != nil {
			return fmt.Errorf("dev: %w", err)
		}
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := openStore(ctx, data)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	defer st.Close()
	pf, err := web.LoadPolicyFile(ctx, policyPath, st, logger, nil)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	org := pf.Policy().GitHub.Org

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
	opts := web.Options{
		BaseURL:               base,
		Audit:                 st,
		Policy:                pf,
		GitHub:                signIn,
		Directory:             dir,
		HostCA:                keys.Host.PublicKey(),
		SignInPerMinute:       120,
		CertificatesPerMinute: 600,
		Logger:                logger,
	}
	fmt.Fprintf(stdout, `Sallyport dev server: %s  (stop with Ctrl-C)
  data folder:      %s%s
  policy:           %s (edit it: changes load within seconds)
  GitHub stand-in:  %s  organisation %s
  demo users:       alice (teams infra, website), bob (website), carol (release-managers),
                    octo-admin (no team), dave (invited, not yet a member), erin (another organisation)

Try:
  open %s in a browser and pick a demo user, or from a terminal:
  sallyport login --server %s --dev-user alice --key %s
  sallyport status --key %s
  ssh-keygen -L -f %s-cert.pub
  sallyport ssh-config --server %s

A target sshd trusting the user CA would add:  TrustedUserCAKeys %s
`, base, data, tempNote(*dataDir == ""), policyPath, gh.URL, org, base, base,
		filepath.Join(data, "alice"), filepath.Join(data, "alice"), filepath.Join(data, "alice"), base,
		filepath.Join(data, ca.KindUser.FileName()+".pub"))
	return serveWeb(ctx, ln, st, keys, opts, pf, time.Second, [2]string{}, []func(context.Context){
		func(ctx context.Context) { dir.Run(ctx) }, //nolint:errcheck // returns ctx.Err()
	}, logger)
}

func tempNote(temp bool) string {
	if temp {
		return " (temporary: removed when this stops)"
	}
	return ""
}
