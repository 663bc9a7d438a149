package web

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/identity"
	"github.com/sallyport/sallyport/internal/githubtest"
	"github.com/sallyport/sallyport/internal/oidctest"
	"github.com/sallyport/sallyport/store"
)

// env is a Sallyport web server wired to a real store and CA, signing in
// against the GitHub stand-in.
type env struct {
	gh         *githubtest.Server
	users      map[string]githubtest.User
	st         *store.SQLite
	srv        *Server
	ts         *httptest.Server
	userCA     ssh.PublicKey
	policyPath string
	pf         *PolicyFile
}

type envOption func(*Options)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := ca.GenerateKeys(dir, ca.KeyEd25519, nil); err != nil {
		t.Fatal(err)
	}
	keys, err := ca.LoadKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, filepath.Join(dir, "sallyport.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	batch := st.NewBatcher(store.BatchOptions{})
	t.Cleanup(func() { batch.Close() })
	authority, err := ca.New(keys, batch)
	if err != nil {
		t.Fatal(err)
	}
	policyData, err := os.ReadFile("testdata/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, policyData, 0o600); err != nil {
		t.Fatal(err)
	}
	pf, err := LoadPolicyFile(ctx, policyPath, st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	gh := githubtest.New(t)
	demo, err := gh.AddDemoUsers("example-oss")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{gh: gh, users: map[string]githubtest.User{}, st: st, userCA: keys.User.PublicKey(), policyPath: policyPath, pf: pf}
	for _, u := range demo {
		e.users[u.Login] = u
	}
	// frank is a member whose only team no role names.
	frank, err := gh.AddUserWithID("frank", 1007)
	if err != nil {
		t.Fatal(err)
	}
	if err := gh.SetMembership(frank, "example-oss", githubtest.StateActive, "docs"); err != nil {
		t.Fatal(err)
	}
	e.users["frank"] = frank

	e.ts = httptest.NewUnstartedServer(nil)
	base := "http://" + e.ts.Listener.Addr().String()
	if err := gh.RegisterOAuthApp(githubtest.OAuthApp{ClientID: "test-app", ClientSecret: "test-secret", CallbackURL: base + CallbackPath}); err != nil {
		t.Fatal(err)
	}
	signIn, err := identity.NewGitHub(identity.GitHubConfig{ClientID: "test-app", ClientSecret: "test-secret", Org: "example-oss",
		RedirectURL: base + CallbackPath, WebURL: gh.URL, APIURL: gh.URL, HTTPClient: &http.Client{Timeout: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	o := Options{BaseURL: base, Issuer: authority, Audit: st, Standing: st, Policy: pf, GitHub: signIn, HostCA: keys.Host.PublicKey()}
	for _, f := range opts {
		f(&o)
	}
	e.srv, err = New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.ts.Config.Handler = e.srv
	e.ts.Start()
	t.Cleanup(e.ts.Close)
	return e
}

// browser is a cookie-keeping HTTP client that follows redirects, as a
// browser does, except to the CLI's loopback listener, which it reports.
func (e *env) browser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second}
}

// signIn runs the browser sign-in as login and returns the browser and the
// final response's status and body.
func (e *env) signIn(t *testing.T, login string) (*http.Client, int, string) {
	t.Helper()
	b := e.browser(t)
	status, body := get(t, b, e.ts.URL+"/login?login_hint="+login)
	return b, status, body
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in page:\n%s", page)
	}
	return m[1]
}

func newKey(t testing.TB) (ed25519.PrivateKey, ssh.PublicKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

// requestCert asks the API for a certificate with a browser session.
func (e *env) requestCert(t *testing.T, b *http.Client, csrf string, pub ssh.PublicKey) (int, *CertificateResponse, APIError) {
	t.Helper()
	body, _ := json.Marshal(CertificateRequest{PublicKey: string(ssh.MarshalAuthorizedKey(pub))})
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/api/v1/certificate", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if csrf != "" {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	return doCert(t, b, req)
}

func doCert(t *testing.T, c *http.Client, req *http.Request) (int, *CertificateResponse, APIError) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var apiErr APIError
	if resp.StatusCode != http.StatusOK {
		json.Unmarshal(data, &apiErr)
		return resp.StatusCode, nil, apiErr
	}
	var cr CertificateResponse
	if err := json.Unmarshal(data, &cr); err != nil {
		t.Fatalf("certificate answer %s: %v", data, err)
	}
	return resp.StatusCode, &cr, apiErr
}

// checkCert parses the certificate and checks it with x/crypto's
// CertChecker as the bastion would: signed by the user CA, valid now for
// principal.
func (e *env) checkCert(t *testing.T, text string, pub ssh.PublicKey, principal string) *ssh.Certificate {
	t.Helper()
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	cert := k.(*ssh.Certificate)
	if !bytes.Equal(cert.Key.Marshal(), pub.Marshal()) {
		t.Fatal("certificate is for another key")
	}
	checker := ssh.CertChecker{IsUserAuthority: func(a ssh.PublicKey) bool { return bytes.Equal(a.Marshal(), e.userCA.Marshal()) }}
	if _, err := checker.Authenticate(connMeta(principal), cert); err != nil {
		t.Fatalf("CertChecker refuses the certificate for %s: %v", principal, err)
	}
	return cert
}

type connMeta string

func (c connMeta) User() string        { return string(c) }
func (connMeta) SessionID() []byte     { return nil }
func (connMeta) ClientVersion() []byte { return nil }
func (connMeta) ServerVersion() []byte { return nil }
func (connMeta) RemoteAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (connMeta) LocalAddr() net.Addr   { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

func contains(t *testing.T, what, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Errorf("%s does not contain %q:\n%.2000s", what, sub, s)
	}
}

// ciAudience is the audience the GitHub Actions tokens of newActions name.
const ciAudience = "https://sallyport.example.org"

// newActions starts a stand-in GitHub Actions token issuer and a verifier
// that trusts it, for Options.CI.
func newActions(t *testing.T) (*oidctest.Issuer, *identity.Actions) {
	t.Helper()
	iss := oidctest.New(t)
	actions, err := identity.NewActions(identity.ActionsConfig{Issuer: iss.URL, Audience: ciAudience, HTTPClient: iss.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return iss, actions
}
