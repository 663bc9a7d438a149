package web

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/oauth2"
)

// cliListener is the loopback listener of a `sallyport login`, capturing
// the redirect the browser is sent to.
type cliListener struct {
	port  int
	got   chan url.Values
	close func()
}

func newCLIListener(t *testing.T) *cliListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &cliListener{port: ln.Addr().(*net.TCPAddr).Port, got: make(chan url.Values, 4)}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.got <- r.URL.Query()
		io.WriteString(w, "ok")
	})}
	go srv.Serve(ln)
	l.close = func() { srv.Close() }
	t.Cleanup(l.close)
	return l
}

func (e *env) postJSON(t *testing.T, path, bearer string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// cliCode runs the browser half of a loopback CLI sign-in as login and
// returns the one-time code delivered to the listener.
func (e *env) cliCode(t *testing.T, login, verifier string) string {
	t.Helper()
	l := newCLIListener(t)
	state := "cli-state-" + strconv.Itoa(l.port) + "-abcdefgh"
	q := url.Values{"port": {strconv.Itoa(l.port)}, "state": {state}, "code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)},
		"code_challenge_method": {"S256"}, "login_hint": {login}}
	st, body := get(t, e.browser(t), e.ts.URL+"/cli/login?"+q.Encode())
	if st != 200 || body != "ok" {
		t.Fatalf("CLI sign-in did not reach the listener: %d %s", st, body)
	}
	got := <-l.got
	if got.Get("state") != state {
		t.Fatalf("listener got state %q; want %q", got.Get("state"), state)
	}
	return got.Get("code")
}

func TestCLILogin(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name   string
		body   func(code, verifier string) map[string]string
		status int
		errStr string
	}{
		{"ok/verifier", func(c, v string) map[string]string { return map[string]string{"code": c, "code_verifier": v} }, 200, ""},
		{"fail/missing-verifier", func(c, v string) map[string]string { return map[string]string{"code": c} }, 400, "invalid_request"},
		{"fail/wrong-verifier", func(c, v string) map[string]string {
			return map[string]string{"code": c, "code_verifier": oauth2.GenerateVerifier()}
		}, 400, "invalid_grant"},
		{"fail/forged-code", func(c, v string) map[string]string {
			return map[string]string{"code": "forged" + c, "code_verifier": v}
		}, 400, "invalid_grant"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			verifier := oauth2.GenerateVerifier()
			code := e.cliCode(t, "alice", verifier)
			st, out := e.postJSON(t, "/api/v1/cli/token", "", tc.body(code, verifier))
			if st != tc.status {
				t.Fatalf("status = %d (%v); want %d", st, out, tc.status)
			}
			if tc.status != 200 {
				if out["error"] != tc.errStr {
					t.Errorf("error = %v; want %s", out["error"], tc.errStr)
				}
				return
			}
			// The code is single-use.
			if st, _ := e.postJSON(t, "/api/v1/cli/token", "", tc.body(code, verifier)); st != 400 {
				t.Errorf("code redeemed twice: %d", st)
			}
			token := out["token"].(string)
			_, pub := newKey(t)
			st, cr := e.postJSON(t, "/api/v1/certificate", token, CertificateRequest{PublicKey: string(ssh.MarshalAuthorizedKey(pub))})
			if st != 200 {
				t.Fatalf("certificate with CLI token: %d %v", st, cr)
			}
			e.checkCert(t, cr["certificate"].(string), pub, "root")
			if st, _ := e.postJSON(t, "/api/v1/certificate", token+"x", CertificateRequest{PublicKey: string(ssh.MarshalAuthorizedKey(pub))}); st != 401 {
				t.Errorf("tampered token: %d; want 401", st)
			}
		})
	}
}

func TestCLILoginBadRequests(t *testing.T) {
	e := newEnv(t)
	good := url.Values{"port": {"50000"}, "state": {"abcdefghijklmnopqrstuvwxyz"},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())}, "code_challenge_method": {"S256"}}
	tests := []struct {
		name string
		edit func(q url.Values)
	}{
		{"fail/port-too-low", func(q url.Values) { q.Set("port", "22") }},
		{"fail/port-is-host", func(q url.Values) { q.Set("port", "evil.example:80") }},
		{"fail/no-challenge", func(q url.Values) { q.Del("code_challenge") }},
		{"fail/plain-pkce", func(q url.Values) { q.Set("code_challenge_method", "plain") }},
		{"fail/short-state", func(q url.Values) { q.Set("state", "x") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := url.Values{}
			for k, v := range good {
				q[k] = append([]string(nil), v...)
			}
			tc.edit(q)
			b := e.browser(t)
			b.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			resp, err := b.Get(e.ts.URL + "/cli/login?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("status = %d; want 400 (Location %q)", resp.StatusCode, resp.Header.Get("Location"))
			}
		})
	}
}

// stepClock is a clock advancing step per reading, so a test's polls are
// never too frequent.
func stepClock(step time.Duration) envOption {
	var mu sync.Mutex
	now := time.Now()
	return func(o *Options) {
		o.Now = func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			now = now.Add(step)
			return now
		}
	}
}

func TestDevicePollPacing(t *testing.T) {
	e := newEnv(t)
	verifier := oauth2.GenerateVerifier()
	_, d := e.postJSON(t, "/api/v1/cli/device", "", map[string]string{"code_challenge": oauth2.S256ChallengeFromVerifier(verifier), "code_challenge_method": "S256"})
	poll := map[string]string{"device_code": d["device_code"].(string), "code_verifier": verifier}
	if _, out := e.postJSON(t, "/api/v1/cli/token", "", poll); out["error"] != "authorization_pending" {
		t.Fatalf("first poll: %v", out)
	}
	if _, out := e.postJSON(t, "/api/v1/cli/token", "", poll); out["error"] != "slow_down" {
		t.Fatalf("immediate second poll: %v; want slow_down", out)
	}
}

func TestDeviceLogin(t *testing.T) {
	e := newEnv(t, stepClock(2*time.Second))
	verifier := oauth2.GenerateVerifier()
	st, d := e.postJSON(t, "/api/v1/cli/device", "", map[string]string{"code_challenge": oauth2.S256ChallengeFromVerifier(verifier), "code_challenge_method": "S256"})
	if st != 200 {
		t.Fatalf("device: %d %v", st, d)
	}
	deviceCode, userCode := d["device_code"].(string), d["user_code"].(string)
	if st, out := e.postJSON(t, "/api/v1/cli/token", "", map[string]string{"device_code": deviceCode, "code_verifier": verifier}); st != 400 || out["error"] != "authorization_pending" {
		t.Fatalf("before approval: %d %v; want authorization_pending", st, out)
	}
	b, _, _ := e.signIn(t, "bob")
	_, page := get(t, b, e.ts.URL+"/device")
	contains(t, "device page", page, "Enter the code")
	post := func(code, csrf string) (int, string) {
		resp, err := b.PostForm(e.ts.URL+"/device", url.Values{"user_code": {code}, "csrf": {csrf}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if st, _ := post(userCode, "wrong"); st != 403 {
		t.Errorf("approval without CSRF token: %d; want 403", st)
	}
	if st, _ := post("BBBB-BBBB", csrfOf(t, page)); st != 400 {
		t.Errorf("unknown code: %d; want 400", st)
	}
	st, body := post(strings.ToLower(strings.ReplaceAll(userCode, "-", "")), csrfOf(t, page))
	if st != 200 {
		t.Fatalf("approval: %d\n%s", st, body)
	}
	contains(t, "approval", body, "Approved")
	if st, out := e.postJSON(t, "/api/v1/cli/token", "", map[string]string{"device_code": deviceCode, "code_verifier": oauth2.GenerateVerifier()}); st != 400 || out["error"] != "invalid_grant" {
		t.Fatalf("wrong verifier: %d %v", st, out)
	}
	// The wrong verifier used the device code up: a stolen device code
	// cannot be tried twice.
	if st, _ := e.postJSON(t, "/api/v1/cli/token", "", map[string]string{"device_code": deviceCode, "code_verifier": verifier}); st != 400 {
		t.Fatalf("device code usable after a wrong verifier: %d", st)
	}
}

func TestDeviceLoginOK(t *testing.T) {
	e := newEnv(t, stepClock(2*time.Second))
	verifier := oauth2.GenerateVerifier()
	_, d := e.postJSON(t, "/api/v1/cli/device", "", map[string]string{"code_challenge": oauth2.S256ChallengeFromVerifier(verifier), "code_challenge_method": "S256"})
	b, _, page := e.signIn(t, "bob")
	resp, err := b.PostForm(e.ts.URL+"/device", url.Values{"user_code": {d["user_code"].(string)}, "csrf": {csrfOf(t, page)}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	st, out := e.postJSON(t, "/api/v1/cli/token", "", map[string]string{"device_code": d["device_code"].(string), "code_verifier": verifier})
	if st != 200 || out["login"] != "bob" {
		t.Fatalf("token: %d %v; want bob's", st, out)
	}
}
