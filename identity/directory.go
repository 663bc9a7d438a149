package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-github/v57/github"
	"golang.org/x/oauth2"
)

// DirectoryConfig configures an organisation Directory.
type DirectoryConfig struct {
	// Org is the organisation. Required.
	Org string
	// APIURL is the REST API base. Empty means GitHubAPIURL.
	APIURL string
	// Token is an organisation-level credential: a token with read:org of
	// an organisation member (FileTokenSource reads it from a file at each
	// refresh). Required.
	Token oauth2.TokenSource
	// HTTPClient makes every request to GitHub. Nil means a client with a
	// 30-second timeout.
	HTTPClient *http.Client
	// Interval is the time between periodic refreshes. Zero means 5
	// minutes.
	Interval time.Duration
	// Timeout bounds one refresh. Zero means 2 minutes.
	Timeout time.Duration
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Tick returns a channel delivering a value every d and a function
	// stopping it. Nil means time.NewTicker.
	Tick func(d time.Duration) (<-chan time.Time, func())
	// Logger receives refresh failures and applied changes (logins and team
	// slugs, never tokens). Nil means no logging.
	Logger *slog.Logger
}

// Membership is what the Directory last knew about one GitHub user.
type Membership struct {
	// ID is the GitHub numeric user ID asked about.
	ID int64
	// Login is the login seen at the last refresh; empty when not a member.
	Login string
	// Member is true when the user is an active member of the organisation.
	Member bool
	// Teams are the slugs of the user's teams (nested teams included),
	// sorted. Empty when not a member.
	Teams []string
	// AsOf is when this knowledge was last confirmed or changed.
	AsOf time.Time
}

// MemberChange is one user whose membership or teams changed.
type MemberChange struct {
	ID    int64
	Login string
	// WasMember and Member are the organisation membership before and
	// after.
	WasMember, Member bool
	// Before and After are the sorted team slugs before and after.
	Before, After []string
}

// Lost reports whether the user lost the organisation or at least one team:
// the changes after which live sessions must be re-evaluated.
func (c MemberChange) Lost() bool {
	if c.WasMember && !c.Member {
		return true
	}
	for _, t := range c.Before {
		if !slices.Contains(c.After, t) {
			return true
		}
	}
	return false
}

// Update is published to subscribers whenever the directory's knowledge
// changes.
type Update struct {
	// Version increases by one with every update; the first load is 1.
	Version uint64
	// At is when the update was applied.
	At time.Time
	// Initial is true for the first load: there was no earlier knowledge to
	// compare with, so Changes is empty. Subscribers holding identities
	// established at sign-in should re-check all of them with Lookup.
	Initial bool
	// Changes lists the users whose membership or teams changed, by ID.
	Changes []MemberChange
	// Cause says what produced the update: "refresh" or "webhook <event>
	// <action>".
	Cause string
}

// DirectoryStatus reports the health of a Directory, e.g. for /healthz and
// metrics.
type DirectoryStatus struct {
	Version uint64
	// Refreshed is when the last full refresh succeeded; zero if never.
	Refreshed time.Time
	// LastError is the error of the last refresh if it failed, else nil.
	LastError error
	// Members is the number of active members known.
	Members int
}

type member struct {
	login string
	teams []string // sorted
	asOf  time.Time
}

// Directory keeps the organisation's members and their teams, refreshed
// from GitHub every Interval and at once on membership, organization and
// team webhooks, and tells subscribers what changed. It is how access
// follows a removal from a team or the organisation within minutes, without
// the person signing in again. It is safe for concurrent use.
//
// When a refresh fails, the last known state stays in force and the
// failure is reported by Status; a refresh replaces the state only when
// every page of every listing was read. Removals announced by a verified
// webhook are applied at once, before the refresh that confirms them.
type Directory struct {
	org     string
	api     *url.URL
	token   oauth2.TokenSource
	client  *http.Client
	every   time.Duration
	timeout time.Duration
	now     func() time.Time
	tick    func(time.Duration) (<-chan time.Time, func())
	log     *slog.Logger

	trigger   chan struct{}
	refreshMu sync.Mutex // one fetch at a time
	pubMu     sync.Mutex // updates reach subscribers in version order

	mu        sync.RWMutex
	members   map[int64]member // nil before the first load
	version   uint64
	refreshed time.Time
	lastErr   error
	subs      map[int]func(Update)
	nextSub   int
}

// NewDirectory checks cfg and returns a Directory that knows nothing yet:
// call Run (or Refresh) to load it.
func NewDirectory(cfg DirectoryConfig) (*Directory, error) {
	var errs []error
	if cfg.Org == "" {
		errs = append(errs, errors.New("organisation is empty"))
	}
	if cfg.Token == nil {
		errs = append(errs, errors.New("no organisation token"))
	}
	api, err := baseURL(cfg.APIURL, GitHubAPIURL)
	if err != nil {
		errs = append(errs, fmt.Errorf("API URL: %w", err))
	}
	if cfg.Interval < 0 || cfg.Timeout < 0 {
		errs = append(errs, errors.New("negative interval or timeout"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("identity: directory: %w", errors.Join(errs...))
	}
	d := &Directory{
		org:     cfg.Org,
		api:     api,
		token:   cfg.Token,
		client:  cfg.HTTPClient,
		every:   cfg.Interval,
		timeout: cfg.Timeout,
		now:     cfg.Now,
		tick:    cfg.Tick,
		log:     cfg.Logger,
		trigger: make(chan struct{}, 1),
		subs:    map[int]func(Update){},
	}
	if d.client == nil {
		d.client = &http.Client{Timeout: 30 * time.Second}
	}
	if d.every == 0 {
		d.every = 5 * time.Minute
	}
	if d.timeout == 0 {
		d.timeout = 2 * time.Minute
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.tick == nil {
		d.tick = func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		}
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	return d, nil
}

// Org returns the organisation.
func (d *Directory) Org() string { return d.org }

// Run refreshes at once, then every Interval and whenever TriggerRefresh
// (or a webhook) asks, until ctx is done; it then returns ctx.Err().
// Refresh failures are logged and reported by Status, and do not stop Run.
func (d *Directory) Run(ctx context.Context) error {
	c, stop := d.tick(d.every)
	defer stop()
	for {
		if err := d.Refresh(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("github organisation refresh failed; keeping the last known membership", "org", d.org, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c:
		case <-d.trigger:
		}
	}
}

// TriggerRefresh asks Run to refresh soon. It never blocks; requests made
// while one is pending coalesce.
func (d *Directory) TriggerRefresh() {
	select {
	case d.trigger <- struct{}{}:
	default:
	}
}

// Refresh reads the organisation's members, teams and team members from
// GitHub and, if every page was read, replaces the known state and
// publishes the differences. On error nothing changes.
func (d *Directory) Refresh(ctx context.Context) error {
	d.refreshMu.Lock()
	defer d.refreshMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	next, err := d.fetch(ctx)
	d.mu.Lock()
	d.lastErr = err
	d.mu.Unlock()
	if err != nil {
		return err
	}
	d.apply("refresh", true, func(map[int64]member) map[int64]member { return next })
	return nil
}

// fetch reads the whole organisation, every page or an error.
func (d *Directory) fetch(ctx context.Context) (map[int64]member, error) {
	tok, err := d.token.Token()
	if err != nil {
		return nil, fmt.Errorf("identity: directory: reading the organisation token: %w", err)
	}
	c := newAPIClient(d.client, d.api, tok.AccessToken)
	now := d.now()
	next := map[int64]member{}
	mopt := &github.ListMembersOptions{ListOptions: github.ListOptions{PerPage: 100}}
	err = paginate(ctx, "listing organisation members", &mopt.ListOptions, func() (*github.Response, error) {
		us, resp, err := c.Organizations.ListMembers(ctx, d.org, mopt)
		for _, u := range us {
			if u.GetID() > 0 && u.GetLogin() != "" {
				next[u.GetID()] = member{login: u.GetLogin(), asOf: now}
			}
		}
		return resp, err
	})
	if err != nil {
		return nil, err
	}
	var slugs []string
	topt := &github.ListOptions{PerPage: 100}
	err = paginate(ctx, "listing teams", topt, func() (*github.Response, error) {
		ts, resp, err := c.Teams.ListTeams(ctx, d.org, topt)
		for _, t := range ts {
			if t.GetSlug() != "" {
				slugs = append(slugs, t.GetSlug())
			}
		}
		return resp, err
	})
	if err != nil {
		return nil, err
	}
	for _, slug := range slugs {
		opt := &github.TeamListTeamMembersOptions{ListOptions: github.ListOptions{PerPage: 100}}
		err = paginate(ctx, "listing members of team "+slug, &opt.ListOptions, func() (*github.Response, error) {
			us, resp, err := c.Teams.ListTeamMembersBySlug(ctx, d.org, slug, opt)
			for _, u := range us {
				m, ok := next[u.GetID()]
				if !ok || slices.Contains(m.teams, slug) {
					continue
				}
				m.teams = append(m.teams, slug)
				next[u.GetID()] = m
			}
			return resp, err
		})
		if err != nil {
			return nil, err
		}
	}
	for id, m := range next {
		sort.Strings(m.teams)
		next[id] = m
	}
	return next, nil
}

// paginate calls list until GitHub reports no next page, advancing
// opt.Page. Any failed page fails the whole listing.
func paginate(ctx context.Context, what string, opt *github.ListOptions, list func() (*github.Response, error)) error {
	for page := 0; ; page++ {
		if page == maxPages {
			return fmt.Errorf("identity: github: %s: %w: more than %d pages", what, ErrUpstream, maxPages)
		}
		resp, err := list()
		if err != nil {
			return apiError(what, err)
		}
		if err := ctx.Err(); err != nil {
			return apiError(what, err)
		}
		if resp.NextPage == 0 {
			return nil
		}
		opt.Page = resp.NextPage
	}
}

// apply computes the next state from the current one with change, swaps
// it in, and publishes the differences. full marks a complete refresh.
func (d *Directory) apply(cause string, full bool, change func(map[int64]member) map[int64]member) {
	d.pubMu.Lock()
	defer d.pubMu.Unlock()
	d.mu.Lock()
	if d.members == nil && !full {
		d.mu.Unlock()
		return // nothing known yet; the refresh that follows loads it
	}
	prev := d.members
	next := change(cloneMembers(prev))
	now := d.now()
	up := Update{At: now, Cause: cause, Initial: prev == nil}
	if prev != nil {
		up.Changes = diff(prev, next)
	}
	if full {
		d.refreshed = now
	}
	if !up.Initial && len(up.Changes) == 0 {
		// Nothing changed: keep the version, confirm freshness.
		for id, m := range prev {
			m.asOf = now
			prev[id] = m
		}
		d.mu.Unlock()
		return
	}
	for _, c := range up.Changes {
		if m, ok := next[c.ID]; ok {
			m.asOf = now
			next[c.ID] = m
		}
	}
	d.members = next
	d.version++
	up.Version = d.version
	subs := make([]func(Update), 0, len(d.subs))
	for _, k := range sortedKeys(d.subs) {
		subs = append(subs, d.subs[k])
	}
	d.mu.Unlock()
	for _, c := range up.Changes {
		d.log.Info("github membership changed", "org", d.org, "id", c.ID, "login", c.Login,
			"member", c.Member, "teams_before", c.Before, "teams_after", c.After, "cause", cause)
	}
	for _, fn := range subs {
		fn(up)
	}
}

func cloneMembers(m map[int64]member) map[int64]member {
	if m == nil {
		return map[int64]member{}
	}
	out := make(map[int64]member, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func sortedKeys(m map[int]func(Update)) []int {
	ks := make([]int, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Ints(ks)
	return ks
}

func diff(prev, next map[int64]member) []MemberChange {
	var out []MemberChange
	for id, p := range prev {
		n, ok := next[id]
		switch {
		case !ok:
			out = append(out, MemberChange{ID: id, Login: p.login, WasMember: true, Before: p.teams})
		case !slices.Equal(p.teams, n.teams) || p.login != n.login:
			out = append(out, MemberChange{ID: id, Login: n.login, WasMember: true, Member: true, Before: p.teams, After: n.teams})
		}
	}
	for id, n := range next {
		if _, ok := prev[id]; !ok {
			out = append(out, MemberChange{ID: id, Login: n.login, Member: true, After: n.teams})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Lookup returns the latest known membership of the GitHub user with
// numeric ID id. Before the first successful refresh it returns an error
// matching ErrNotReady: the caller must then rely on what it established
// at sign-in.
func (d *Directory) Lookup(id int64) (Membership, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.members == nil {
		return Membership{ID: id}, fmt.Errorf("identity: directory %s: %w", d.org, ErrNotReady)
	}
	m, ok := d.members[id]
	if !ok {
		return Membership{ID: id, AsOf: d.refreshed}, nil
	}
	return Membership{ID: id, Login: m.login, Member: true, Teams: slices.Clone(m.teams), AsOf: m.asOf}, nil
}

// Members returns every active member as last known, by ID; nil before
// the first successful refresh.
func (d *Directory) Members() []Membership {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.members == nil {
		return nil
	}
	out := make([]Membership, 0, len(d.members))
	for id, m := range d.members {
		out = append(out, Membership{ID: id, Login: m.login, Member: true, Teams: slices.Clone(m.teams), AsOf: m.asOf})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Version returns the number of updates applied so far; 0 means nothing
// is known yet.
func (d *Directory) Version() uint64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.version
}

// Status reports the directory's health.
func (d *Directory) Status() DirectoryStatus {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return DirectoryStatus{Version: d.version, Refreshed: d.refreshed, LastError: d.lastErr, Members: len(d.members)}
}

// Subscribe registers fn to be called with every Update, in version order,
// after the update is visible to Lookup. Calls are made one at a time from
// the goroutine applying the update: fn must return quickly (hand work to
// another goroutine) and must not call cancel. The returned cancel
// unregisters fn.
func (d *Directory) Subscribe(fn func(Update)) (cancel func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := d.nextSub
	d.nextSub++
	d.subs[k] = fn
	return func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		delete(d.subs, k)
	}
}

// removeMember drops a user at once (a verified webhook said so).
func (d *Directory) removeMember(cause string, id int64) {
	d.apply(cause, false, func(m map[int64]member) map[int64]member {
		delete(m, id)
		return m
	})
}

// removeTeam drops one team of a user at once (a verified webhook said so).
func (d *Directory) removeTeam(cause string, id int64, slug string) {
	d.apply(cause, false, func(m map[int64]member) map[int64]member {
		if e, ok := m[id]; ok {
			e.teams = slices.DeleteFunc(slices.Clone(e.teams), func(t string) bool { return strings.EqualFold(t, slug) })
			m[id] = e
		}
		return m
	})
}

// dropTeam removes a deleted team from everyone at once.
func (d *Directory) dropTeam(cause, slug string) {
	d.apply(cause, false, func(m map[int64]member) map[int64]member {
		for id, e := range m {
			if slices.ContainsFunc(e.teams, func(t string) bool { return strings.EqualFold(t, slug) }) {
				e.teams = slices.DeleteFunc(slices.Clone(e.teams), func(t string) bool { return strings.EqualFold(t, slug) })
				m[id] = e
			}
		}
		return m
	})
}
