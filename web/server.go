package web

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/identity"
	"github.com/sallyport/sallyport/policy"
	"github.com/sallyport/sallyport/standing"
)

// Issuer signs user certificates and records them before returning. The
// ca.Authority implements it.
type Issuer interface {
	IssueUser(ctx context.Context, r ca.UserRequest) (*ssh.Certificate, error)
}

// GitHubSignIn is the GitHub OAuth web flow; identity.GitHub implements
// it. Exchange must have established the user's membership in the policy's
// organisation, and fail with identity.ErrNotMember otherwise.
type GitHubSignIn interface {
	AuthCodeURL(req identity.AuthRequest, loginHint string) string
	Exchange(ctx context.Context, code string, req identity.AuthRequest) (*identity.GitHubUser, error)
}

// OIDCSignIn is a generic OpenID Connect sign-in; identity.OIDC implements
// it. Exchange must verify the ID token, its nonce and audience.
type OIDCSignIn interface {
	AuthCodeURL(ctx context.Context, req identity.AuthRequest) (string, error)
	Exchange(ctx context.Context, code string, req identity.AuthRequest) (*identity.OIDCUser, error)
}

// OIDCProvider is a named OIDC sign-in offered beside GitHub. Its callback
// is BaseURL + OIDCCallbackPath(Name).
type OIDCProvider struct {
	Name   string
	SignIn OIDCSignIn
}

// OIDCCallbackPath is where the OIDC provider name returns the browser.
func OIDCCallbackPath(name string) string { return "/auth/oidc/" + name + "/callback" }

// Directory tells the current organisation membership of a GitHub user
// between sign-ins; identity.Directory implements it. A Lookup error (not
// loaded yet) makes the server fall back to the teams read at sign-in.
type Directory interface {
	Lookup(id int64) (identity.Membership, error)
}

// CIVerifier verifies a GitHub Actions OIDC token and returns the
// workload's claims; identity.Actions implements it. It checks signature,
// issuer, audience and expiry.
type CIVerifier interface {
	Verify(ctx context.Context, rawToken string) (*identity.ActionsClaims, error)
}

// PolicySource returns the policy in force; *PolicyFile implements it.
type PolicySource interface {
	Policy() *policy.Policy
}

// Options configure a Server. Fields marked required must be set; the
// zero value of the others means the default given.
type Options struct {
	// BaseURL is the public URL of the server, e.g.
	// "https://sallyport.example.org", without a trailing slash. Required.
	// The OAuth callback is BaseURL + CallbackPath; cookies are Secure
	// when it is https.
	BaseURL string
	// Issuer signs and records certificates. Required.
	Issuer Issuer
	// Audit records sign-ins and refusals. Required.
	Audit Auditor
	// Standing tells whether an identity is suspended and pins GitHub
	// logins to numeric user IDs (package standing); it is checked at
	// every sign-in and issuance. Required; *store.SQLite implements it.
	Standing standing.Store
	// Policy is the policy in force. Required.
	Policy PolicySource
	// GitHub signs people in. Required.
	GitHub GitHubSignIn
	// OIDC are further sign-in providers; their groups claim plays the
	// role of teams, and their users never match policy `users` entries
	// (GitHub logins).
	OIDC []OIDCProvider
	// Directory, if set, keeps team membership current between sign-ins:
	// certificates are issued for the teams it reports now.
	Directory Directory
	// CI, if set, turns on /api/v1/ci/certificate.
	CI CIVerifier
	// Webhook, if set, receives GitHub organisation webhooks at
	// WebhookPath (identity.Webhook verifies their signatures).
	Webhook http.Handler
	// MaxCITTL caps CI certificate lifetimes; zero means 1h.
	MaxCITTL time.Duration
	// HostCA is the host CA's public key, for the known_hosts line; nil
	// leaves the line out.
	HostCA ssh.PublicKey
	// Bastion is the host:port users reach the bastion at; empty means the
	// base URL's host name, port 22.
	Bastion string

	// SessionTTL is how long a browser session lasts; zero means 12h.
	SessionTTL time.Duration
	// CLITokenTTL is how long a token handed to `sallyport login` lasts;
	// zero means 10 minutes.
	CLITokenTTL time.Duration
	// SignInPerMinute limits sign-in starts and CLI token requests per
	// client address; zero means no limit.
	SignInPerMinute int
	// CertificatesPerMinute limits certificate requests per client
	// address; zero means no limit.
	CertificatesPerMinute int
	// MaxRequestBytes bounds request bodies; zero means 64 KiB.
	MaxRequestBytes int64
	// TrustedProxies are reverse proxies whose X-Forwarded-For is
	// believed; empty means none.
	TrustedProxies []netip.Prefix

	// Admin, if set, turns on the admin role (from the trust folder only),
	// the admin pages, everyone's own recordings and break-glass; nil
	// means none of them.
	Admin *AdminOptions

	// Logger receives operational messages, never secrets; nil means none.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// CallbackPath is where GitHub returns the browser after sign-in. Register
// BaseURL + CallbackPath as the OAuth app's callback URL.
const CallbackPath = "/auth/github/callback"

// WebhookPath is where GitHub organisation webhooks are received.
const WebhookPath = "/api/v1/github/webhook"

// Server is the HTTP side of Sallyport. It is an http.Handler.
type Server struct {
	o        Options
	base     *url.URL
	secure   bool
	now      func() time.Time
	log      *slog.Logger
	handler  http.Handler
	metrics  *metrics
	sessions sessions
	pending  *table[*pendingLogin]
	grants   *table[*cliGrant] // keyed by one-time code or device code
	devices  *table[string]    // user code -> device code
	signInRL *limiter
	issueRL  *limiter
	pages    *pages
	terms    termsCache

	breakGlassRL *limiter
}

// New checks o and returns a Server.
func New(o Options) (*Server, error) {
	var errs []error
	base, err := url.Parse(o.BaseURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" || (base.Path != "" && base.Path != "/") {
		errs = append(errs, fmt.Errorf("base URL %q is not an absolute http(s) URL without a path", o.BaseURL))
	}
	if o.Issuer == nil {
		errs = append(errs, errors.New("no issuer"))
	}
	if o.Audit == nil {
		errs = append(errs, errors.New("no auditor"))
	}
	if o.Standing == nil {
		errs = append(errs, errors.New("no standing store (suspensions and login pins)"))
	}
	if o.Policy == nil {
		errs = append(errs, errors.New("no policy"))
	}
	if o.GitHub == nil {
		errs = append(errs, errors.New("no GitHub sign-in"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("web: %w", errors.Join(errs...))
	}
	base.Path = ""
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 12 * time.Hour
	}
	if o.CLITokenTTL <= 0 {
		o.CLITokenTTL = 10 * time.Minute
	}
	if o.MaxCITTL <= 0 {
		o.MaxCITTL = time.Hour
	}
	if o.MaxRequestBytes <= 0 {
		o.MaxRequestBytes = 64 << 10
	}
	if o.Bastion == "" {
		o.Bastion = net.JoinHostPort(base.Hostname(), "22")
	}
	s := &Server{
		o:        o,
		base:     base,
		secure:   base.Scheme == "https",
		now:      o.Now,
		log:      o.Logger,
		metrics:  newMetrics(),
		sessions: sessions{t: newTable[*session](o.Now)},
		pending:  newTable[*pendingLogin](o.Now),
		grants:   newTable[*cliGrant](o.Now),
		devices:  newTable[string](o.Now),
		signInRL: newLimiter(o.SignInPerMinute, o.Now),
		issueRL:  newLimiter(o.CertificatesPerMinute, o.Now),
	}
	s.pages, err = newPages()
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	if err := s.initAdmin(); err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	if pf, ok := o.Policy.(*PolicyFile); ok {
		pf.mu.Lock()
		pf.onLoad = func(ok bool, at time.Time) {
			if ok {
				if s.o.Admin != nil {
					s.o.Admin.Admins.Refresh("policy loaded") //nolint:errcheck // kept and logged
				}
				s.metrics.reload("ok")
				s.metrics.policyTime.Store(at.Unix())
			} else {
				s.metrics.reload("refused")
			}
		}
		if cur := pf.cur.Load(); cur != nil {
			s.metrics.policyTime.Store(cur.at.Unix())
		}
		pf.mu.Unlock()
	}
	s.handler = s.routes()
	return s, nil
}

// ServeHTTP serves the web UI and API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// HTTPServer returns an http.Server for s on addr with timeouts that suit
// it: slow clients cannot hold connections open.
func (s *Server) HTTPServer(addr string) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("GET /login", s.login)
	mux.HandleFunc("GET "+CallbackPath, s.callback)
	mux.HandleFunc("GET /login/oidc/{name}", s.loginOIDC)
	mux.HandleFunc("GET /auth/oidc/{name}/callback", s.oidcCallback)
	mux.HandleFunc("POST /logout", s.logout)
	mux.HandleFunc("POST /certificate", s.certificateForm)
	mux.HandleFunc("GET /device", s.devicePage)
	mux.HandleFunc("POST /device", s.deviceApprove)
	mux.HandleFunc("GET /cli/login", s.cliLogin)
	mux.HandleFunc("POST /api/v1/cli/device", s.cliDevice)
	mux.HandleFunc("POST /api/v1/cli/token", s.cliToken)
	mux.HandleFunc("POST /api/v1/certificate", s.apiCertificate)
	mux.HandleFunc("POST /api/v1/ci/certificate", s.apiCICertificate)
	mux.HandleFunc("GET /api/v1/ssh-config", s.apiSSHConfig)
	mux.HandleFunc("GET /static/style.css", s.style)
	mux.HandleFunc("GET /favicon.ico", favicon)
	s.adminRoutes(mux)
	if s.o.Webhook != nil {
		mux.Handle("POST "+WebhookPath, s.o.Webhook)
	}
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /metrics", s.serveMetrics)
	// Browsers never get to POST across origins, whatever the form; the
	// CSRF tokens are the second line.
	cop := http.NewCrossOriginProtection()
	return s.withHeaders(cop.Handler(mux))
}

// withHeaders sets the headers every answer carries and limits bodies.
func (s *Server) withHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("Cache-Control", "no-store")
		if s.secure {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, s.o.MaxRequestBytes)
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) client(r *http.Request) netip.Addr { return clientAddr(r, s.o.TrustedProxies) }

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.o.Policy.Policy() == nil {
		http.Error(w, "no policy loaded", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	s.metrics.write(w)
}

// Cookie names; with https the __Host- prefix pins them to this origin.
func (s *Server) cookieName(name string) string {
	if s.secure {
		return "__Host-" + name
	}
	return name
}

const (
	sessionCookie = "sallyport_session"
	loginCookie   = "sallyport_login"
)

func (s *Server) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name:     s.cookieName(name),
		Value:    value,
		Path:     "/",
		MaxAge:   int(maxAge / time.Second),
		HttpOnly: true,
		Secure:   s.secure,
		SameSite: http.SameSiteLaxMode,
	})
}

func (s *Server) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: s.cookieName(name), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode})
}

// browserSession returns the signed-in session of the request's cookie.
func (s *Server) browserSession(r *http.Request) (*session, string, bool) {
	c, err := r.Cookie(s.cookieName(sessionCookie))
	if err != nil {
		return nil, "", false
	}
	sess, ok := s.sessions.lookup(c.Value, "browser")
	return sess, c.Value, ok
}

func bindingHash(v string) [sha256.Size]byte {
	return sha256.Sum256([]byte("sallyport login binding\x00" + v))
}
