package identity

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sallyport/sallyport/internal/githubtest"
)

var webhookSecret = []byte("webhook-secret")

type dirFixture struct {
	gh      *githubtest.Server
	users   map[string]githubtest.User
	dir     *Directory
	tick    chan time.Time
	updates chan Update
}

func newDirFixture(t *testing.T) *dirFixture {
	t.Helper()
	gh, users := standIn(t)
	f := &dirFixture{gh: gh, users: users, tick: make(chan time.Time), updates: make(chan Update, 16)}
	d, err := NewDirectory(DirectoryConfig{
		Org:        "Example-OSS",
		APIURL:     gh.URL,
		Token:      StaticToken(gh.TokenWithScopes(users["octo-admin"], "read:org")),
		HTTPClient: gh.Client(),
		Timeout:    5 * time.Second,
		Tick:       func(time.Duration) (<-chan time.Time, func()) { return f.tick, func() {} },
	})
	if err != nil {
		t.Fatal(err)
	}
	f.dir = d
	cancel := d.Subscribe(func(u Update) { f.updates <- u })
	t.Cleanup(cancel)
	return f
}

func (f *dirFixture) lookup(t *testing.T, login string) Membership {
	t.Helper()
	m, err := f.dir.Lookup(f.users[login].ID)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (f *dirFixture) next(t *testing.T) Update {
	t.Helper()
	select {
	case u := <-f.updates:
		return u
	case <-time.After(5 * time.Second):
		t.Fatal("no update published")
		return Update{}
	}
}

func TestDirectoryRefresh(t *testing.T) {
	f := newDirFixture(t)
	if _, err := f.dir.Lookup(f.users["alice"].ID); !errors.Is(err, ErrNotReady) {
		t.Fatalf("before refresh: got %v; want ErrNotReady", err)
	}
	f.gh.SetPageSize(2) // every listing takes several pages
	must(t, f.gh.AddTeam(testOrg, "infra-oncall", "infra"))
	must(t, f.gh.AddToTeam(f.users["bob"], testOrg, "infra-oncall"))
	must(t, f.dir.Refresh(t.Context()))
	up := f.next(t)
	if !up.Initial || up.Version != 1 || len(up.Changes) != 0 {
		t.Errorf("first update: got %+v; want initial version 1 without changes", up)
	}
	tests := []struct {
		login  string
		member bool
		teams  []string
	}{
		{"alice", true, []string{"infra", "website"}},
		{"bob", true, []string{"infra", "infra-oncall", "website"}},
		{"carol", true, []string{"release-managers"}},
		{"octo-admin", true, nil},
		{"dave", false, nil}, // pending invitation
		{"erin", false, nil}, // other organisation
	}
	for _, tc := range tests {
		m := f.lookup(t, tc.login)
		if m.Member != tc.member || !slices.Equal(m.Teams, tc.teams) {
			t.Errorf("%s: got member=%v teams=%q; want %v %q", tc.login, m.Member, m.Teams, tc.member, tc.teams)
		}
	}
	if st := f.dir.Status(); st.Members != 4 || st.LastError != nil || st.Refreshed.IsZero() || st.Version != 1 {
		t.Errorf("status: got %+v", st)
	}

	// Nothing changed: no update, same version.
	must(t, f.dir.Refresh(t.Context()))
	if v := f.dir.Version(); v != 1 {
		t.Errorf("unchanged refresh: version %d; want 1", v)
	}

	// Removal from a team, from the organisation, and a rename.
	f.gh.RemoveFromTeam(f.users["alice"], testOrg, "infra")
	f.gh.RemoveFromOrg(f.users["carol"], testOrg)
	if _, err := f.gh.RenameUser(f.users["bob"], "bobby"); err != nil {
		t.Fatal(err)
	}
	must(t, f.dir.Refresh(t.Context()))
	up = f.next(t)
	if up.Initial || up.Version != 2 || up.Cause != "refresh" {
		t.Errorf("update: got %+v", up)
	}
	want := map[int64]struct {
		lost  bool
		login string
	}{
		f.users["alice"].ID: {true, "alice"},
		f.users["bob"].ID:   {false, "bobby"},
		f.users["carol"].ID: {true, "carol"},
	}
	if len(up.Changes) != len(want) {
		t.Fatalf("changes: got %+v; want %d", up.Changes, len(want))
	}
	for _, c := range up.Changes {
		w, ok := want[c.ID]
		if !ok || c.Lost() != w.lost || c.Login != w.login {
			t.Errorf("change %+v: want lost=%v login %s", c, w.lost, w.login)
		}
	}
	if m := f.lookup(t, "carol"); m.Member || m.Teams != nil {
		t.Errorf("carol after removal: got %+v", m)
	}
	if m := f.lookup(t, "bob"); m.Login != "bobby" || !m.Member {
		t.Errorf("bob after rename: got %+v; want login bobby, same ID", m)
	}
}

func TestDirectoryRefreshFailsClosed(t *testing.T) {
	tests := []struct {
		name  string
		fault githubtest.Fault
		want  error
	}{
		{"fail/members-page-2-500", githubtest.Fault{Path: "/orgs/Example-OSS/members", Page: 2, Status: 500}, ErrUpstream},
		{"fail/teams-malformed", githubtest.Fault{Path: "/orgs/Example-OSS/teams", Body: `[{"slug":`}, ErrUpstream},
		{"fail/team-members-500", githubtest.Fault{Path: "/orgs/Example-OSS/teams/website/members", Status: 500}, ErrUpstream},
		{"fail/team-members-forbidden", githubtest.Fault{Path: "/orgs/Example-OSS/teams/infra/members", Status: 403}, ErrRefused},
		{"fail/slow", githubtest.Fault{Path: "/orgs/Example-OSS/teams", Delay: time.Minute}, ErrUpstream},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newDirFixture(t)
			f.gh.SetPageSize(1)
			must(t, f.dir.Refresh(t.Context()))
			f.next(t)
			// A change GitHub would report, hidden by a failure on a page.
			f.gh.RemoveFromTeam(f.users["bob"], testOrg, "website")
			f.gh.RemoveFromOrg(f.users["carol"], testOrg)
			f.gh.InjectFault(tc.fault)
			ctx := t.Context()
			if tc.fault.Delay > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 500*time.Millisecond)
				defer cancel()
			}
			err := f.dir.Refresh(ctx)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v; want %v", err, tc.want)
			}
			if st := f.dir.Status(); !errors.Is(st.LastError, tc.want) || st.Version != 1 {
				t.Errorf("status: got %+v", st)
			}
			// The last complete state stays; nothing partial applied.
			if m := f.lookup(t, "bob"); !slices.Equal(m.Teams, []string{"website"}) {
				t.Errorf("bob: got %q; want the last complete state [website]", m.Teams)
			}
			if m := f.lookup(t, "carol"); !m.Member {
				t.Errorf("carol: got %+v; want the last complete state (member)", m)
			}
			f.gh.ClearFaults()
			must(t, f.dir.Refresh(t.Context()))
			if up := f.next(t); len(up.Changes) != 2 {
				t.Errorf("after recovery: got %+v; want bob and carol changed", up.Changes)
			}
		})
	}
}

func TestDirectoryRefreshNeedsReadOrg(t *testing.T) {
	gh, users := standIn(t)
	d, err := NewDirectory(DirectoryConfig{Org: testOrg, APIURL: gh.URL, HTTPClient: gh.Client(),
		Token: StaticToken(gh.TokenWithScopes(users["alice"], "repo"))})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Refresh(t.Context()); !errors.Is(err, ErrRefused) {
		t.Fatalf("got %v; want ErrRefused", err)
	}
}

func TestDirectoryRunTicksAndStops(t *testing.T) {
	f := newDirFixture(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.dir.Run(ctx) }()
	if up := f.next(t); !up.Initial {
		t.Fatalf("got %+v; want the initial load", up)
	}
	f.gh.RemoveFromTeam(f.users["alice"], testOrg, "website")
	f.tick <- time.Now()
	up := f.next(t)
	if len(up.Changes) != 1 || up.Changes[0].ID != f.users["alice"].ID || !up.Changes[0].Lost() {
		t.Errorf("after tick: got %+v; want alice lost website", up)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run: got %v; want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop")
	}
}

// deliver sends a webhook to h and returns the status.
func deliver(t *testing.T, h http.Handler, event, delivery string, body []byte, sig string) int {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/webhook", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-GitHub-Event", event)
	r.Header.Set("X-GitHub-Delivery", delivery)
	if sig != "" {
		r.Header.Set("X-Hub-Signature-256", sig)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

func TestWebhook(t *testing.T) {
	type check func(t *testing.T, f *dirFixture)
	tests := []struct {
		name string
		// send returns the status of the last delivery.
		send  func(t *testing.T, f *dirFixture, h http.Handler) int
		want  int
		check check
	}{
		{"ok/membership-removed-applies-at-once", func(t *testing.T, f *dirFixture, h http.Handler) int {
			body := f.gh.MembershipEvent("removed", testOrg, "website", f.users["bob"])
			return deliver(t, h, "membership", "d-1", body, githubtest.SignWebhook(webhookSecret, body))
		}, http.StatusAccepted, func(t *testing.T, f *dirFixture) {
			if m := f.lookup(t, "bob"); len(m.Teams) != 0 {
				t.Errorf("bob: got teams %q; want none at once", m.Teams)
			}
			if up := f.next(t); up.Cause != "webhook membership removed" || len(up.Changes) != 1 || !up.Changes[0].Lost() {
				t.Errorf("update: got %+v", up)
			}
			wantTrigger(t, f, true)
		}},
		{"ok/member-removed-from-org-applies-at-once", func(t *testing.T, f *dirFixture, h http.Handler) int {
			body := f.gh.OrganizationEvent("member_removed", testOrg, f.users["alice"])
			return deliver(t, h, "organization", "d-2", body, githubtest.SignWebhook(webhookSecret, body))
		}, http.StatusAccepted, func(t *testing.T, f *dirFixture) {
			if m := f.lookup(t, "alice"); m.Member {
				t.Errorf("alice: got %+v; want not a member at once", m)
			}
			wantTrigger(t, f, true)
		}},
		{"ok/team-deleted-applies-at-once", func(t *testing.T, f *dirFixture, h http.Handler) int {
			body := f.gh.TeamEvent("deleted", testOrg, "infra")
			return deliver(t, h, "team", "d-3", body, githubtest.SignWebhook(webhookSecret, body))
		}, http.StatusAccepted, func(t *testing.T, f *dirFixture) {
			if m := f.lookup(t, "alice"); !slices.Equal(m.Teams, []string{"website"}) {
				t.Errorf("alice: got %q; want [website]", m.Teams)
			}
		}},
		{"ok/member-added-triggers-refresh-only", func(t *testing.T, f *dirFixture, h http.Handler) int {
			body := f.gh.MembershipEvent("added", testOrg, "infra", f.users["bob"])
			return deliver(t, h, "membership", "d-4", body, githubtest.SignWebhook(webhookSecret, body))
		}, http.StatusAccepted, func(t *testing.T, f *dirFixture) {
			if m := f.lookup(t, "bob"); !slices.Equal(m.Teams, []string{"website"}) {
				t.Errorf("bob: got %q; want [website] until the refresh reads GitHub", m.Teams)
			}
			wantTrigger(t, f, true)
		}},
		{"ok/ping", func(t *testing.T, f *dirFixture, h http.Handler) int {
			body := []byte(`{"zen":"Design for failure.","hook_id":1}`)
			return deliver(t, h, "ping", "d-5", body, githubtest.SignWebhook(webhookSecret, body))
		}, http.StatusOK, func(t *testing.T, f *dirFixture) { wantTrigger(t, f, false) }},
		{"ok/other-event-ignored", func(t *testing.T, f *dirFixture, h http.Handler) int {
			body := []byte(`{"ref":"refs/heads/main"}`)
			return deliver(t, h, "push", "d-6", body, githubtest.SignWebhook(webhookSecret, body))
		}, http.StatusOK, func(t *testing.T, f *dirFixture) { wantTrigger(t, f, false) }},
		{"fail/bad-signature", func(t *testing.T, f *dirFixture, h http.Handler) int {
			body := f.gh.OrganizationEvent("member_removed", testOrg, f.users["alice"])
			return deliver(t, h, "organization", "d-7", body, githubtest.SignWebhook([]byte("wrong secret"), body))
		}, http.StatusUnauthorized, unchanged},
		{"fail/signature-of-other-body", func(t *testing.T, f *dirFixture, h http.Handler) int {
			body := f.gh.OrganizationEvent("member_removed", testOrg, f.users["alice"])
			other := f.gh.OrganizationEvent("member_added", testOrg, f.users["alice"])
			return deliver(t, h, "organization", "d-8", body, githubtest.SignWebhook(webhookSecret, other))
		}, http.StatusUnauthorized, unchanged},
		{"fail/missing-signature", func(t *testing.T, f *dirFixture, h http.Handler) int {
			body := f.gh.OrganizationEvent("member_removed", testOrg, f.users["alice"])
			return deliver(t, h, "organization", "d-9", body, "")
		}, http.StatusUnauthorized, unchanged},
		{"fail/sha1-signature-only", func(t *testing.T, f *dirFixture, h http.Handler) int {
			body := f.gh.OrganizationEvent("member_removed", testOrg, f.users["alice"])
			return deliver(t, h, "organization", "d-10", body, "sha1=0123456789abcdef0123456789abcdef01234567")
		}, http.StatusUnauthorized, unchanged},
		{"fail/replayed", func(t *testing.T, f *dirFixture, h http.Handler) int {
			body := f.gh.MembershipEvent("added", testOrg, "infra", f.users["bob"])
			sig := githubtest.SignWebhook(webhookSecret, body)
			if code := deliver(t, h, "membership", "d-11", body, sig); code != http.StatusAccepted {
				t.Fatalf("first delivery: got %d; want 202", code)
			}
			<-f.dir.trigger
			return deliver(t, h, "membership", "d-11", body, sig)
		}, http.StatusConflict, func(t *testing.T, f *dirFixture) { wantTrigger(t, f, false) }},
		{"fail/other-organisation", func(t *testing.T, f *dirFixture, h http.Handler) int {
			body := f.gh.OrganizationEvent("member_removed", "other-org", f.users["alice"])
			return deliver(t, h, "organization", "d-12", body, githubtest.SignWebhook(webhookSecret, body))
		}, http.StatusUnprocessableEntity, unchanged},
		{"fail/too-large", func(t *testing.T, f *dirFixture, h http.Handler) int {
			body := append([]byte(`{"action":"removed","pad":"`), bytes.Repeat([]byte("x"), 5000)...)
			body = append(body, `"}`...)
			return deliver(t, h, "membership", "d-13", body, githubtest.SignWebhook(webhookSecret, body))
		}, http.StatusRequestEntityTooLarge, unchanged},
		{"fail/malformed-json", func(t *testing.T, f *dirFixture, h http.Handler) int {
			body := []byte(`{"action":"removed","member":{"id":"x"}}`)
			return deliver(t, h, "membership", "d-14", body, githubtest.SignWebhook(webhookSecret, body))
		}, http.StatusBadRequest, unchanged},
		{"fail/no-delivery-id", func(t *testing.T, f *dirFixture, h http.Handler) int {
			body := f.gh.OrganizationEvent("member_removed", testOrg, f.users["alice"])
			return deliver(t, h, "organization", "", body, githubtest.SignWebhook(webhookSecret, body))
		}, http.StatusBadRequest, unchanged},
		{"fail/form-encoded", func(t *testing.T, f *dirFixture, h http.Handler) int {
			r := httptest.NewRequest(http.MethodPost, "/webhook", bytes.NewReader([]byte("payload=%7B%7D")))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return w.Code
		}, http.StatusUnsupportedMediaType, unchanged},
		{"fail/get", func(t *testing.T, f *dirFixture, h http.Handler) int {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/webhook", nil))
			return w.Code
		}, http.StatusMethodNotAllowed, unchanged},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newDirFixture(t)
			must(t, f.dir.Refresh(t.Context()))
			f.next(t)
			h, err := NewWebhook(f.dir, WebhookConfig{Secret: webhookSecret, MaxBodyBytes: 4096})
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.send(t, f, h); got != tc.want {
				t.Fatalf("status: got %d; want %d", got, tc.want)
			}
			tc.check(t, f)
		})
	}
}

func unchanged(t *testing.T, f *dirFixture) {
	t.Helper()
	if v := f.dir.Version(); v != 1 {
		t.Errorf("version: got %d; want 1 (nothing applied)", v)
	}
	wantTrigger(t, f, false)
}

func wantTrigger(t *testing.T, f *dirFixture, want bool) {
	t.Helper()
	select {
	case <-f.dir.trigger:
		if !want {
			t.Error("a refresh was triggered; want none")
		}
	default:
		if want {
			t.Error("no refresh triggered")
		}
	}
}

// A good webhook makes a running directory read GitHub at once.
func TestWebhookTriggersRefresh(t *testing.T) {
	f := newDirFixture(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); f.dir.Run(ctx) }()
	defer wg.Wait()
	defer cancel()
	f.next(t) // initial load
	h, err := NewWebhook(f.dir, WebhookConfig{Secret: webhookSecret})
	if err != nil {
		t.Fatal(err)
	}
	must(t, f.gh.AddToTeam(f.users["bob"], testOrg, "infra"))
	body := f.gh.MembershipEvent("added", testOrg, "infra", f.users["bob"])
	if code := deliver(t, h, "membership", "d-100", body, githubtest.SignWebhook(webhookSecret, body)); code != http.StatusAccepted {
		t.Fatalf("got %d; want 202", code)
	}
	up := f.next(t) // no tick was sent: the webhook caused it
	if up.Cause != "refresh" || len(up.Changes) != 1 || !slices.Equal(up.Changes[0].After, []string{"infra", "website"}) {
		t.Errorf("got %+v; want bob gaining infra", up)
	}
}

func TestWebhookReplayWindow(t *testing.T) {
	f := newDirFixture(t)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.dir.now = func() time.Time { return now }
	must(t, f.dir.Refresh(t.Context()))
	h, err := NewWebhook(f.dir, WebhookConfig{Secret: webhookSecret, ReplayWindow: time.Hour, MaxRemembered: 3})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"zen":"x"}`)
	sig := githubtest.SignWebhook(webhookSecret, body)
	steps := []struct {
		advance time.Duration
		id      string
		want    int
	}{
		{0, "a", http.StatusOK},
		{30 * time.Minute, "a", http.StatusConflict},
		{0, "b", http.StatusOK},
		{0, "c", http.StatusOK},
		{31 * time.Minute, "b", http.StatusConflict},
		{0, "d", http.StatusOK},
		{2 * time.Hour, "d", http.StatusOK}, // outside the window: forgotten
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		if got := deliver(t, h, "ping", s.id, body, sig); got != s.want {
			t.Errorf("step %d (%s): got %d; want %d", i, s.id, got, s.want)
		}
	}
	if n := len(h.seen); n > 3 {
		t.Errorf("remembered %d delivery IDs; want at most 3", n)
	}
}

func TestDirectoryMembers(t *testing.T) {
	f := newDirFixture(t)
	if got := f.dir.Members(); got != nil {
		t.Fatalf("before refresh: %+v; want nil", got)
	}
	must(t, f.dir.Refresh(t.Context()))
	var got []string
	for _, m := range f.dir.Members() {
		if !m.Member {
			t.Errorf("%+v is not marked a member", m)
		}
		got = append(got, m.Login)
	}
	// By ID: alice 1001, bob 1002, carol 1003, octo-admin 1004; dave is
	// only invited and erin in another organisation.
	if want := []string{"alice", "bob", "carol", "octo-admin"}; !slices.Equal(got, want) {
		t.Errorf("members %q; want %q", got, want)
	}
}
