package web

import (
	"context"
	"html"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/identity"
	"github.com/sallyport/sallyport/internal/githubtest"
	"github.com/sallyport/sallyport/store"
)

// withDirectory gives the server an organisation directory reading the
// GitHub stand-in, as `serve` has with github.org_token, and returns a
// function refreshing it now.
func (e *env) withDirectory(t *testing.T) func() {
	t.Helper()
	d, err := identity.NewDirectory(identity.DirectoryConfig{
		Org: "example-oss", APIURL: e.gh.URL, HTTPClient: e.gh.Client(), Timeout: 5 * time.Second,
		Token: identity.StaticToken(e.gh.TokenWithScopes(e.users["alice"], "read:org")),
		Tick:  func(time.Duration) (<-chan time.Time, func()) { return nil, func() {} },
	})
	if err != nil {
		t.Fatal(err)
	}
	refresh := func() {
		t.Helper()
		if err := d.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	refresh()
	e.srv.o.Directory = d // before any request of the test
	return refresh
}

// addMember adds a member of example-oss in teams.
func (e *env) addMember(t *testing.T, login string, id int64, teams ...string) githubtest.User {
	t.Helper()
	u, err := e.gh.AddUserWithID(login, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.gh.SetMembership(u, "example-oss", githubtest.StateActive, teams...); err != nil {
		t.Fatal(err)
	}
	e.users[login] = u
	return u
}

func (e *env) rename(t *testing.T, from, to string) {
	t.Helper()
	u, err := e.gh.RenameUser(e.users[from], to)
	if err != nil {
		t.Fatal(err)
	}
	delete(e.users, from)
	e.users[to] = u
}

// The reference policy gives octo-admin (1004) root everywhere through
// `users: [octo-admin]`. Once Sallyport has seen that login as 1004, an
// account that takes the freed login later does not get that role.
const octoUnpinned = "login octo-admin was first seen as GitHub user 1004; user 2001 now has that login: policy 'users: octo-admin' entries do not apply to them until an admin re-pins"

// takeOverOctoAdmin has octo-admin sign in and get a certificate (which
// pins the login), then rename their account; mallory (2001, in teams)
// then renames hers to octo-admin.
func (e *env) takeOverOctoAdmin(t *testing.T, teams ...string) {
	t.Helper()
	b, _, page := e.signIn(t, "octo-admin")
	_, pub := newKey(t)
	if status, cr, apiErr := e.requestCert(t, b, csrfOf(t, page), pub); status != 200 || !slices.Contains(cr.Principals, "root") {
		t.Fatalf("octo-admin's own certificate: %d %+v %+v", status, cr, apiErr)
	}
	e.addMember(t, "mallory", 2001, teams...)
	e.rename(t, "octo-admin", "octo-retired")
	e.rename(t, "mallory", "octo-admin")
}

func TestRenamedLoginSignsInAnew(t *testing.T) {
	e := newEnv(t)
	e.takeOverOctoAdmin(t)
	b, status, page := e.signIn(t, "octo-admin")
	if status != 200 {
		t.Fatalf("mallory's sign-in as octo-admin: %d\n%s", status, page)
	}
	contains(t, "home page", html.UnescapeString(page), octoUnpinned)
	_, pub := newKey(t)
	status, cr, apiErr := e.requestCert(t, b, csrfOf(t, page), pub)
	if status != http.StatusForbidden {
		t.Fatalf("certificate for mallory as octo-admin: %d %+v; want 403", status, cr)
	}
	contains(t, "refusal", apiErr.Message, octoUnpinned)
	refusals := e.auditOf(t, audit.TypeRefuse)
	if len(refusals) == 0 || refusals[0].Actor != "github:2001" || !strings.Contains(refusals[0].Reason, octoUnpinned) {
		t.Errorf("newest refusal %+v; want github:2001's with the pin", refusals)
	}
	certs, err := e.st.Certificates(context.Background(), store.CertificateFilter{Identity: "github:2001"})
	if err != nil || len(certs) != 0 {
		t.Errorf("certificates of github:2001: %v %v; want none", certs, err)
	}
}

func TestRenamedLoginExistingSession(t *testing.T) {
	e := newEnv(t)
	refresh := e.withDirectory(t)
	// mallory signs in under her own name first, in the website team.
	e.addMember(t, "mallory-early", 2002, "website")
	e.users["mallory"] = e.users["mallory-early"]
	b, _, page := e.signIn(t, "octo-admin")
	_, pub := newKey(t)
	if status, _, apiErr := e.requestCert(t, b, csrfOf(t, page), pub); status != 200 {
		t.Fatalf("octo-admin's own certificate: %d %+v", status, apiErr)
	}
	mb, _, mpage := e.signIn(t, "mallory-early")
	e.rename(t, "octo-admin", "octo-retired")
	e.rename(t, "mallory-early", "octo-admin")
	refresh()
	_, pub = newKey(t)
	status, cr, apiErr := e.requestCert(t, mb, csrfOf(t, mpage), pub)
	if status != 200 {
		t.Fatalf("certificate: %d %+v; want 200 for her team's access", status, apiErr)
	}
	cert := e.checkCert(t, cr.Certificate, pub, "deploy")
	if !slices.Equal(cert.ValidPrincipals, []string{"deploy"}) {
		t.Errorf("principals %v; want only deploy (team website), not octo-admin's root", cert.ValidPrincipals)
	}
	want := strings.ReplaceAll(octoUnpinned, "2001", "2002")
	var found bool
	for _, ev := range e.auditOf(t, store.AuditTypeLoginPin) {
		if ev.Actor == "github:2002" && ev.Outcome == audit.OutcomeDenied && ev.Reason == want {
			found = true
		}
	}
	if !found {
		t.Errorf("no audited narrowing %q in %+v", want, e.auditOf(t, store.AuditTypeLoginPin))
	}
}

func TestRenamedLoginTeamsStillCount(t *testing.T) {
	e := newEnv(t)
	e.takeOverOctoAdmin(t, "website")
	b, _, page := e.signIn(t, "octo-admin")
	_, pub := newKey(t)
	status, cr, apiErr := e.requestCert(t, b, csrfOf(t, page), pub)
	if status != 200 {
		t.Fatalf("certificate: %d %+v", status, apiErr)
	}
	if !slices.Equal(cr.Principals, []string{"deploy"}) || slices.Contains(cr.Roles, "infrastructure") {
		t.Errorf("principals %v roles %v; want deploy through website-maintainers only", cr.Principals, cr.Roles)
	}
}

func TestRenamedLoginRepinned(t *testing.T) {
	e := newEnv(t)
	e.takeOverOctoAdmin(t)
	old, err := e.st.Repin(context.Background(), "octo-admin", 2001, "github:1003", "the old octo-admin account was deleted; 2001 is the project's new octo-admin")
	if err != nil || old == nil || old.GitHubID != 1004 {
		t.Fatalf("re-pin: %+v %v; want the pin to 1004 replaced", old, err)
	}
	b, _, page := e.signIn(t, "octo-admin")
	_, pub := newKey(t)
	status, cr, apiErr := e.requestCert(t, b, csrfOf(t, page), pub)
	if status != 200 || !slices.Contains(cr.Principals, "root") {
		t.Fatalf("certificate after re-pin: %d %+v %+v; want root", status, cr, apiErr)
	}
	// The login's first holder, renamed away, gets nothing from it.
	b, _, page = e.signIn(t, "octo-retired")
	if status, _, _ := e.requestCert(t, b, csrfOf(t, page), pub); status != http.StatusForbidden {
		t.Errorf("octo-retired: %d; want 403", status)
	}
}

func TestRenamedLoginKeepsItsOwnPin(t *testing.T) {
	// A person renamed and renamed back is the same account: no conflict.
	e := newEnv(t)
	b, _, page := e.signIn(t, "octo-admin")
	_, pub := newKey(t)
	if status, _, _ := e.requestCert(t, b, csrfOf(t, page), pub); status != 200 {
		t.Fatal(status)
	}
	e.rename(t, "octo-admin", "octo-away")
	e.signIn(t, "octo-away")
	e.rename(t, "octo-away", "OCTO-ADMIN")
	b, _, page = e.signIn(t, "OCTO-ADMIN")
	if strings.Contains(page, "first seen") {
		t.Errorf("home page warns about a pin of the same account:\n%s", page)
	}
	if status, cr, apiErr := e.requestCert(t, b, csrfOf(t, page), pub); status != 200 || !slices.Contains(cr.Principals, "root") {
		t.Errorf("certificate: %d %+v %+v; want root", status, cr, apiErr)
	}
	pins, err := e.st.LoginPins(context.Background(), store.LoginPinFilter{GitHubID: 1004})
	if err != nil {
		t.Fatal(err)
	}
	var logins []string
	for _, p := range pins {
		logins = append(logins, p.Login)
	}
	if !slices.Equal(logins, []string{"octo-admin", "octo-away"}) {
		t.Errorf("logins pinned to 1004: %v; want octo-admin, octo-away", logins)
	}
}
