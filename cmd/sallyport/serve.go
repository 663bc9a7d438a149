package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sallyport/sallyport/bastion"
	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/config"
	"github.com/sallyport/sallyport/identity"
	"github.com/sallyport/sallyport/store"
	"github.com/sallyport/sallyport/web"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "", `
Run the Sallyport server: GitHub sign-in, certificate issuance, the web
pages, /metrics and /healthz, and the recording SSH bastion (bastion_listen,
default :2222; it needs github.org_token). The policy file is reloaded on
SIGHUP and when it changes; a policy that fails its check is refused and the
last good one stays in force. Live bastion sessions are re-authorised on
every reload, team change and revocation, and ended when no longer allowed.
--check validates the configuration, its secrets, the CA keys, the bastion
host key and the policy, then exits.`, stderr)
	cfgPath := fs.String("config", "sallyport.yaml", "configuration `file`")
	check := fs.Bool("check", false, "validate the configuration, secrets, keys and policy, then exit")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			for _, p := range ce.Problems {
				fmt.Fprintln(stderr, p)
			}
			return exitCode(1)
		}
		return fmt.Errorf("serve: %w", err)
	}
	secret, err := readSecret(cfg.GitHub.ClientSecret)
	if err != nil {
		return fmt.Errorf("serve: github.client_secret: %w", err)
	}
	keys, err := ca.LoadKeys(cfg.Data)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if cfg.BastionEnabled() && cfg.GitHub.OrgToken == nil {
		return fmt.Errorf("serve: the bastion (bastion_listen %s) decides by each person's current teams and needs github.org_token; set it, or set bastion_listen: %s", cfg.BastionListen, config.BastionOff)
	}
	if *check {
		data, err := os.ReadFile(cfg.Policy)
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		if _, err := web.Check(cfg.Policy, data); err != nil {
			return fmt.Errorf("serve: policy: %w", explainPolicyTests(err, cfg.Policy))
		}
		if err := checkPolicySignatures(cfg, data); err != nil {
			return fmt.Errorf("serve: policy: %w", err)
		}
		if cfg.BastionEnabled() {
			if _, err := os.Stat(cfg.BastionHostKey); err == nil {
				if _, err := ca.LoadSigner(cfg.BastionHostKey); err != nil {
					return fmt.Errorf("serve: bastion host key: %w", err)
				}
			} else if !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("serve: bastion host key: %w", err)
			}
		}
		fmt.Fprintf(stdout, "%s: ok (policy %s, data %s)\n", cfg.File, cfg.Policy, cfg.Data)
		return nil
	}
	lock, err := lockDataDir(cfg.Data, "stop it or use another data folder")
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer lock.Close()
	logger := slog.New(slog.NewTextHandler(stderr, nil))

	st, err := openStore(ctx, cfg.Data)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer st.Close()
	admins := web.NewAdminSet(cfg.Trust.Dir, cfg.Trust.Threshold, logger, nil)
	pf, err := loadServePolicy(ctx, cfg, st, admins, logger)
	if err != nil {
		return fmt.Errorf("serve: %w", explainPolicyTests(err, cfg.Policy))
	}
	org := pf.Policy().GitHub.Org
	gh, err := identity.NewGitHub(identity.GitHubConfig{
		ClientID: cfg.GitHub.ClientID, ClientSecret: secret, Org: org,
		RedirectURL: cfg.BaseURL + web.CallbackPath, WebURL: cfg.GitHub.WebURL, APIURL: cfg.GitHub.APIURL,
	})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	opts := web.Options{
		BaseURL:               cfg.BaseURL,
		Audit:                 st,
		Standing:              st,
		Policy:                pf,
		GitHub:                gh,
		HostCA:                keys.Host.PublicKey(),
		Bastion:               cfg.Bastion,
		SessionTTL:            cfg.Sessions.TTL,
		SignInPerMinute:       cfg.Limits.SignInPerMinute,
		CertificatesPerMinute: cfg.Limits.CertificatesPerMinute,
		MaxRequestBytes:       cfg.Limits.MaxRequestBytes,
		TrustedProxies:        cfg.TrustedProxyPrefixes(),
		Logger:                logger,
	}
	for _, o := range cfg.OIDC {
		secret, err := readSecret(o.ClientSecret)
		if err != nil {
			return fmt.Errorf("serve: oidc %s client_secret: %w", o.Name, err)
		}
		p, err := identity.NewOIDC(identity.OIDCConfig{Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: secret,
			RedirectURL: cfg.BaseURL + web.OIDCCallbackPath(o.Name), GroupsClaim: o.GroupsClaim})
		if err != nil {
			return fmt.Errorf("serve: oidc %s: %w", o.Name, err)
		}
		opts.OIDC = append(opts.OIDC, web.OIDCProvider{Name: o.Name, SignIn: p})
	}
	var background []func(context.Context)
	if err := serveTrust(cfg, st, keys, admins, &opts, &background); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	var dir *identity.Directory
	if cfg.GitHub.OrgToken != nil {
		tokens := identity.FileTokenSource(cfg.GitHub.OrgToken.File)
		if cfg.GitHub.OrgToken.Env != "" {
			tok, err := readSecret(*cfg.GitHub.OrgToken)
			if err != nil {
				return fmt.Errorf("serve: github.org_token: %w", err)
			}
			tokens = identity.StaticToken(tok)
		}
		dir, err = identity.NewDirectory(identity.DirectoryConfig{Org: org, APIURL: cfg.GitHub.APIURL, Token: tokens,
			Interval: cfg.GitHub.Refresh, Logger: logger})
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		opts.Directory = dir
		background = append(background, func(ctx context.Context) { dir.Run(ctx) }, //nolint:errcheck // returns ctx.Err()
			pinDirectoryLogins(dir, st, logger))
		if cfg.GitHub.WebhookSecret != nil {
			ws, err := readSecret(*cfg.GitHub.WebhookSecret)
			if err != nil {
				return fmt.Errorf("serve: github.webhook_secret: %w", err)
			}
			hook, err := identity.NewWebhook(dir, identity.WebhookConfig{Secret: []byte(ws)})
			if err != nil {
				return fmt.Errorf("serve: %w", err)
			}
			opts.Webhook = hook
		}
	} else if cfg.GitHub.WebhookSecret != nil {
		return errors.New("serve: github.webhook_secret needs github.org_token (webhooks update the organisation directory)")
	}
	if a := cfg.Actions; a != nil {
		v, err := identity.NewActions(identity.ActionsConfig{Issuer: a.Issuer, Audience: a.Audience})
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		opts.CI, opts.MaxCITTL = v, a.MaxTTL
	}
	var tlsFiles [2]string
	if cfg.TLS != nil {
		tlsFiles = [2]string{cfg.TLS.CertFile, cfg.TLS.KeyFile}
	}
	var bs *bastionSetup
	if cfg.BastionEnabled() {
		if bs, err = serveBastion(cfg, dir, logger); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		defer bs.ln.Close()
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	fmt.Fprintf(stdout, "sallyport serving %s on %s (policy %s)\n", cfg.BaseURL, ln.Addr(), cfg.Policy)
	if bs != nil {
		fmt.Fprintf(stdout, "sallyport bastion on %s as %s (recordings in %s)\n", bs.ln.Addr(), strings.Join(bs.srv.HostNames, ", "), bs.recordings)
	}
	return serveWeb(ctx, ln, st, keys, opts, pf, cfg.PolicyPoll, tlsFiles, background, bs, logger)
}

// serveBastion prepares the bastion of a configuration: its host key
// (generated into the data folder at the first start), names, limits and
// listener.
func serveBastion(cfg *config.Config, dir *identity.Directory, logger *slog.Logger) (*bastionSetup, error) {
	if len(cfg.BastionNames) == 0 {
		return nil, errors.New("bastion: no name to certify the bastion for; set bastion_names")
	}
	key, created, err := loadBastionHostKey(cfg.BastionHostKey)
	if err != nil {
		return nil, err
	}
	if created {
		logger.Info("generated the bastion host key", "file", cfg.BastionHostKey)
	}
	l := cfg.BastionLimits
	srv := &bastion.Server{
		HostKey:                  key,
		HostNames:                cfg.BastionNames,
		Logger:                   logger,
		HandshakeTimeout:         l.HandshakeTimeout,
		IdleTimeout:              l.IdleTimeout,
		MaxConnections:           l.MaxConnections,
		MaxStartups:              l.MaxStartups,
		MaxStartupsPerSource:     l.MaxStartupsPerSource,
		MaxChannelsPerConn:       l.MaxChannelsPerConnection,
		MaxSessionsPerUser:       l.MaxSessionsPerUser,
		MaxForwardsPerUser:       l.MaxForwardsPerUser,
		MaxConnectionsPerUser:    l.MaxConnectionsPerUser,
		MaxPendingTunnelsPerUser: l.MaxPendingTunnelsPerUser,
		SweepInterval:            l.ReauthorizeInterval,
		HostCertTTL:              l.HostCertTTL,
	}
	ln, err := net.Listen("tcp", cfg.BastionListen)
	if err != nil {
		return nil, fmt.Errorf("bastion: %w", err)
	}
	return &bastionSetup{ln: ln, srv: srv, dir: dir, revocationPoll: l.RevocationPoll,
		recordings: filepath.Join(cfg.Data, recordingsDir), recordingStall: l.RecordingStallTimeout}, nil
}

// readSecret reads a secret from its file (which must not be readable by
// others) or environment variable.
func readSecret(s config.Secret) (string, error) {
	if s.File != "" {
		return identity.ReadSecretFile(s.File)
	}
	v, ok := os.LookupEnv(s.Env)
	if !ok || strings.TrimSpace(v) == "" {
		return "", fmt.Errorf("environment variable %s is not set", s.Env)
	}
	return strings.TrimSpace(v), nil
}

// shutdownGrace is how long open sessions and requests get to finish when
// the server stops.
const shutdownGrace = 10 * time.Second

// serveWeb runs the web server on ln until ctx ends, with certificates
// recorded through a group-committing batcher, the policy reloaded on
// SIGHUP and on change, and the background tasks running. bs, if not nil,
// is the bastion to run beside it with the same authority, policy, store
// and directory; a policy reload makes it re-check its live sessions.
func serveWeb(ctx context.Context, ln net.Listener, st *dataStore, keys ca.Keys, opts web.Options, pf *web.PolicyFile,
	poll time.Duration, tlsFiles [2]string, background []func(context.Context), bs *bastionSetup, logger *slog.Logger) error {
	batch := st.NewBatcher(store.BatchOptions{})
	defer batch.Close()
	authority, err := ca.New(keys, batch)
	if err != nil {
		return err
	}
	opts.Issuer = authority
	srv, err := web.New(opts)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var bastionErr <-chan error
	if bs != nil {
		if bastionErr, err = bs.start(ctx, st, keys, authority, pf); err != nil {
			return fmt.Errorf("bastion: %w", err)
		}
	}
	// The PolicyFile logs and audits each load and refusal, a refusal by
	// the policy's own tests with their reasons; how to see more is said
	// here, once per refusal.
	var explained *web.PolicyRefusal
	reload := func(cause string) {
		loaded, err := pf.Reload(ctx, cause)
		if loaded && bs != nil {
			bs.srv.Reevaluate("policy reloaded (" + cause + ")")
		}
		if r := pf.Refusal(); errors.Is(err, web.ErrPolicyTests) && r != nil && r != explained {
			explained = r
			logPolicyTests(logger, pf.Path())
		}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		t := time.NewTicker(poll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				reload("SIGHUP")
			case <-t.C:
				reload("file changed")
			}
		}
	}()
	for _, f := range background {
		go f(ctx)
	}
	hs := srv.HTTPServer("")
	errc := make(chan error, 1)
	go func() {
		if tlsFiles[0] != "" {
			errc <- hs.ServeTLS(ln, tlsFiles[0], tlsFiles[1])
		} else {
			errc <- hs.Serve(ln)
		}
	}()
	var failed error
	select {
	case err := <-errc:
		errc <- err
		failed = err
	case err := <-bastionErr:
		failed = fmt.Errorf("bastion: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	cancel()
	var wg sync.WaitGroup
	if bs != nil {
		wg.Go(func() { shutdownBastion(bs.srv, shutdownGrace, logger) })
	}
	sctx, scancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer scancel()
	herr := hs.Shutdown(sctx)
	wg.Wait()
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) && failed == nil {
		failed = err
	}
	if failed == nil {
		failed = herr
	}
	return failed
}
