package web

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/internal/gpgtest"
	"github.com/sallyport/sallyport/recording"
	"github.com/sallyport/sallyport/store"
	"github.com/sallyport/sallyport/trust"
)

// adminWorld is a GnuPG home and a trust folder whose two root admins are
// the demo users carol (1003) and octo-admin (1004). alice (1001), whom
// the policy gives root everywhere through her infra team, has a key in
// the folder naming her account that no admin certified, and mallory has
// one naming alice's account too. The keys were made two days ago, so
// tests can make signatures dated in the past.
type adminWorld struct {
	gpg                        *gpgtest.Home
	trustDir                   string
	carol, octo, alice, mallor string
	created                    time.Time
}

func gpgTime(t time.Time) string { return t.UTC().Format("20060102T150405") + "!" }

func newAdminWorld(t *testing.T) *adminWorld {
	t.Helper()
	g := gpgtest.New(t)
	w := &adminWorld{gpg: g, trustDir: filepath.Join(t.TempDir(), "trust"), created: time.Now().Add(-48 * time.Hour)}
	past := []string{"--faked-system-time", gpgTime(w.created)}
	w.carol = g.GenKey("Carol (github:carol/1003) <carol@example.org>", "5y", past...)
	w.octo = g.GenKey("Octo Admin (github:octo-admin/1004) <octo@example.org>", "5y", past...)
	w.alice = g.GenKey("Alice (github:alice/1001) <alice@example.org>", "5y", past...)
	w.mallor = g.GenKey("Mallory (github:alice/1001) <mallory@example.net>", "5y", past...)
	if err := trust.InitFolder(w.trustDir, []trust.Fingerprint{trust.Fingerprint(w.carol), trust.Fingerprint(w.octo)}); err != nil {
		t.Fatal(err)
	}
	if _, err := trust.AddKeys(w.trustDir, g.Export(w.carol, w.octo, w.alice, w.mallor)); err != nil {
		t.Fatal(err)
	}
	return w
}

// sign writes detached signatures of path by signers as path.NAME.asc;
// at, if not zero, dates them.
func (w *adminWorld) sign(t *testing.T, path string, at time.Time, signers ...string) {
	t.Helper()
	var extra []string
	if !at.IsZero() {
		extra = []string{"--faked-system-time", gpgTime(at)}
	}
	for i, s := range signers {
		sig := w.gpg.DetachSign(s, path, extra...)
		if err := os.WriteFile(fmt.Sprintf("%s.%d.asc", path, i), sig, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// recEnv is a web env with the admin options on.
type recEnv struct {
	*env
	w         *adminWorld
	recDir    string
	sessionCA ssh.Signer
}

func newAdminEnv(t *testing.T, opts ...envOption) *recEnv {
	t.Helper()
	w := newAdminWorld(t)
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	re := &recEnv{w: w, recDir: filepath.Join(t.TempDir(), "recordings"), sessionCA: signer}
	re.env = newEnv(t, func(o *Options) {
		st := o.Audit.(*store.SQLite)
		o.Admin = &AdminOptions{Admins: NewAdminSet(w.trustDir, 2, nil, nil), Store: st, RecordingsDir: re.recDir,
			SessionCA:  signer.PublicKey(),
			BreakGlass: &BreakGlassOptions{Authority: o.Issuer.(*ca.Authority), Ledger: st, PerMinute: 1000}}
		for _, f := range opts {
			f(o)
		}
	})
	return re
}

func postForm(t *testing.T, c *http.Client, u string, v url.Values) (int, string) {
	t.Helper()
	resp, err := c.PostForm(u, v)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// auditOf returns the events of type typ, newest first.
func (e *env) auditOf(t *testing.T, typ string) []audit.Event {
	t.Helper()
	evs, err := e.st.AuditEvents(context.Background(), store.AuditQuery{Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestAdminRole(t *testing.T) {
	tests := []struct {
		name   string
		login  string
		status int
		want   string
	}{
		{"ok/root-admin", "carol", 200, "threshold 2 distinct admins"},
		{"ok/other-root-admin", "octo-admin", 200, "Octo Admin (github:octo-admin/1004)"},
		{"fail/infra-team-member-with-own-uncertified-key", "alice", 403, "github:1001 holds no admitted admin key in the trust folder (team membership never makes an admin)"},
		{"fail/member-without-key", "bob", 403, "github:1002 holds no admitted admin key"},
	}
	e := newAdminEnv(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, status, home := e.signIn(t, tc.login)
			if status != 200 {
				t.Fatalf("sign-in status %d", status)
			}
			if got := strings.Contains(home, `href="/admin"`); got != (tc.status == 200) {
				t.Errorf("admin link on the home page: %v; want %v", got, tc.status == 200)
			}
			status, page := get(t, b, e.ts.URL+"/admin")
			if status != tc.status {
				t.Fatalf("GET /admin: status %d; want %d\n%s", status, tc.status, page)
			}
			contains(t, "admin page", page, tc.want)
			id := e.users[tc.login].ID
			evs := e.auditOf(t, AuditTypeAdmin)
			if len(evs) == 0 || evs[0].Actor != fmt.Sprintf("github:%d", id) || evs[0].Subject != "GET /admin" {
				t.Fatalf("newest admin audit event %+v; want one for github:%d", evs, id)
			}
			wantOutcome := audit.OutcomeOK
			if tc.status != 200 {
				wantOutcome = audit.OutcomeDenied
			}
			if evs[0].Outcome != wantOutcome || evs[0].Reason == "" {
				t.Errorf("audit outcome %q reason %q; want %q with a reason", evs[0].Outcome, evs[0].Reason, wantOutcome)
			}
		})
	}
	t.Run("fail/signed-out", func(t *testing.T) {
		c := e.browser(t)
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := c.Get(e.ts.URL + "/admin/audit")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/login?return_to=%2Fadmin%2Faudit") {
			t.Errorf("signed out: %d %q; want a redirect to sign in", resp.StatusCode, loc)
		}
	})
	t.Run("fail/root-unpinned-takes-effect-at-once", func(t *testing.T) {
		b, _, _ := e.signIn(t, "carol")
		if status, _ := get(t, b, e.ts.URL+"/admin"); status != 200 {
			t.Fatalf("carol before: %d", status)
		}
		if err := os.WriteFile(filepath.Join(e.w.trustDir, trust.RootsFile), []byte(e.w.octo+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if status, page := get(t, b, e.ts.URL+"/admin"); status != 403 {
			t.Errorf("carol after her root was removed: %d; want 403\n%s", status, page)
		}
	})
}

// issueFor signs login in and has n certificates issued, each for a new
// key; it returns the browser, its home page and the serials.
func (e *env) issueFor(t *testing.T, login string, n int) (*http.Client, string, []uint64) {
	t.Helper()
	b, _, page := e.signIn(t, login)
	var serials []uint64
	for range n {
		_, pub := newKey(t)
		status, cr, apiErr := e.requestCert(t, b, csrfOf(t, page), pub)
		if status != 200 {
			t.Fatalf("certificate for %s: %d %+v", login, status, apiErr)
		}
		serials = append(serials, cr.Serial)
	}
	return b, page, serials
}

func TestAdminRevoke(t *testing.T) {
	e := newAdminEnv(t)
	ctx := context.Background()
	aliceBrowser, aliceHome, serials := e.issueFor(t, "alice", 2)
	_, _, bobSerials := e.issueFor(t, "bob", 1)
	carol, _, home := e.signIn(t, "carol")
	csrf := csrfOf(t, home)

	revokedSerials := func() map[uint64]bool {
		revs, err := e.st.Revocations(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := map[uint64]bool{}
		for _, r := range revs {
			if r.Serial != 0 {
				m[r.Serial] = true
			}
		}
		return m
	}
	tests := []struct {
		name    string
		browser *http.Client
		path    string
		form    url.Values
		status  int
		want    string
	}{
		{"fail/no-csrf", carol, "/admin/revoke", url.Values{"serial": {fmt.Sprint(serials[0])}, "reason": {"x"}}, 403, "not sent from this site"},
		{"fail/not-admin", aliceBrowser, "/admin/revoke", url.Values{"csrf": {csrfOf(t, aliceHome)}, "serial": {fmt.Sprint(bobSerials[0])}, "reason": {"x"}}, 403, "Admins only"},
		{"fail/no-reason", carol, "/admin/revoke", url.Values{"csrf": {csrf}, "serial": {fmt.Sprint(serials[0])}}, 400, "say why"},
		{"fail/unknown-serial", carol, "/admin/revoke", url.Values{"csrf": {csrf}, "serial": {"999999"}, "reason": {"x"}}, 404, "no certificate with serial 999999"},
		{"fail/login-not-id", carol, "/admin/revoke-user", url.Values{"csrf": {csrf}, "identity": {"alice"}, "reason": {"x"}}, 400, "never a login"},
		{"ok/serial", carol, "/admin/revoke", url.Values{"csrf": {csrf}, "serial": {fmt.Sprint(bobSerials[0])}, "reason": {"key leaked"}}, 200, fmt.Sprintf("Certificate %d is revoked.", bobSerials[0])},
		{"ok/everything-of-alice", carol, "/admin/revoke-user", url.Values{"csrf": {csrf}, "identity": {"github:1001"}, "reason": {"account compromised"}}, 200, "Revoked 2 keys of github:1001 and with them all 2 certificates"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(revokedSerials())
			status, page := postForm(t, tc.browser, e.ts.URL+tc.path, tc.form)
			if status != tc.status {
				t.Fatalf("status %d; want %d\n%.3000s", status, tc.status, page)
			}
			contains(t, "answer", page, tc.want)
			if after := len(revokedSerials()); strings.HasPrefix(tc.name, "fail/") && after != before {
				t.Errorf("revoked serials went from %d to %d on a refused request", before, after)
			}
		})
	}
	got := revokedSerials()
	for _, s := range append(slices.Clone(serials), bobSerials...) {
		if !got[s] {
			t.Errorf("serial %d is not revoked in the store", s)
		}
	}
	revs, _ := e.st.Revocations(ctx)
	keys := 0
	for _, r := range revs {
		if r.Key != nil {
			keys++
			if r.Actor != "github:1003" || !strings.Contains(r.Reason, "account compromised") {
				t.Errorf("key revocation by %q for %q; want github:1003 with the reason", r.Actor, r.Reason)
			}
		}
	}
	if keys != 2 {
		t.Errorf("%d keys revoked; want alice's 2", keys)
	}
	// Alice's sessions ended with the revocation.
	_, pub := newKey(t)
	if status, _, _ := e.requestCert(t, aliceBrowser, csrfOf(t, aliceHome), pub); status != http.StatusUnauthorized {
		t.Errorf("alice's session after revoke-user: status %d; want 401", status)
	}
	// The certificates page shows the state.
	status, page := get(t, carol, e.ts.URL+"/admin/certificates?identity=1001")
	if status != 200 || strings.Count(page, ">revoked<") != 2 {
		t.Errorf("certificates of github:1001: %d, %d revoked rows; want 2\n%.3000s", status, strings.Count(page, ">revoked<"), page)
	}
}

func TestAdminAudit(t *testing.T) {
	e := newAdminEnv(t)
	alice, _, _ := e.signIn(t, "alice")
	get(t, alice, e.ts.URL+"/admin")
	carol, _, _ := e.signIn(t, "carol")
	tests := []struct {
		name    string
		browser *http.Client
		query   string
		status  int
		want    []string
		notWant []string
	}{
		{"ok/all", carol, "", 200, []string{"login", "github:1001", "policy.load"}, nil},
		{"ok/admin-denials", carol, "?type=admin&actor=github:1001", 200, []string{"denied", "holds no admitted admin key"}, []string{"policy.load"}},
		{"ok/paged", carol, "?limit=1", 200, []string{"Page 1", "Older"}, []string{"Newer"}},
		{"ok/second-page", carol, "?limit=1&page=2", 200, []string{"Page 2", "Newer", "Older"}, nil},
		{"ok/since-future", carol, "?since=2999-01-01", 200, []string{"No events match."}, nil},
		{"fail/bad-since", carol, "?since=yesterday", 400, []string{"give a date"}, nil},
		{"fail/not-admin", alice, "", 403, []string{"Admins only"}, []string{"policy.load"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, page := get(t, tc.browser, e.ts.URL+"/admin/audit"+tc.query)
			if status != tc.status {
				t.Fatalf("status %d; want %d\n%.3000s", status, tc.status, page)
			}
			for _, w := range tc.want {
				contains(t, "audit page", page, w)
			}
			for _, w := range tc.notWant {
				if strings.Contains(page, w) {
					t.Errorf("audit page contains %q", w)
				}
			}
		})
	}
}

// record writes a finished recording of a pty session of identity, whose
// output tries to write the viewer's clipboard (OSC 52).
func (re *recEnv) record(t *testing.T, identity, user string) string {
	t.Helper()
	ctx := context.Background()
	rec, err := recording.New(recording.Options{Dir: re.recDir, Index: re.st, Signer: re.sessionCA})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := rec.Start(ctx, recording.Meta{Identity: identity, User: user, Login: "root", Host: "web1", PTY: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Stdout().Write([]byte("\x1b[1mhello\x1b[0m \x1b]52;c;cm0gLXJmIH4K\x07from " + user + "\r\n$ ")); err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Close(ctx, recording.End{ExitStatus: 0}); err != nil {
		t.Fatal(err)
	}
	return sess.ID()
}

func TestRecordingsAccess(t *testing.T) {
	e := newAdminEnv(t)
	aliceRec := e.record(t, "github:1001", "alice")
	bobRec := e.record(t, "github:1002", "bob")
	// A recording whose display name claims to be alice's identity is not
	// hers.
	fake := e.record(t, "github:1006", "github:1001")
	browsers := map[string]*http.Client{}
	for _, login := range []string{"alice", "bob", "carol"} {
		browsers[login], _, _ = e.signIn(t, login)
	}
	tests := []struct {
		name, login, path string
		status            int
		want, notWant     []string
	}{
		{"ok/own-list", "alice", "/recordings", 200, []string{aliceRec}, []string{bobRec, fake}},
		{"ok/own-recording", "alice", "/recordings/" + aliceRec, 200, []string{"hello from alice", "intact: ", "signed by the session CA"}, []string{"\x1b", "]52;", "cm0gLXJmIH4K"}},
		{"ok/own-cast", "alice", "/recordings/" + aliceRec + "/cast", 200, []string{`"version":2`, "cm0gLXJmIH4K"}, nil},
		{"ok/other-list", "bob", "/recordings", 200, []string{bobRec}, []string{aliceRec}},
		{"fail/other-recording", "bob", "/recordings/" + aliceRec, 403, []string{"only admins see those"}, []string{"hello from alice"}},
		{"fail/other-cast", "bob", "/recordings/" + aliceRec + "/cast", 403, nil, []string{"cm0gLXJmIH4K"}},
		{"fail/everyone-not-admin", "bob", "/recordings?all=1", 403, []string{"Only admins"}, []string{aliceRec}},
		{"fail/unknown", "alice", "/recordings/nosuchrecording", 404, nil, nil},
		{"ok/admin-all", "carol", "/recordings?all=1", 200, []string{aliceRec, bobRec, fake}, nil},
		{"ok/admin-by-user", "carol", "/recordings?user=github:1002", 200, []string{bobRec}, []string{aliceRec}},
		{"ok/admin-recording", "carol", "/recordings/" + aliceRec, 200, []string{"hello from alice", "intact: "}, nil},
		{"ok/admin-cast", "carol", "/recordings/" + bobRec + "/cast", 200, []string{`"version":2`}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, page := get(t, browsers[tc.login], e.ts.URL+tc.path)
			if status != tc.status {
				t.Fatalf("status %d; want %d\n%.3000s", status, tc.status, page)
			}
			for _, w := range tc.want {
				contains(t, "page", page, w)
			}
			for _, w := range tc.notWant {
				if strings.Contains(page, w) {
					t.Errorf("page contains %q:\n%.3000s", w, page)
				}
			}
		})
	}
	t.Run("fail/tampered-shown", func(t *testing.T) {
		row, err := e.st.Recording(context.Background(), bobRec)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(e.recDir, filepath.FromSlash(row.Path))
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, bytes.Replace(data, []byte("hello"), []byte("HELLO"), 1), 0o600); err != nil {
			t.Fatal(err)
		}
		status, page := get(t, browsers["bob"], e.ts.URL+"/recordings/"+bobRec)
		if status != 200 {
			t.Fatalf("status %d", status)
		}
		contains(t, "page", page, "NOT INTACT")
	})
	t.Run("fail/index-disagrees-shown", func(t *testing.T) {
		// The index row says db1 while the recording (intact in itself)
		// says web1: the index was altered, or the file is another's.
		ctx := context.Background()
		rec, err := recording.New(recording.Options{Dir: e.recDir, Index: hostLyingIndex{e.st}, Signer: e.sessionCA})
		if err != nil {
			t.Fatal(err)
		}
		sess, err := rec.Start(ctx, recording.Meta{Identity: "github:1002", User: "bob", Login: "root", Host: "web1", PTY: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sess.Close(ctx, recording.End{ExitStatus: 0}); err != nil {
			t.Fatal(err)
		}
		status, page := get(t, browsers["bob"], e.ts.URL+"/recordings/"+sess.ID())
		if status != 200 {
			t.Fatalf("status %d", status)
		}
		contains(t, "page", page, "NOT INTACT: the index and the recording disagree")
		contains(t, "page", page, "index says host db1, recording says web1")
	})
}

// hostLyingIndex is an index whose rows name host db1 whatever the
// recording says.
type hostLyingIndex struct{ *store.SQLite }

func (i hostLyingIndex) AddRecording(ctx context.Context, r store.Recording) error {
	r.Host = "db1"
	return i.SQLite.AddRecording(ctx, r)
}

func TestPlainText(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"ok/plain", "a\tb\n", "a\tb\n"},
		{"ok/crlf", "a\r\nb\rc", "a\nb\nc"},
		{"ok/csi", "\x1b[1;31mred\x1b[0m", "red"},
		{"ok/backspace", "ab\bc", "ac"},
		{"ok/controls", "a\x00\x07\x7fb", "ab"},
		{"ok/utf8", "grüße", "grüße"},
		{"ok/c1", "a\u009bb", "a\ufffdb"},
		{"ok/truncated-csi", "a\x1b[12", "a"},
		{"ok/charset", "a\x1b(Bb\x1b)0c", "abc"},
		{"ok/two-byte", "a\x1b7b\x1b8c", "abc"},
		{"ok/osc-bel", "a\x1b]0;title\x07b", "ab"},
		{"ok/osc-st", "a\x1b]0;title\x1b\\b", "ab"},
		{"ok/truncated-osc", "a\x1b]0;tit", "a"},
		{"ok/trailing-esc", "a\x1b", "a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := plainText([]byte(tc.in)); got != tc.want {
				t.Errorf("plainText(%q) = %q; want %q", tc.in, got, tc.want)
			}
		})
	}
}

// policyVariant is the test policy with a comment added: another
// document that checks the same.
func policyVariant(t *testing.T, n int) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return append(data, fmt.Sprintf("# revision %d\n", n)...)
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// removeSignatures deletes the signature files of path.
func removeSignatures(t *testing.T, path string) {
	t.Helper()
	files, _ := filepath.Glob(path + "*.asc")
	for _, f := range files {
		os.Remove(f)
	}
}

func TestSignedPolicy(t *testing.T) {
	w := newAdminWorld(t)
	ctx := context.Background()
	yesterday := time.Now().Add(-24 * time.Hour)

	// start returns a policy file in force with revision 1 signed by both
	// admins yesterday.
	start := func(t *testing.T) (*PolicyFile, *store.SQLite, string) {
		t.Helper()
		dir := t.TempDir()
		st, err := store.Open(ctx, filepath.Join(dir, "db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		path := filepath.Join(dir, "policy.yaml")
		writeFile(t, path, policyVariant(t, 1))
		w.sign(t, path, yesterday, w.carol, w.octo)
		pf, err := LoadPolicyFile(ctx, path, st, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := pf.RequireSignatures(ctx, PolicySignatures{Required: 2, Admins: NewAdminSet(w.trustDir, 2, nil, nil)}); err != nil {
			t.Fatalf("revision 1 signed by both admins: %v", err)
		}
		if got := len(pf.Signatures().Signers()); got != 2 {
			t.Fatalf("%d signers; want 2", got)
		}
		return pf, st, path
	}

	tests := []struct {
		name   string
		change func(t *testing.T, path string)
		reason string // of the refusal
	}{
		{"ok/two-admins", func(t *testing.T, path string) {
			writeFile(t, path, policyVariant(t, 2))
			removeSignatures(t, path)
			w.sign(t, path, time.Time{}, w.carol, w.octo)
		}, ""},
		{"ok/three-signatures-one-not-admin", func(t *testing.T, path string) {
			writeFile(t, path, policyVariant(t, 2))
			removeSignatures(t, path)
			w.sign(t, path, time.Time{}, w.carol, w.alice, w.octo)
		}, ""},
		{"fail/tampered-after-signing", func(t *testing.T, path string) {
			writeFile(t, path, policyVariant(t, 2))
			removeSignatures(t, path)
			w.sign(t, path, time.Time{}, w.carol, w.octo)
			writeFile(t, path, append(policyVariant(t, 2), "# sneaky\n"...))
		}, "signed by 0 distinct admins, 2 required"},
		{"fail/too-few", func(t *testing.T, path string) {
			writeFile(t, path, policyVariant(t, 2))
			removeSignatures(t, path)
			w.sign(t, path, time.Time{}, w.carol)
		}, "signed by 1 distinct admins, 2 required"},
		{"fail/same-admin-twice", func(t *testing.T, path string) {
			writeFile(t, path, policyVariant(t, 2))
			removeSignatures(t, path)
			w.sign(t, path, time.Time{}, w.carol, w.carol)
		}, "signed by 1 distinct admins, 2 required"},
		{"fail/non-admin-keys", func(t *testing.T, path string) {
			writeFile(t, path, policyVariant(t, 2))
			removeSignatures(t, path)
			w.sign(t, path, time.Time{}, w.carol, w.alice, w.mallor)
		}, "signed by 1 distinct admins, 2 required"},
		{"fail/unsigned", func(t *testing.T, path string) {
			writeFile(t, path, policyVariant(t, 2))
			removeSignatures(t, path)
		}, "admin signatures required"},
		{"fail/rollback-to-older-signed", func(t *testing.T, path string) {
			writeFile(t, path, policyVariant(t, 0))
			removeSignatures(t, path)
			w.sign(t, path, yesterday.Add(-time.Hour), w.carol, w.octo)
		}, "before the policy in force was signed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pf, st, path := start(t)
			before := pf.cur.Load()
			tc.change(t, path)
			loaded, err := pf.Reload(ctx, "test")
			evs, aerr := st.AuditEvents(ctx, store.AuditQuery{Type: audit.TypePolicyLoad, Limit: 1})
			if aerr != nil || len(evs) != 1 {
				t.Fatalf("audit: %v %v", evs, aerr)
			}
			if tc.reason == "" {
				if err != nil || !loaded {
					t.Fatalf("Reload = %v, %v; want loaded", loaded, err)
				}
				if evs[0].Outcome != audit.OutcomeOK || evs[0].Fields[fieldSignedBy] != "github:carol/1003,github:octo-admin/1004" {
					t.Errorf("audit event %+v; want ok signed by both", evs[0])
				}
				return
			}
			if loaded || !errors.Is(err, ErrPolicyRefused) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("Reload = %v, %v; want refused with %q", loaded, err, tc.reason)
			}
			if pf.cur.Load() != before {
				t.Error("the policy in force changed")
			}
			if evs[0].Outcome != audit.OutcomeDenied || !strings.Contains(evs[0].Reason, tc.reason) {
				t.Errorf("audit event %+v; want denied with %q", evs[0], tc.reason)
			}
			if r := pf.Refusal(); r == nil || !strings.Contains(r.Reason, tc.reason) {
				t.Errorf("Refusal() = %+v", r)
			}
		})
	}

	t.Run("fail/rollback-after-reload", func(t *testing.T) {
		pf, _, path := start(t)
		rev1, sigs1 := readWithSignatures(t, path)
		writeFile(t, path, policyVariant(t, 2))
		removeSignatures(t, path)
		w.sign(t, path, time.Time{}, w.carol, w.octo)
		if loaded, err := pf.Reload(ctx, "test"); !loaded || err != nil {
			t.Fatalf("revision 2: %v %v", loaded, err)
		}
		removeSignatures(t, path)
		writeFile(t, path, rev1)
		for name, data := range sigs1 {
			writeFile(t, name, data)
		}
		if _, err := pf.Reload(ctx, "test"); !errors.Is(err, ErrPolicyRefused) || !strings.Contains(err.Error(), "before the policy in force was signed") {
			t.Errorf("putting back revision 1: %v; want refused as a rollback", err)
		}
		if got := pf.cur.Load().hash; got != sha256.Sum256(policyVariant(t, 2)) {
			t.Error("revision 2 is not in force")
		}
	})

	t.Run("start", func(t *testing.T) {
		tests := []struct {
			name     string
			rev      int
			signers  []string
			at       time.Time
			previous func(path string) SignedPolicy
			want     string
		}{
			{name: "ok/signed", rev: 1, signers: []string{w.carol, w.octo}},
			{name: "ok/same-as-before-restart", rev: 1, signers: []string{w.carol, w.octo}, at: yesterday,
				previous: func(string) SignedPolicy {
					h := sha256.Sum256(policyVariant(t, 1))
					return SignedPolicy{SHA256: fmt.Sprintf("%x", h), Newest: yesterday.Add(time.Minute)}
				}},
			{name: "fail/unsigned", rev: 1, want: "no signature"},
			{name: "fail/too-few", rev: 1, signers: []string{w.carol}, want: "signed by 1 distinct admins, 2 required"},
			{name: "fail/non-admin", rev: 1, signers: []string{w.alice, w.octo}, want: "signed by 1 distinct admins, 2 required"},
			{name: "fail/rollback-across-restart", rev: 1, signers: []string{w.carol, w.octo}, at: yesterday,
				previous: func(string) SignedPolicy {
					h := sha256.Sum256(policyVariant(t, 2))
					return SignedPolicy{SHA256: fmt.Sprintf("%x", h), Newest: yesterday.Add(time.Hour)}
				}, want: "before the policy in force was signed"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, "policy.yaml")
				writeFile(t, path, policyVariant(t, tc.rev))
				w.sign(t, path, tc.at, tc.signers...)
				pf, err := LoadPolicyFile(ctx, path, nil, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				ps := PolicySignatures{Required: 2, Admins: NewAdminSet(w.trustDir, 2, nil, nil)}
				if tc.previous != nil {
					ps.Previous = tc.previous(path)
				}
				err = pf.RequireSignatures(ctx, ps)
				if tc.want == "" {
					if err != nil {
						t.Fatalf("RequireSignatures: %v", err)
					}
					return
				}
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("RequireSignatures: %v; want an error with %q", err, tc.want)
				}
			})
		}
	})

	t.Run("ok/last-signed-from-audit", func(t *testing.T) {
		pf, st, _ := start(t)
		got, err := LastSignedPolicy(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		h := pf.cur.Load().hash
		if got.SHA256 != fmt.Sprintf("%x", h) || !got.Newest.Equal(pf.Signatures().Newest()) {
			t.Errorf("LastSignedPolicy = %+v; want the policy in force", got)
		}
	})
}

func readWithSignatures(t *testing.T, path string) ([]byte, map[string][]byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sigs := map[string][]byte{}
	files, _ := filepath.Glob(path + ".*.asc")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sigs[f] = b
	}
	return data, sigs
}

func TestSignedPolicyRefusalOnAdminPage(t *testing.T) {
	e := newAdminEnv(t)
	ctx := context.Background()
	e.w.sign(t, e.policyPath, time.Time{}, e.w.carol, e.w.octo)
	if err := e.pf.RequireSignatures(ctx, PolicySignatures{Required: 2, Admins: NewAdminSet(e.w.trustDir, 2, nil, nil)}); err != nil {
		t.Fatal(err)
	}
	carol, _, _ := e.signIn(t, "carol")
	_, page := get(t, carol, e.ts.URL+"/admin")
	contains(t, "admin page", page, "Admin signatures required: <strong>2</strong>")
	contains(t, "admin page", page, "carol/1003")
	writeFile(t, e.policyPath, policyVariant(t, 9))
	if _, err := e.pf.Reload(ctx, "file changed"); err == nil {
		t.Fatal("an unsigned change was loaded")
	}
	_, page = get(t, carol, e.ts.URL+"/admin")
	contains(t, "admin page", page, "A newer policy file was refused")
	contains(t, "admin page", page, "signed by 0 distinct admins, 2 required")
}

func TestBreakGlassEndpoint(t *testing.T) {
	e := newAdminEnv(t)
	ctx := context.Background()
	_, pub := newKey(t)
	dir := t.TempDir()
	// request writes a break-glass request created at created, signed by
	// signers, and returns the signed text.
	request := func(t *testing.T, created time.Time, signer string) []byte {
		t.Helper()
		req, err := trust.NewRequest("root", "web1", "GitHub is down, web1 is on fire", 30*time.Minute, pub, created)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, req.ID)
		writeFile(t, p, req.Marshal())
		return e.w.gpg.ClearSign(signer, p)
	}
	post := func(t *testing.T, body []byte, query string) (int, []byte) {
		t.Helper()
		resp, err := http.Post(e.ts.URL+BreakGlassPath+query, "text/plain", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	// Break-glass is for when GitHub is down.
	e.gh.Close()

	good := request(t, time.Now(), e.w.carol)
	tampered := bytes.Replace(request(t, time.Now(), e.w.octo), []byte("principal: root"), []byte("principal: deploy"), 1)
	tests := []struct {
		name   string
		body   []byte
		query  string
		status int
		want   string
	}{
		{"ok/admin-signed", good, "", 200, `"principal":"root"`},
		{"fail/replayed", good, "", 409, "used before"},
		{"fail/non-admin-signature", request(t, time.Now(), e.w.alice), "", 403, "which is not an admin"},
		{"fail/key-naming-an-admin-account-not-admitted", request(t, time.Now(), e.w.mallor), "", 403, "which is not an admin"},
		{"fail/tampered", tampered, "", 403, "bad signature by github:octo-admin/1004"},
		{"fail/stale", request(t, time.Now().Add(-20*time.Minute), e.w.octo), "", 403, "at most 15m0s is accepted"},
		{"fail/not-signed", []byte("purpose: sallyport-breakglass-v1\n"), "", 403, "signed request refused"},
		{"fail/too-large", bytes.Repeat([]byte("a"), 65<<10), "", 413, "at most"},
		{"ok/plain-certificate", request(t, time.Now(), e.w.octo), "?format=cert", 200, "ssh-ed25519-cert-v01@openssh.com "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(t, tc.body, tc.query)
			if status != tc.status {
				t.Fatalf("status %d; want %d\n%s", status, tc.status, body)
			}
			contains(t, "answer", string(body), tc.want)
			if tc.name != "ok/admin-signed" {
				return
			}
			var br BreakGlassResponse
			if err := json.Unmarshal(body, &br); err != nil {
				t.Fatal(err)
			}
			cert := e.checkCert(t, br.Certificate, pub, "root")
			if !strings.HasPrefix(cert.KeyId, "breakglass:") || !strings.Contains(cert.KeyId, "host=web1 by=github:1003") {
				t.Errorf("key ID %q", cert.KeyId)
			}
			if d := time.Until(time.Unix(int64(cert.ValidBefore), 0)); d > 31*time.Minute {
				t.Errorf("valid for %v; want at most the 30m asked", d)
			}
			if !slices.Equal(br.SignedBy, []string{"github:carol/1003"}) {
				t.Errorf("signed by %v", br.SignedBy)
			}
		})
	}
	evs := e.auditOf(t, trust.AuditTypeBreakGlass)
	var ok, denied int
	for _, ev := range evs {
		switch ev.Outcome {
		case audit.OutcomeOK:
			ok++
		case audit.OutcomeDenied:
			denied++
			if ev.Reason == "" || !strings.HasPrefix(ev.Actor, "web:127.0.0.1") {
				t.Errorf("denied break-glass event without reason or actor: %+v", ev)
			}
		}
	}
	if ok != 2 || denied != 6 {
		t.Errorf("break-glass audit: %d ok, %d denied; want 2 and 6 (the oversized body is refused before)", ok, denied)
	}
	certs, err := e.st.Certificates(ctx, store.CertificateFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 || !strings.HasPrefix(certs[0].Identity, "breakglass:") {
		t.Errorf("recorded certificates %+v; want the two break-glass ones", certs)
	}
}

// FuzzPlainText feeds recorded terminal output to the transcript filter:
// what comes out is valid UTF-8 without a control character but newline
// and tab.
func FuzzPlainText(f *testing.F) {
	for _, s := range []string{"a\r\nb", "\x1b[1;31mred\x1b[0m", "\x1b]52;c;eA==\x07", "ab\bc", "\xff\xfe", "\u009b31m"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out := plainText(b)
		if !utf8.ValidString(out) {
			t.Fatalf("plainText(%q) = %q: not UTF-8", b, out)
		}
		for _, r := range out {
			if (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				t.Fatalf("plainText(%q) = %q: control character %U", b, out, r)
			}
		}
	})
}

func TestAdminDecision(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		provider string
		id       int64
		reason   string
	}{
		{"fail/oidc-sign-in", nil, "oidc:keycloak", 1003, "this sign-in is not a GitHub one"},
		{"fail/no-github-id", nil, "github", 0, "not a GitHub one"},
		{"fail/no-trust-folder", ErrNoAdmins, "github", 1003, "nobody is an admin"},
		{"fail/no-admin-set", nil, "github", 1003, "no admin set"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, reason := adminDecision(nil, tc.err, tc.provider, tc.id)
			if ok || !strings.Contains(reason, tc.reason) {
				t.Errorf("adminDecision = %v, %q; want false with %q", ok, reason, tc.reason)
			}
		})
	}
}
