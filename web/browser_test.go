package web

import (
	"context"
	"encoding/json"
	"html/template"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/sallyport/sallyport/identity"
	"github.com/sallyport/sallyport/internal/browsertest"
	"github.com/sallyport/sallyport/recording"
)

// These tests drive the real Chromium (internal/browsertest) against the
// web server and the GitHub stand-in, to see what an HTTP client cannot:
// which cookies a browser sends across the redirects of a sign-in, what
// the pages render, and what the Content-Security-Policy lets run.

// githubOnHost moves GitHub's web pages (the authorize page the browser
// is sent to) to another host name of the same stand-in, so that GitHub
// and Sallyport are different sites to the browser, as github.com and a
// deployment are. The API calls still go to 127.0.0.1.
type githubOnHost struct {
	GitHubSignIn
	host string
}

func (g githubOnHost) AuthCodeURL(req identity.AuthRequest, loginHint string) string {
	u, err := url.Parse(g.GitHubSignIn.AuthCodeURL(req, loginHint))
	if err != nil {
		panic(err)
	}
	u.Host = net.JoinHostPort(g.host, u.Port())
	return u.String()
}

// requestsTo records the URLs of the requests tab makes to path.
func requestsTo(t *testing.T, tab *browsertest.Tab, path string) func() []string {
	t.Helper()
	var mu sync.Mutex
	var seen []string
	err := chromedp.Listen(tab.Context(), func(ev any) {
		if ev, ok := ev.(*network.EventRequestWillBeSent); ok {
			if u, err := url.Parse(ev.Request.URL); err == nil && u.Path == path {
				mu.Lock()
				seen = append(seen, ev.Request.URL)
				mu.Unlock()
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

// tableRows returns the text of the cells of each row of the page's
// tables, joined by " | ".
func tableRows(tab *browsertest.Tab) []string {
	return browsertest.Eval[[]string](tab, `Array.from(document.querySelectorAll("main table tbody tr"),
		tr => Array.from(tr.cells, td => td.innerText.trim()).join(" | "))`)
}

func TestBrowserSignIn(t *testing.T) {
	b := browsertest.New(t)
	tests := []struct {
		name string
		// githubHost is where the browser finds GitHub's pages: "" is the
		// server's own 127.0.0.1, the same site, as in `sallyport dev`;
		// "localhost" is another site, as github.com is.
		githubHost string
		// page: from the home page's link and a click on the stand-in's
		// page, as a person does; otherwise straight to /login with a
		// login_hint, which the stand-in answers with a redirect at once
		// (as GitHub does for an app the person authorised before). Only
		// the click makes the way back to the callback start on GitHub's
		// site, where a SameSite=Strict cookie would stay behind: Chromium
		// judges a navigation by the site that started it, not by the
		// redirects it passed.
		page bool
	}{
		{name: "ok/page-same-site", page: true},
		{name: "ok/page-another-site", githubHost: "localhost", page: true},
		{name: "ok/login-hint-same-site"},
		{name: "ok/login-hint-another-site", githubHost: "localhost"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) {
				if tc.githubHost != "" {
					o.GitHub = githubOnHost{o.GitHub, tc.githubHost}
				}
			})
			tab := b.NewTab(t)
			callbacks := requestsTo(t, tab, CallbackPath)
			home := jsString(e.ts.URL + "/")

			if tc.page {
				if status := tab.Navigate(e.ts.URL + "/"); status != 200 {
					t.Fatalf("home page: status %d", status)
				}
				// The page's own stylesheet passes its Content-Security-Policy.
				if got := browsertest.Eval[string](tab, `getComputedStyle(document.querySelector("a.button")).backgroundColor`); got != "rgb(36, 41, 47)" {
					t.Errorf("sign-in button background %q; want the style sheet's rgb(36, 41, 47)", got)
				}
				tab.Do(chromedp.Click(chromedp.CSS(`a.button[href="/login"]`)))
				// The stand-in's page, where a person picks who they are.
				tab.WaitFor(`location.pathname === "/login/oauth/authorize" && document.readyState === "complete"`)
				if tc.githubHost != "" {
					if got := browsertest.Eval[string](tab, "location.hostname"); got != tc.githubHost {
						t.Fatalf("GitHub's page is on %s; want %s", got, tc.githubHost)
					}
				}
				// A Content-Security-Policy violation on the stand-in's page
				// leaves the browser there; note it, so as not to wait for
				// a page that will not come.
				browsertest.Eval[bool](tab, `document.addEventListener("securitypolicyviolation",
					e => { window.violation = e.effectiveDirective + " blocked " + e.blockedURI }), true`)
				tab.Do(chromedp.Click(chromedp.CSS(`button[name="user"][value="alice"]`)))
				tab.WaitFor(`window.violation || (location.href === ` + home + ` && document.querySelector("h1")?.textContent === "Your access")`)
				if v := browsertest.Eval[string](tab, `window.violation ?? ""`); v != "" {
					t.Fatalf("the stand-in's sign-in page kept the browser from returning to Sallyport: its Content-Security-Policy %s\nconsole:\n%s",
						v, strings.Join(tab.Console(), "\n"))
				}
			} else {
				tab.Navigate(e.ts.URL + "/login?login_hint=alice")
				tab.WaitFor(`location.href === ` + home + ` && document.querySelector("h1")?.textContent === "Your access"`)
			}

			text := browsertest.Eval[string](tab, "document.body.innerText")
			contains(t, "page", text, "Signed in as alice (GitHub ID 1001), teams infra, website.")
			want := []string{
				"web1 | deploy | pty", "web1 | root | pty, port-forwarding, agent-forwarding",
				"web2 | deploy | pty", "web2 | root | pty, port-forwarding, agent-forwarding",
				"db1 | deploy, root | pty, port-forwarding, agent-forwarding",
				"build1 | deploy, root | pty, port-forwarding, agent-forwarding",
			}
			if got := tableRows(tab); !slices.Equal(got, want) {
				t.Errorf("access table rows = %q; want %q", got, want)
			}
			// Nothing went wrong on the way that the browser noticed: no
			// blocked resource, no missing icon, no error.
			if c := tab.Console(); len(c) > 0 {
				t.Errorf("the browser's console after signing in:\n%s", strings.Join(c, "\n"))
			}

			// The session cookie is there, HttpOnly and SameSite=Lax, and
			// hidden from scripts; the sign-in's binding cookie is gone.
			var session *network.Cookie
			for _, c := range tab.Cookies(e.ts.URL + "/") {
				switch c.Name {
				case sessionCookie:
					session = c
				case loginCookie:
					t.Errorf("the sign-in binding cookie outlived the sign-in: %+v", c)
				}
			}
			if session == nil || !session.HTTPOnly || session.SameSite != network.CookieSameSiteLax {
				t.Errorf("session cookie %+v; want one, HttpOnly, SameSite=Lax", session)
			}
			if got := browsertest.Eval[string](tab, "document.cookie"); strings.Contains(got, sessionCookie) {
				t.Errorf("document.cookie = %q: scripts can read the session", got)
			}

			// The callback, replayed in another profile, signs nobody in.
			cbs := callbacks()
			if len(cbs) != 1 {
				t.Fatalf("callback requests %q; want one", cbs)
			}
			other := b.NewTab(t)
			if status := other.Navigate(cbs[0]); status != 400 {
				t.Errorf("replayed callback: status %d; want 400", status)
			}
			contains(t, "replayed callback", browsertest.Eval[string](other, "document.body.innerText"), "not valid any more")
			if status := other.Navigate(e.ts.URL + "/"); status != 200 {
				t.Fatalf("home page in the other profile: status %d", status)
			}
			if h1 := browsertest.Eval[string](other, `document.querySelector("h1").textContent`); h1 != "Sign in" {
				t.Errorf("the other profile sees %q; want the sign-in page", h1)
			}

			// Signing out from the page: a form POST that the cross-origin
			// protection (which reads the headers only a browser sends)
			// and the CSRF token let through, ending the session.
			tab.Do(chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)))
			tab.WaitFor(`location.href === ` + home + ` && document.querySelector("h1")?.textContent === "Sign in"`)
			for _, c := range tab.Cookies(e.ts.URL + "/") {
				if c.Name == sessionCookie {
					t.Errorf("session cookie after signing out: %+v", c)
				}
			}
		})
	}
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// signInBrowser signs login in, in a fresh profile, through the stand-in's
// login_hint (no click), and returns the tab on the home page.
func (e *env) signInBrowser(t *testing.T, b *browsertest.Browser, login string) *browsertest.Tab {
	t.Helper()
	tab := b.NewTab(t)
	if status := tab.Navigate(e.ts.URL + "/login?login_hint=" + login); status != 200 {
		t.Fatalf("sign-in of %s: status %d", login, status)
	}
	tab.WaitFor(`document.querySelector("h1")?.textContent === "Your access"`)
	return tab
}

// recordOutput writes a finished pty recording of identity running
// command, whose session printed out, indexed through index.
func (re *recEnv) recordOutput(t *testing.T, index recording.Index, identity, user, command, out string) string {
	t.Helper()
	ctx := context.Background()
	rec, err := recording.New(recording.Options{Dir: re.recDir, Index: index, Signer: re.sessionCA})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := rec.Start(ctx, recording.Meta{Identity: identity, User: user, Login: "root", Host: "web1", Command: command, PTY: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Stdout().Write([]byte(out)); err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Close(ctx, recording.End{ExitStatus: 0}); err != nil {
		t.Fatal(err)
	}
	return sess.ID()
}

func TestBrowserRecordingPage(t *testing.T) {
	e := newAdminEnv(t)
	b := browsertest.New(t)
	// What a hostile program on a target might print: a clipboard write
	// (OSC 52), window titles, and markup that would run if it reached the
	// page as HTML. Its command line carries markup too.
	hostile := "\x1b]52;c;cm0gLXJmIH4K\x07\x1b]0;pwned-title\x07\x1b]2;pwned-title-2\x1b\\" +
		"<script>window.pwned=1</script>\r\n<img src=x onerror=window.pwned=2>\r\n" +
		"\x1b[31mdone\x1b[0m\r\n"
	tests := []struct {
		name    string
		id      string
		verdict string // the verdict's element
		want    []string
		// transcript is what the page's <pre> must show; "" skips.
		transcript string
	}{
		{name: "ok/intact-hostile-output",
			id:         e.recordOutput(t, e.st, "github:1001", "alice", `printf '<b id=cmd>x</b>'`, hostile),
			verdict:    "strong.ok",
			want:       []string{"intact: ", "signed by the session CA"},
			transcript: "<script>window.pwned=1</script>\n<img src=x onerror=window.pwned=2>\ndone\n"},
		// As in TestRecordingsAccess: the index says db1, the recording,
		// intact in itself, says web1.
		{name: "fail/index-disagrees",
			id:      e.recordOutput(t, hostLyingIndex{e.st}, "github:1002", "bob", "", "hello from bob\r\n"),
			verdict: "strong.error",
			want:    []string{"NOT INTACT: the index and the recording disagree", "index says host db1, recording says web1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tab := e.signInBrowser(t, b, "carol")
			if status := tab.Navigate(e.ts.URL + "/recordings/" + tc.id); status != 200 {
				t.Fatalf("recording page: status %d", status)
			}
			tab.Do(chromedp.WaitVisible(chromedp.CSS(tc.verdict)))
			verdict := browsertest.Eval[string](tab, `document.querySelector(`+jsString(tc.verdict)+`).innerText`)
			for _, w := range tc.want {
				contains(t, "verdict", verdict, w)
			}
			if got, want := browsertest.Eval[string](tab, "document.title"), "Recording "+tc.id+" · Sallyport"; got != want {
				t.Errorf("title %q; want %q", got, want)
			}
			type seen struct {
				Pwned   any  `json:"pwned"`
				Scripts int  `json:"scripts"`
				Images  int  `json:"images"`
				Bold    bool `json:"bold"`
			}
			got := browsertest.Eval[seen](tab, `({pwned: window.pwned ?? null, scripts: document.scripts.length,
				images: document.images.length, bold: document.getElementById("cmd") !== null})`)
			if got != (seen{}) {
				t.Errorf("recorded markup became part of the page: %+v", got)
			}
			if tc.transcript == "" {
				return
			}
			if got := browsertest.Eval[string](tab, `document.querySelector("main pre").innerText`); got != tc.transcript {
				t.Errorf("transcript %q; want %q", got, tc.transcript)
			}
			text := browsertest.Eval[string](tab, "document.body.innerText")
			contains(t, "page", text, "running printf '<b id=cmd>x</b>'")
			for _, bad := range []string{"cm0gLXJmIH4K", "pwned-title", "]52;"} {
				if strings.Contains(text, bad) {
					t.Errorf("page shows %q:\n%s", bad, text)
				}
			}
		})
	}
}

// injectScript and injectHandler put markup into the page as an attacker
// who got past the templates' escaping would; they answer "ran", or which
// Content-Security-Policy directive blocked it.
const (
	injectScript = `new Promise(done => {
		document.addEventListener("securitypolicyviolation", e => done("blocked by " + e.effectiveDirective), {once: true});
		const s = document.createElement("script");
		s.textContent = "window.pwned = 1";
		document.body.append(s);
		if (window.pwned) done("ran");
	})`
	injectHandler = `new Promise(done => {
		document.addEventListener("securitypolicyviolation", e => done("blocked by " + e.effectiveDirective), {once: true});
		const d = document.createElement("div");
		d.innerHTML = '<img src="/no-such-image.png" onerror="window.pwned = 1">';
		d.firstChild.addEventListener("error", () => { if (window.pwned) done("ran"); });
		document.body.append(d);
	})`
)

// framingPage serves, on a loopback port of its own, a page that puts
// the URL in its frame query parameter in an iframe, as a clickjacking
// site would, and a plain page at /plain.
func framingPage(t *testing.T) *httptest.Server {
	t.Helper()
	tmpl := template.Must(template.New("").Parse(`<!doctype html><title>framing</title><iframe src="{{.}}"></iframe>`))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if r.URL.Path == "/plain" {
			w.Write([]byte("<!doctype html><title>plain</title><p>plain"))
			return
		}
		tmpl.Execute(w, r.URL.Query().Get("frame"))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// framed loads u in an iframe of the framing page and tells whether the
// browser showed it ("framed") or refused to ("refused").
func framed(t *testing.T, tab *browsertest.Tab, framing *httptest.Server, u string) string {
	t.Helper()
	// The load event waits for the frame, shown or refused.
	tab.Navigate(framing.URL + "/?frame=" + url.QueryEscape(u))
	var frame *cdp.Frame
	tab.Do(chromedp.Func(func(ctx context.Context, target *chromedp.Target) error {
		res, err := cdp.Call(ctx, target, page.GetFrameTree, cdp.Empty{})
		if err == nil && len(res.FrameTree.ChildFrames) == 1 {
			frame = res.FrameTree.ChildFrames[0].Frame
		}
		return err
	}))
	switch {
	case frame == nil:
		t.Fatal("no frame in the framing page")
	case frame.URL == u:
		return "framed"
	case frame.UnreachableURL == u:
		return "refused"
	}
	t.Fatalf("frame %+v", frame)
	return ""
}

func TestBrowserSecurityHeaders(t *testing.T) {
	e := newEnv(t)
	b := browsertest.New(t)
	framing, other := framingPage(t), framingPage(t)
	// bypassCSP makes the browser ignore the page's policy: the control
	// that shows a probe would succeed if the policy did not stop it.
	bypassCSP := chromedp.Func(func(ctx context.Context, target *chromedp.Target) error {
		_, err := cdp.Call(ctx, target, page.SetBypassCSP, page.SetBypassCSPParams{Enabled: true})
		return err
	})
	tests := []struct {
		name  string
		probe func(t *testing.T) string
		want  string
	}{
		{"ok/control-inline-script-runs-without-csp", func(t *testing.T) string {
			tab := e.signInBrowser(t, b, "alice")
			tab.Do(bypassCSP)
			tab.Navigate(e.ts.URL + "/")
			return browsertest.Eval[string](tab, injectScript)
		}, "ran"},
		{"ok/control-inline-handler-runs-without-csp", func(t *testing.T) string {
			tab := e.signInBrowser(t, b, "alice")
			tab.Do(bypassCSP)
			tab.Navigate(e.ts.URL + "/")
			return browsertest.Eval[string](tab, injectHandler)
		}, "ran"},
		{"fail/inline-script", func(t *testing.T) string {
			return browsertest.Eval[string](e.signInBrowser(t, b, "alice"), injectScript)
		}, "blocked by script-src-elem"},
		{"fail/inline-handler", func(t *testing.T) string {
			return browsertest.Eval[string](e.signInBrowser(t, b, "alice"), injectHandler)
		}, "blocked by script-src-attr"},
		// A page of another origin, as Sallyport's is, without its headers.
		{"ok/control-frame-page-without-headers", func(t *testing.T) string {
			return framed(t, b.NewTab(t), framing, other.URL+"/plain")
		}, "framed"},
		{"fail/frame-home-page", func(t *testing.T) string {
			return framed(t, e.signInBrowser(t, b, "alice"), framing, e.ts.URL+"/")
		}, "refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.probe(t); got != tc.want {
				t.Errorf("got %s; want %s", got, tc.want)
			}
		})
	}
}
