package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"html"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/oauth2"

	"github.com/sallyport/sallyport/web"
)

func runLogin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("login", "", `
Sign in with GitHub and get an SSH certificate for your key. Without --key a
dedicated Ed25519 key ~/.ssh/sallyport is used (created if missing, mode
0600). The certificate is written beside the key as KEY-cert.pub and, when
ssh-agent runs (SSH_AUTH_SOCK), added to it with the certificate's lifetime.

The browser is opened on the server's sign-in page and returns to a
one-time listener on 127.0.0.1 (state and PKCE protect the hand-over). With
--no-browser, a URL and a short code are printed to confirm in any browser.
--dev-user LOGIN signs in as a demo user of 'sallyport dev' without a
browser.`, stderr)
	server := fs.String("server", "", "Sallyport server `URL` (required)")
	keyPath := fs.String("key", "", "private key `file` to certify (default ~/.ssh/sallyport)")
	noBrowser := fs.Bool("no-browser", false, "print a URL and code to confirm in any browser instead of opening one")
	provider := fs.String("provider", "", "sign in with this OIDC `provider` of the server instead of GitHub")
	devUser := fs.String("dev-user", "", "sign in as this demo `login` of 'sallyport dev', without a browser")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this `duration`")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	base, err := serverURL(*server)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	if *noBrowser && (*devUser != "" || *provider != "") {
		return errors.New("login: --no-browser signs in with GitHub in your browser; it does not go with --dev-user or --provider")
	}
	path, err := defaultKeyPath(*keyPath)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	hc := &http.Client{Timeout: 30 * time.Second}
	// Reach the server before creating a key for it.
	if err := checkReachable(ctx, hc, base); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	key, pub, created, err := loadOrCreateKey(path)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	if created {
		fmt.Fprintf(stderr, "Created a new Ed25519 key %s\n", path)
	}
	var token string
	switch {
	case *noBrowser:
		token, err = deviceLogin(ctx, hc, base, stderr)
	default:
		token, err = loopbackLogin(ctx, base, *provider, *devUser, stderr)
	}
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	resp, err := requestCertificate(ctx, hc, base, token, pub)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	cert, err := parseCert([]byte(resp.Certificate))
	if err != nil {
		return fmt.Errorf("login: the server sent %w", err)
	}
	certPath := path + "-cert.pub"
	if note := replacedNote(certPath, cert); note != "" {
		fmt.Fprintln(stderr, note)
	}
	if err := os.WriteFile(certPath, []byte(resp.Certificate+"\n"), 0o644); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	agentNote := addToAgent(key, cert, path)
	printCertificate(stdout, cert, certPath, &resp.Access, time.Now())
	if agentNote != "" {
		fmt.Fprintln(stdout, agentNote)
	}
	return nil
}

// checkReachable makes one request to the server, so that a server that is
// not running is reported before anything else happens. Any HTTP answer
// will do.
func checkReachable(ctx context.Context, hc *http.Client, base *url.URL) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base.JoinPath("/healthz").String(), nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ended(ctx, "the server to answer")
		}
		return transportError(base, err)
	}
	resp.Body.Close()
	return nil
}

// transportError is the error of a request to the Sallyport server at base
// that got no answer, in one line without the request's URL (which holds
// the sign-in's state and challenge): a server that cannot be reached says
// so and what to check.
func transportError(base *url.URL, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		reason := oe.Err
		var se *os.SyscallError
		if errors.As(reason, &se) {
			reason = se.Err
		}
		return fmt.Errorf("the Sallyport server at %s is not reachable (%v); is `sallyport dev` or the server running?", base.Redacted(), reason)
	}
	return fmt.Errorf("the Sallyport server at %s: %w", base.Redacted(), err)
}

// ended says why ctx ended while waiting for what: Ctrl-C, or --timeout.
func ended(ctx context.Context, what string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("timed out waiting for %s (--timeout)", what)
	}
	return fmt.Errorf("interrupted while waiting for %s", what)
}

// replacedNote says whose certificate is replaced when the certificate at
// path was issued to someone else than next: signing in as bob with
// alice's key. It is "" when there is no such certificate.
func replacedNote(path string, next *ssh.Certificate) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	prev, err := parseCert(b)
	if err != nil {
		return ""
	}
	was, now := certIdentity(prev), certIdentity(next)
	if was == now {
		return ""
	}
	// The login alone ("alice"), unless only the rest differs.
	if w, n := strings.Fields(was), strings.Fields(now); len(w) > 0 && len(n) > 0 && w[0] != n[0] {
		was, now = w[0], n[0]
	}
	return fmt.Sprintf("replacing the certificate of %s with one for %s", was, now)
}

// certIdentity is whom a Sallyport certificate was issued to: its key ID
// without the serial the CA appends ("alice github:1001").
func certIdentity(c *ssh.Certificate) string {
	return strings.TrimSuffix(c.KeyId, " serial="+strconv.FormatUint(c.Serial, 10))
}

func serverURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("--server is required, e.g. --server https://sallyport.example.org")
	}
	u, err := url.Parse(strings.TrimSuffix(s, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("--server %q is not an http(s) URL", s)
	}
	if u.Scheme == "http" {
		if ip := net.ParseIP(u.Hostname()); (ip == nil || !ip.IsLoopback()) && u.Hostname() != "localhost" {
			return nil, fmt.Errorf("--server %q: plain http is only allowed to a loopback address", s)
		}
	}
	return u, nil
}

func defaultKeyPath(p string) (string, error) {
	if p != "" {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".ssh", "sallyport"), nil
}

// loadOrCreateKey reads the private key at path, or creates an Ed25519 key
// there (0600, with PATH.pub) when there is none. key is nil when the file
// is passphrase-protected: the certificate is still issued for its public
// key, but cannot be added to the agent by us.
func loadOrCreateKey(path string) (key any, pub ssh.PublicKey, created bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, false, err
		}
		block, err := ssh.MarshalPrivateKey(priv, "sallyport")
		if err != nil {
			return nil, nil, false, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, nil, false, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, nil, false, err
		}
		if _, err := f.Write(pem.EncodeToMemory(block)); err != nil {
			f.Close()
			return nil, nil, false, err
		}
		if err := f.Close(); err != nil {
			return nil, nil, false, err
		}
		sshPub, err := ssh.NewPublicKey(priv.Public())
		if err != nil {
			return nil, nil, false, err
		}
		if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(sshPub), 0o644); err != nil {
			return nil, nil, false, err
		}
		return priv, sshPub, true, nil
	}
	if err != nil {
		return nil, nil, false, err
	}
	raw, err := ssh.ParseRawPrivateKey(data)
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		if missing.PublicKey != nil {
			return nil, missing.PublicKey, false, nil
		}
		pub, err := readPublicKey(path + ".pub")
		return nil, pub, false, err
	case err != nil:
		return nil, nil, false, fmt.Errorf("%s: %w", path, err)
	}
	signer, err := ssh.NewSignerFromKey(raw)
	if err != nil {
		return nil, nil, false, fmt.Errorf("%s: %w", path, err)
	}
	return raw, signer.PublicKey(), false, nil
}

// loopbackLogin runs the browser sign-in with a one-time listener on
// 127.0.0.1 and returns a CLI token.
func loopbackLogin(ctx context.Context, base *url.URL, provider, devUser string, stderr io.Writer) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	state := rand.Text()
	verifier := oauth2.GenerateVerifier()
	port := ln.Addr().(*net.TCPAddr).Port
	q := url.Values{"port": {strconv.Itoa(port)}, "state": {state},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}}
	if devUser != "" {
		q.Set("login_hint", devUser)
	}
	if provider != "" {
		q.Set("provider", provider)
	}
	start := base.JoinPath("/cli/login")
	start.RawQuery = q.Encode()

	codes := make(chan string, 1)
	errs := make(chan error, 1)
	hs := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		got := r.URL.Query()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Referrer-Policy", "no-referrer")
		if subtle.ConstantTimeCompare([]byte(got.Get("state")), []byte(state)) != 1 || got.Get("code") == "" {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, "<!doctype html><title>Sallyport</title><p>This sign-in does not belong to the waiting sallyport login. Nothing was done.</p>")
			select {
			case errs <- errors.New("the browser came back with a wrong state; refusing it"):
			default:
			}
			return
		}
		io.WriteString(w, "<!doctype html><title>Sallyport</title><p>Signed in. You can close this tab and return to the terminal.</p>")
		select {
		case codes <- got.Get("code"):
		default:
		}
	})}
	go hs.Serve(ln) //nolint:errcheck // closed below
	defer hs.Close()

	if devUser != "" {
		// Act as the browser: follow the redirects through the server and
		// the dev stand-in, which picks the user from login_hint.
		jar, _ := cookiejar.New(nil)
		browser := &http.Client{Jar: jar, Timeout: 30 * time.Second}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, start.String(), nil)
		if err != nil {
			return "", err
		}
		resp, err := browser.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return "", ended(ctx, "the sign-in as "+devUser)
			}
			return "", fmt.Errorf("sign-in as %s: %w", devUser, transportError(base, err))
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Request.URL.Host != ln.Addr().String() {
			// The stand-in shows its sign-in page, listing the demo
			// users, for a login it does not know.
			if users := signInPageUsers(body); len(users) > 0 && !slices.ContainsFunc(users, func(u string) bool { return strings.EqualFold(u, devUser) }) {
				return "", fmt.Errorf("no demo user %s; demo users are %s", devUser, strings.Join(users, ", "))
			}
			return "", fmt.Errorf("sign-in as %s did not complete (%s): %s", devUser, resp.Status, pageText(body))
		}
	} else {
		fmt.Fprintf(stderr, "Opening your browser to sign in. If it does not open, visit:\n\n  %s\n\n", start)
		openBrowser(start.String())
	}
	var code string
	select {
	case code = <-codes:
	case err := <-errs:
		return "", err
	case <-ctx.Done():
		return "", ended(ctx, "the browser sign-in")
	}
	return redeem(ctx, base, map[string]string{"code": code, "code_verifier": verifier})
}

// signInUser is a demo user's button on the dev stand-in's sign-in page.
var signInUser = regexp.MustCompile(`<button type="submit" name="user" value="([^"&<>]+)">`)

// signInPageUsers returns the demo users the dev stand-in's sign-in page
// offers, in its order; none for any other page.
func signInPageUsers(page []byte) []string {
	var users []string
	for _, m := range signInUser.FindAllSubmatch(page, -1) {
		users = append(users, string(m[1]))
	}
	return users
}

// pageText returns the readable text of an error page, for messages: its
// error paragraph as plain text (the page's HTML entities, such as the
// quotes around a suspension's reason, decoded), in one line without
// control characters, at most 300 bytes.
func pageText(b []byte) string {
	s := string(b)
	if i := strings.Index(s, `class="error">`); i >= 0 {
		s = s[i+len(`class="error">`):]
		if j := strings.Index(s, "<"); j >= 0 {
			s = s[:j]
		}
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, html.UnescapeString(s))
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = strings.ToValidUTF8(s[:300], "") + "..."
	}
	return s
}

func openBrowser(u string) {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", u)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", u)
	default:
		cmd = exec.Command("xdg-open", u)
	}
	if cmd.Start() == nil {
		go cmd.Wait() //nolint:errcheck // the browser's exit status does not matter
	}
}

// deviceLogin prints a URL and a code to confirm in any browser, and polls
// until the person has entered it.
func deviceLogin(ctx context.Context, hc *http.Client, base *url.URL, stderr io.Writer) (string, error) {
	verifier := oauth2.GenerateVerifier()
	var d struct {
		DeviceCode      string `json:"device_code"`
		UserCode        string `json:"user_code"`
		VerificationURI string `json:"verification_uri"`
		ExpiresIn       int    `json:"expires_in"`
		Interval        int    `json:"interval"`
	}
	if err := postJSON(ctx, hc, base, "/api/v1/cli/device", "",
		map[string]string{"code_challenge": oauth2.S256ChallengeFromVerifier(verifier), "code_challenge_method": "S256"}, &d); err != nil {
		return "", err
	}
	fmt.Fprintf(stderr, "To sign in, open\n\n  %s\n\nin any browser, sign in with GitHub, and enter the code\n\n  %s\n\n", d.VerificationURI, d.UserCode)
	interval := time.Duration(max(d.Interval, 1)) * time.Second
	deadline := time.Now().Add(time.Duration(d.ExpiresIn) * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return "", ended(ctx, "the code to be entered")
		case <-time.After(interval):
		}
		token, err := redeemWith(ctx, hc, base, map[string]string{"device_code": d.DeviceCode, "code_verifier": verifier})
		var ae *apiError
		if errors.As(err, &ae) && (ae.Code == "authorization_pending" || ae.Code == "slow_down") {
			continue
		}
		if err != nil && ctx.Err() != nil {
			return "", ended(ctx, "the code to be entered")
		}
		return token, err
	}
	return "", errors.New("the code expired before it was entered; run sallyport login again")
}

func redeem(ctx context.Context, base *url.URL, body map[string]string) (string, error) {
	return redeemWith(ctx, &http.Client{Timeout: 30 * time.Second}, base, body)
}

func redeemWith(ctx context.Context, hc *http.Client, base *url.URL, body map[string]string) (string, error) {
	var t web.TokenResponse
	if err := postJSON(ctx, hc, base, "/api/v1/cli/token", "", body, &t); err != nil {
		return "", err
	}
	return t.Token, nil
}

func requestCertificate(ctx context.Context, hc *http.Client, base *url.URL, token string, pub ssh.PublicKey) (*web.CertificateResponse, error) {
	var resp web.CertificateResponse
	err := postJSON(ctx, hc, base, "/api/v1/certificate", token,
		web.CertificateRequest{PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))}, &resp)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	return &resp, nil
}

// apiError is an error answer of the Sallyport API.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("server answered %d %s", e.Status, e.Code)
	}
	return e.Message
}

// postJSON posts body as JSON to path on the server at base, with token as
// the bearer token if not empty, and decodes the answer into out.
func postJSON(ctx context.Context, hc *http.Client, base *url.URL, path, token string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base.JoinPath(path).String(), bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return transportError(base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e web.APIError
		if json.Unmarshal(data, &e) != nil {
			e.Error = resp.Status
		}
		return &apiError{Status: resp.StatusCode, Code: e.Error, Message: e.Message}
	}
	return json.Unmarshal(data, out)
}

func parseCert(b []byte) (*ssh.Certificate, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return nil, fmt.Errorf("an unreadable certificate: %w", err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, errors.New("a plain key, not a certificate")
	}
	return cert, nil
}

// addToAgent adds key and cert to the running ssh-agent with the
// certificate's remaining lifetime, and returns a line saying what happened.
func addToAgent(key any, cert *ssh.Certificate, path string) string {
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return ""
	}
	if key == nil {
		return fmt.Sprintf("%s is passphrase-protected: add it to your agent with ssh-add %s", path, path)
	}
	life := time.Until(time.Unix(int64(cert.ValidBefore), 0))
	if life <= 0 {
		return ""
	}
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return fmt.Sprintf("Could not reach ssh-agent (%v); ssh will use %s-cert.pub directly.", err, path)
	}
	defer conn.Close()
	err = agent.NewClient(conn).Add(agent.AddedKey{PrivateKey: key, Certificate: cert,
		LifetimeSecs: uint32(life / time.Second), Comment: "sallyport " + cert.KeyId})
	if err != nil {
		return fmt.Sprintf("Could not add the certificate to ssh-agent (%v); ssh will use %s-cert.pub directly.", err, path)
	}
	return fmt.Sprintf("Added to ssh-agent until %s.", time.Unix(int64(cert.ValidBefore), 0).Local().Format("15:04 MST"))
}

// printCertificate says who the certificate is for, what it reaches and
// until when, as of now. Of an expired certificate it prints no validity:
// the caller says it has expired.
func printCertificate(w io.Writer, cert *ssh.Certificate, path string, access *web.Access, now time.Time) {
	fmt.Fprintf(w, "Certificate %s\n  key ID:     %s\n  principals: %s\n", path, cert.KeyId, strings.Join(cert.ValidPrincipals, ", "))
	until := time.Unix(int64(cert.ValidBefore), 0)
	if left := until.Sub(now); left > 0 {
		fmt.Fprintf(w, "  valid until %s (%s from now)\n", until.Local().Format("2006-01-02 15:04 MST"), roundLeft(left))
	}
	if access != nil && len(access.Hosts) > 0 {
		fmt.Fprintf(w, "  hosts:\n")
		for _, h := range access.Hosts {
			extra := ""
			if h.ForceCommand != "" {
				extra = " (runs only " + h.ForceCommand + ")"
			}
			fmt.Fprintf(w, "    %-16s as %s%s\n", h.Host, strings.Join(h.Principals, ", "), extra)
		}
	}
}

// roundLeft rounds a remaining lifetime to the minute, or says it is less
// than one rather than "0s".
func roundLeft(d time.Duration) string {
	if d < time.Minute {
		return "less than a minute"
	}
	return d.Round(time.Minute).String()
}
