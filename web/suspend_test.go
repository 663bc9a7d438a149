package web

import (
	"context"
	"crypto/rand"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/oauth2"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/store"
)

// TestAdminRevokeUserSuspends: "revoke everything of a user" on the admin
// page also suspends the person, so that signing in again with a new key
// gets them nothing until an admin lifts the suspension.
func TestAdminRevokeUserSuspends(t *testing.T) {
	e := newAdminEnv(t)
	ctx := context.Background()
	_, _, serials := e.issueFor(t, "alice", 1)
	carol, _, home := e.signIn(t, "carol")
	csrf := csrfOf(t, home)
	status, page := postForm(t, carol, e.ts.URL+"/admin/revoke-user", url.Values{"csrf": {csrf}, "identity": {"github:1001"}, "reason": {"account compromised"}})
	if status != 200 {
		t.Fatalf("revoke-user: %d\n%.3000s", status, page)
	}
	contains(t, "answer", page, "Suspended github:1001")

	// alice, or whoever holds her GitHub account, signs in again.
	b, status, page := e.signIn(t, "alice")
	if status != http.StatusForbidden {
		_, pub := newKey(t)
		code, cr, _ := e.requestCert(t, b, csrfOf(t, page), pub)
		t.Fatalf("sign-in of a suspended user: %d (then a certificate: %d %+v); want 403", status, code, cr)
	}
	page = html.UnescapeString(page)
	contains(t, "refusal", page, "github:1001 is suspended since")
	contains(t, "refusal", page, `by github:1003 ("account compromised")`)
	certs, err := e.st.Certificates(ctx, store.CertificateFilter{Identity: "github:1001"})
	if err != nil || len(certs) != 1 || certs[0].Serial != serials[0] {
		t.Errorf("certificates of github:1001: %+v %v; want only the first", certs, err)
	}
	if evs := e.auditOf(t, store.AuditTypeSuspend); len(evs) != 1 || evs[0].Actor != "github:1003" || evs[0].Subject != "github:1001" || evs[0].Reason != "account compromised" {
		t.Errorf("suspension audited as %+v", evs)
	}
	if evs := e.auditOf(t, audit.TypeLogin); len(evs) == 0 || evs[0].Outcome != audit.OutcomeDenied || evs[0].Actor != "github:1001" {
		t.Errorf("newest sign-in event %+v; want alice's refusal", evs)
	}

	// The admin page lists it, with a way to lift it.
	status, page = get(t, carol, e.ts.URL+"/admin/identities")
	if status != 200 {
		t.Fatalf("identities page: %d", status)
	}
	contains(t, "identities page", page, "github:1001")
	contains(t, "identities page", page, "account compromised")
	contains(t, "identities page", page, `action="/admin/lift"`)

	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		want   string
	}{
		{"fail/no-reason", url.Values{"csrf": {csrf}, "identity": {"github:1001"}}, 400, "say why"},
		{"fail/login", url.Values{"csrf": {csrf}, "identity": {"alice"}, "reason": {"x"}}, 400, "never a login"},
		{"ok/lift", url.Values{"csrf": {csrf}, "identity": {"github:1001"}, "reason": {"account secured again"}}, 200, "Lifted the suspension of github:1001"},
		{"fail/not-suspended", url.Values{"csrf": {csrf}, "identity": {"github:1001"}, "reason": {"again"}}, 404, "github:1001 is not suspended"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, page := postForm(t, carol, e.ts.URL+"/admin/lift", tc.form)
			if status != tc.status {
				t.Fatalf("status %d; want %d\n%.3000s", status, tc.status, page)
			}
			contains(t, "answer", page, tc.want)
		})
	}
	if evs := e.auditOf(t, store.AuditTypeLift); len(evs) != 1 || evs[0].Actor != "github:1003" || evs[0].Reason != "account secured again" {
		t.Errorf("lift audited as %+v", evs)
	}
	// Lifted: a new key gets a certificate; the revoked ones stay revoked.
	b, status, page = e.signIn(t, "alice")
	if status != 200 {
		t.Fatalf("sign-in after the lift: %d", status)
	}
	_, pub := newKey(t)
	if code, _, apiErr := e.requestCert(t, b, csrfOf(t, page), pub); code != 200 {
		t.Errorf("certificate after the lift: %d %+v", code, apiErr)
	}
}

// TestSuspendedWhileSignedIn: a suspension recorded elsewhere (`sallyport
// ca revoke --identity` on the CA's machine) refuses issuance to browser
// sessions and CLI tokens handed out before it.
func TestSuspendedWhileSignedIn(t *testing.T) {
	e := newEnv(t)
	b, _, page := e.signIn(t, "alice")
	verifier := oauth2.GenerateVerifier()
	st, out := e.postJSON(t, "/api/v1/cli/token", "", map[string]string{"code": e.cliCode(t, "alice", verifier), "code_verifier": verifier})
	if st != 200 {
		t.Fatalf("CLI token: %d %v", st, out)
	}
	token := out["token"].(string)
	if _, _, err := e.st.Suspend(context.Background(), store.Suspension{Subject: "github:1001", Reason: "laptop stolen", Actor: "offline:root"}); err != nil {
		t.Fatal(err)
	}
	_, pub := newKey(t)
	code, _, apiErr := e.requestCert(t, b, csrfOf(t, page), pub)
	if code != http.StatusForbidden || apiErr.Error != "suspended" || !strings.Contains(apiErr.Message, `github:1001 is suspended since`) ||
		!strings.Contains(apiErr.Message, `by offline:root ("laptop stolen")`) {
		t.Errorf("browser session: %d %+v; want 403 suspended with who and why", code, apiErr)
	}
	st, out = e.postJSON(t, "/api/v1/certificate", token, CertificateRequest{PublicKey: string(ssh.MarshalAuthorizedKey(pub))})
	if st != http.StatusForbidden || out["error"] != "suspended" {
		t.Errorf("CLI token: %d %v; want 403 suspended", st, out)
	}
	// A new `sallyport login` is refused at the sign-in.
	l := newCLIListener(t)
	q := url.Values{"port": {strconv.Itoa(l.port)}, "state": {"cli-state-abcdefgh-" + strconv.Itoa(l.port)},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}, "login_hint": {"alice"}}
	if st, body := get(t, e.browser(t), e.ts.URL+"/cli/login?"+q.Encode()); st != http.StatusForbidden || !strings.Contains(html.UnescapeString(body), "laptop stolen") {
		t.Errorf("CLI sign-in: %d; want 403 naming the suspension\n%.2000s", st, body)
	}
	// The home page says so instead of listing access.
	_, home := get(t, b, e.ts.URL+"/")
	contains(t, "home page", html.UnescapeString(home), "Your access is suspended: github:1001 is suspended since")
	refusals := e.auditOf(t, audit.TypeRefuse)
	if len(refusals) < 2 || refusals[0].Actor != "github:1001" || !strings.Contains(refusals[0].Reason, "laptop stolen") {
		t.Errorf("refusals %+v; want alice's, with the suspension", refusals)
	}
	certs, _ := e.st.Certificates(context.Background(), store.CertificateFilter{Identity: "github:1001"})
	if len(certs) != 0 {
		t.Errorf("%d certificates issued to suspended alice", len(certs))
	}
	// Someone else is not affected.
	bb, _, bpage := e.signIn(t, "bob")
	if code, _, apiErr := e.requestCert(t, bb, csrfOf(t, bpage), pub); code != 200 {
		t.Errorf("bob: %d %+v", code, apiErr)
	}
}

// TestSuspendedCIRepository: suspending a repository refuses every token
// exchange of its workflows, whatever ref, environment or workflow name.
func TestSuspendedCIRepository(t *testing.T) {
	iss, actions := newActions(t)
	e := newEnv(t, func(o *Options) { o.CI = actions })
	exchange := func() (int, map[string]any) {
		_, pub := newKey(t)
		return e.postJSON(t, "/api/v1/ci/certificate", iss.Sign(iss.ActionsClaims(ciAudience)), CertificateRequest{PublicKey: string(ssh.MarshalAuthorizedKey(pub))})
	}
	if st, out := exchange(); st != 200 {
		t.Fatalf("before: %d %v", st, out)
	}
	sub, err := store.ParseSuspensionSubject("ci:Example-OSS/website")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.st.Suspend(context.Background(), store.Suspension{Subject: sub, Reason: "workflow hijacked", Actor: "github:1003"}); err != nil {
		t.Fatal(err)
	}
	st, out := exchange()
	if st != http.StatusForbidden || out["error"] != "suspended" || !strings.Contains(out["message"].(string), "every GitHub Actions workload of example-oss/website") {
		t.Errorf("suspended repository: %d %v; want 403 suspended", st, out)
	}
	if _, err := e.st.Lift(context.Background(), sub, "github:1003", "workflow fixed"); err != nil {
		t.Fatal(err)
	}
	if st, out := exchange(); st != 200 {
		t.Errorf("after the lift: %d %v", st, out)
	}
}

// TestAdminLoginPins: an admin sees which account a login is pinned to,
// re-pins it to the login's new rightful holder, or releases it.
func TestAdminLoginPins(t *testing.T) {
	e := newAdminEnv(t)
	e.takeOverOctoAdmin(t)
	alice, _, aliceHome := e.signIn(t, "alice")
	carol, _, home := e.signIn(t, "carol")
	csrf := csrfOf(t, home)

	status, page := get(t, carol, e.ts.URL+"/admin/identities?login=Octo-Admin")
	if status != 200 {
		t.Fatalf("identities page: %d", status)
	}
	contains(t, "identities page", page, "<td>octo-admin</td><td>1004</td>")
	// mallory, now octo-admin, is refused octo-admin's role.
	mb, _, mpage := e.signIn(t, "octo-admin")
	_, pub := newKey(t)
	if code, _, _ := e.requestCert(t, mb, csrfOf(t, mpage), pub); code != http.StatusForbidden {
		t.Fatalf("mallory before the re-pin: %d; want 403", code)
	}
	for _, tc := range []struct {
		name    string
		browser *http.Client
		path    string
		form    url.Values
		status  int
		want    string
	}{
		{"fail/not-admin", alice, "/admin/repin", url.Values{"csrf": {csrfOf(t, aliceHome)}, "login": {"octo-admin"}, "github_id": {"2001"}, "reason": {"x"}}, 403, "Admins only"},
		{"fail/no-csrf", carol, "/admin/repin", url.Values{"login": {"octo-admin"}, "github_id": {"2001"}, "reason": {"x"}}, 403, "not sent from this site"},
		{"fail/no-reason", carol, "/admin/repin", url.Values{"csrf": {csrf}, "login": {"octo-admin"}, "github_id": {"2001"}}, 400, "say why"},
		{"fail/bad-id", carol, "/admin/repin", url.Values{"csrf": {csrf}, "login": {"octo-admin"}, "github_id": {"octo"}, "reason": {"x"}}, 400, "numeric GitHub user ID"},
		{"fail/bad-login", carol, "/admin/repin", url.Values{"csrf": {csrf}, "login": {"octo admin"}, "github_id": {"2001"}, "reason": {"x"}}, 400, "is not a GitHub login"},
		{"fail/release-not-admin", alice, "/admin/release", url.Values{"csrf": {csrfOf(t, aliceHome)}, "login": {"octo-admin"}, "reason": {"x"}}, 403, "Admins only"},
		{"fail/release-no-reason", carol, "/admin/release", url.Values{"csrf": {csrf}, "login": {"octo-admin"}}, 400, "Not released: "},
		{"fail/release-bad-login", carol, "/admin/release", url.Values{"csrf": {csrf}, "login": {"octo admin"}, "reason": {"x"}}, 400, "is not a GitHub login"},
		{"ok/repin", carol, "/admin/repin", url.Values{"csrf": {csrf}, "login": {"octo-admin"}, "github_id": {"2001"}, "reason": {"the old account was deleted"}}, 200, "Login octo-admin is now pinned to GitHub user 2001 (was 1004)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, page := postForm(t, tc.browser, e.ts.URL+tc.path, tc.form)
			if status != tc.status {
				t.Fatalf("status %d; want %d\n%.3000s", status, tc.status, page)
			}
			contains(t, "answer", page, tc.want)
		})
	}
	if code, cr, apiErr := e.requestCert(t, mb, csrfOf(t, mpage), pub); code != 200 || cr.Principals[len(cr.Principals)-1] != "root" {
		t.Errorf("octo-admin (2001) after the re-pin: %d %+v %+v; want root", code, cr, apiErr)
	}
	pins, err := e.st.LoginPins(context.Background(), store.LoginPinFilter{Login: "octo-admin"})
	if err != nil || len(pins) != 1 || pins[0].GitHubID != 2001 || pins[0].Actor != "github:1003" {
		t.Errorf("pin %+v %v", pins, err)
	}

	status, page = postForm(t, carol, e.ts.URL+"/admin/release", url.Values{"csrf": {csrf}, "login": {"octo-admin"}, "reason": {"octo-admin leaves"}})
	if status != 200 {
		t.Fatalf("release: %d\n%.3000s", status, page)
	}
	contains(t, "answer", page, "Login octo-admin is released")
	if status, page = postForm(t, carol, e.ts.URL+"/admin/release", url.Values{"csrf": {csrf}, "login": {"octo-admin"}, "reason": {"again"}}); status != 404 {
		t.Errorf("second release: %d; want 404\n%.2000s", status, page)
	}
	var got []string
	for _, ev := range e.auditOf(t, store.AuditTypeLoginPin) {
		if ev.Actor == "github:1003" && ev.Subject == "octo-admin" {
			got = append(got, ev.Reason)
		}
	}
	if len(got) != 2 || got[0] != "octo-admin leaves" || got[1] != "the old account was deleted" {
		t.Errorf("admin pin events %q", got)
	}
	var admin []string
	for _, ev := range e.auditOf(t, AuditTypeAdmin) {
		if ev.Actor == "github:1003" && ev.Outcome == audit.OutcomeOK && ev.Subject != "GET /admin/identities" {
			admin = append(admin, ev.Subject)
		}
	}
	if len(admin) < 3 {
		t.Errorf("admin decisions %q; want each action audited", admin)
	}
}

// TestSuspendedAdminSession: an admin suspended while signed in (from
// another server or the CA's machine) can use no admin page.
func TestSuspendedAdminSession(t *testing.T) {
	e := newAdminEnv(t)
	carol, _, _ := e.signIn(t, "carol")
	if status, _ := get(t, carol, e.ts.URL+"/admin"); status != 200 {
		t.Fatalf("before: %d", status)
	}
	if _, _, err := e.st.Suspend(context.Background(), store.Suspension{Subject: "github:1003", Reason: "GitHub account taken over", Actor: "offline:root"}); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/admin", "/admin/identities", "/recordings"} {
		status, page := get(t, carol, e.ts.URL+path)
		if status != http.StatusForbidden || !strings.Contains(html.UnescapeString(page), "GitHub account taken over") {
			t.Errorf("GET %s while suspended: %d; want 403 naming the suspension", path, status)
		}
	}
}

// TestAdminCannotSuspendSelf: an admin who suspended themselves would be
// refused at their next page and could not lift it; they are told who can.
func TestAdminCannotSuspendSelf(t *testing.T) {
	e := newAdminEnv(t)
	_, _, serials := e.issueFor(t, "carol", 1)
	carol, _, home := e.signIn(t, "carol")
	csrf := csrfOf(t, home)
	for _, id := range []string{"github:1003", "1003"} {
		status, page := postForm(t, carol, e.ts.URL+"/admin/revoke-user", url.Values{"csrf": {csrf}, "identity": {id}, "reason": {"testing"}})
		if status != http.StatusForbidden {
			t.Fatalf("carol suspending %s (herself): %d; want 403\n%.3000s", id, status, page)
		}
		contains(t, "answer", html.UnescapeString(page), "you cannot suspend yourself; another admin can, or use `sallyport ca revoke --identity` on the server")
	}
	if sps, err := e.st.Suspensions(context.Background()); err != nil || len(sps) != 0 {
		t.Errorf("suspensions %+v %v; want none", sps, err)
	}
	if revs, err := e.st.Revocations(context.Background()); err != nil || len(revs) != 0 {
		t.Errorf("revocations %+v %v; want none (serial %d stays valid)", revs, err, serials[0])
	}
	if status, _ := get(t, carol, e.ts.URL+"/admin"); status != 200 {
		t.Errorf("carol's admin page afterwards: %d; want 200", status)
	}
	// Another admin can.
	octo, _, octoHome := e.signIn(t, "octo-admin")
	status, page := postForm(t, octo, e.ts.URL+"/admin/revoke-user", url.Values{"csrf": {csrfOf(t, octoHome)}, "identity": {"github:1003"}, "reason": {"carol's laptop stolen"}})
	if status != 200 {
		t.Fatalf("octo-admin suspending carol: %d\n%.3000s", status, page)
	}
	contains(t, "answer", page, "Suspended github:1003")
}

// sessionCertFor records a certificate as the bastion does for a
// connection of identity to a target: a one-minute certificate of a key
// of its own, signed by the session CA.
func (re *recEnv) sessionCertFor(t *testing.T, identity string) {
	t.Helper()
	ctx := context.Background()
	serial, err := re.st.NextSerial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, pub := newKey(t)
	now := time.Now()
	cert := &ssh.Certificate{Key: pub, Serial: serial, CertType: ssh.UserCert, KeyId: "session " + identity,
		ValidPrincipals: []string{"root"}, ValidAfter: uint64(now.Add(-time.Minute).Unix()), ValidBefore: uint64(now.Add(time.Minute).Unix())}
	if err := cert.SignCert(rand.Reader, re.sessionCA); err != nil {
		t.Fatal(err)
	}
	if err := re.st.RecordIssued(ctx, cert, identity); err != nil {
		t.Fatal(err)
	}
}

// TestAdminRevokeUserLeavesSessionCertificates: "revoke everything"
// revokes the keys the user CA certified for the person, not the
// one-minute keys of the bastion's session certificates recorded under
// their identity.
func TestAdminRevokeUserLeavesSessionCertificates(t *testing.T) {
	e := newAdminEnv(t)
	_, _, serials := e.issueFor(t, "alice", 1)
	for range 5 {
		e.sessionCertFor(t, "github:1001")
	}
	carol, _, home := e.signIn(t, "carol")
	status, page := postForm(t, carol, e.ts.URL+"/admin/revoke-user", url.Values{"csrf": {csrfOf(t, home)}, "identity": {"github:1001"}, "reason": {"account compromised"}})
	if status != 200 {
		t.Fatalf("revoke-user: %d\n%.3000s", status, page)
	}
	contains(t, "answer", page, "Revoked 1 keys of github:1001 and with them all 1 certificates issued to it")
	contains(t, "answer", page, "The bastion&#39;s 5 session certificates for its connections are left as they are")
	revs, err := e.st.Revocations(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	keys, revoked := 0, map[uint64]bool{}
	for _, r := range revs {
		if r.Key != nil {
			keys++
		} else {
			revoked[r.Serial] = true
		}
	}
	if keys != 1 || len(revoked) != 1 || !revoked[serials[0]] {
		t.Errorf("%d keys and serials %v revoked; want alice's key and serial %d only", keys, revoked, serials[0])
	}
	if evs := e.auditOf(t, audit.TypeRevoke); len(evs) != 1 {
		t.Errorf("%d revoke events; want 1", len(evs))
	}
}

// TestAdminCIIdentity: the certificates page and "revoke everything" take
// the GitHub Actions identities certificates are recorded under; a
// repository's suspension says what it does.
func TestAdminCIIdentity(t *testing.T) {
	iss, actions := newActions(t)
	e := newAdminEnv(t, func(o *Options) { o.CI = actions })
	_, pub := newKey(t)
	if st, out := e.postJSON(t, "/api/v1/ci/certificate", iss.Sign(iss.ActionsClaims(ciAudience)), CertificateRequest{PublicKey: string(ssh.MarshalAuthorizedKey(pub))}); st != 200 {
		t.Fatalf("CI certificate: %d %v", st, out)
	}
	certs, err := e.st.Certificates(context.Background(), store.CertificateFilter{})
	if err != nil || len(certs) != 1 || !strings.HasPrefix(certs[0].Identity, "github-actions:") {
		t.Fatalf("certificates %+v %v; want one CI certificate", certs, err)
	}
	ci := certs[0].Identity
	carol, _, home := e.signIn(t, "carol")
	csrf := csrfOf(t, home)

	// The link of the certificates page.
	status, page := get(t, carol, e.ts.URL+"/admin/certificates")
	m := regexp.MustCompile(`href="(/admin/certificates\?identity=github-actions[^"]+)"`).FindStringSubmatch(page)
	if status != 200 || m == nil {
		t.Fatalf("certificates page: %d; want a link to the CI identity's certificates\n%.3000s", status, page)
	}
	if status, page := get(t, carol, e.ts.URL+html.UnescapeString(m[1])); status != 200 || !strings.Contains(page, fmt.Sprintf("<td>%d</td>", certs[0].Serial)) {
		t.Errorf("certificates of %s: %d\n%.3000s", ci, status, page)
	}

	for _, tc := range []struct {
		name, identity string
		want           []string
		notWant        string
	}{
		{"ok/repository", "ci:Example-OSS/website", []string{"Suspended every GitHub Actions workload of example-oss/website",
			"No key is revoked: GitHub Actions certificates are short-lived, and the bastion refuses every certificate of a suspended repository at once."}, "No certificate was ever issued"},
		{"ok/workload", ci, []string{"every GitHub Actions workload of example-oss/website was already suspended",
			"Revoked 1 keys of github-actions:"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, page := postForm(t, carol, e.ts.URL+"/admin/revoke-user", url.Values{"csrf": {csrf}, "identity": {tc.identity}, "reason": {"workflow hijacked"}})
			if status != 200 {
				t.Fatalf("revoke-user %s: %d\n%.3000s", tc.identity, status, page)
			}
			page = html.UnescapeString(page)
			for _, w := range tc.want {
				contains(t, "answer", page, w)
			}
			if tc.notWant != "" && strings.Contains(page, tc.notWant) {
				t.Errorf("answer says %q", tc.notWant)
			}
		})
	}
	revs, err := e.st.Revocations(context.Background())
	if err != nil || len(revs) != 2 || revs[0].Key == nil || ssh.FingerprintSHA256(revs[0].Key) != ssh.FingerprintSHA256(pub) {
		t.Errorf("revocations %+v %v; want the CI key and its serial", revs, err)
	}
}

// TestCLIApprovalSuspended: a browser session from before a suspension
// recorded elsewhere approves no `sallyport login --no-browser`, and no
// CLI token is handed out for a code approved before it.
func TestCLIApprovalSuspended(t *testing.T) {
	e := newEnv(t, stepClock(2*time.Second))
	ctx := context.Background()
	device := func(verifier string) (deviceCode, userCode string) {
		t.Helper()
		st, d := e.postJSON(t, "/api/v1/cli/device", "", map[string]string{"code_challenge": oauth2.S256ChallengeFromVerifier(verifier), "code_challenge_method": "S256"})
		if st != 200 {
			t.Fatalf("device: %d %v", st, d)
		}
		return d["device_code"].(string), d["user_code"].(string)
	}
	approve := func(b *http.Client, page, userCode string) (int, string) {
		t.Helper()
		return postForm(t, b, e.ts.URL+"/device", url.Values{"user_code": {userCode}, "csrf": {csrfOf(t, page)}})
	}
	suspend := func(subject string) {
		t.Helper()
		if _, _, err := e.st.Suspend(ctx, store.Suspension{Subject: subject, Reason: "laptop stolen", Actor: "offline:root"}); err != nil {
			t.Fatal(err)
		}
	}
	// A code approved before the suspension, redeemed after it.
	bobVerifier := oauth2.GenerateVerifier()
	bobDevice, bobUser := device(bobVerifier)
	bob, _, bobPage := e.signIn(t, "bob")
	if st, page := approve(bob, bobPage, bobUser); st != 200 {
		t.Fatalf("bob's approval: %d\n%.2000s", st, page)
	}
	// A loopback sign-in completed before the suspension, redeemed after it.
	aliceVerifier := oauth2.GenerateVerifier()
	aliceCode := e.cliCode(t, "alice", aliceVerifier)
	alice, _, alicePage := e.signIn(t, "alice")
	suspend("github:1001")
	suspend("github:1002")

	t.Run("fail/approve", func(t *testing.T) {
		verifier := oauth2.GenerateVerifier()
		deviceCode, userCode := device(verifier)
		st, page := approve(alice, alicePage, userCode)
		if st != http.StatusForbidden || !strings.Contains(html.UnescapeString(page), `github:1001 is suspended since`) ||
			!strings.Contains(html.UnescapeString(page), `"laptop stolen"`) {
			t.Fatalf("approval by suspended alice: %d; want 403 naming the suspension\n%.2000s", st, page)
		}
		if evs := e.auditOf(t, audit.TypeLogin); len(evs) == 0 || evs[0].Actor != "github:1001" || evs[0].Outcome != audit.OutcomeDenied {
			t.Errorf("newest login event %+v; want alice's refusal", evs)
		}
		if st, out := e.postJSON(t, "/api/v1/cli/token", "", map[string]string{"device_code": deviceCode, "code_verifier": verifier}); st != 400 || out["error"] != "authorization_pending" {
			t.Errorf("token for the refused approval: %d %v; want authorization_pending", st, out)
		}
	})
	for _, tc := range []struct {
		name, who string
		body      map[string]string
	}{
		{"fail/device-token", "github:1002", map[string]string{"device_code": bobDevice, "code_verifier": bobVerifier}},
		{"fail/loopback-token", "github:1001", map[string]string{"code": aliceCode, "code_verifier": aliceVerifier}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, out := e.postJSON(t, "/api/v1/cli/token", "", tc.body)
			msg, _ := out["message"].(string)
			if st != http.StatusForbidden || out["error"] != "suspended" || !strings.Contains(msg, tc.who+" is suspended since") || out["token"] != nil {
				t.Fatalf("token of suspended %s: %d %v; want 403 suspended", tc.who, st, out)
			}
			if evs := e.auditOf(t, audit.TypeLogin); len(evs) == 0 || evs[0].Actor != tc.who || evs[0].Outcome != audit.OutcomeDenied {
				t.Errorf("newest login event %+v; want the refusal of %s", evs, tc.who)
			}
		})
	}
}
