package githubtest

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// This file adds organisations, teams and memberships: the endpoints
// Sallyport's sign-in and organisation directory read.
//
//	GET /user/teams                              teams of the user, every organisation
//	GET /user/memberships/orgs/{org}             the user's own membership (state active or pending)
//	GET /orgs/{org}/members                      active members
//	GET /orgs/{org}/members/{username}           204 member, 404 not
//	GET /orgs/{org}/teams                        teams of the organisation
//	GET /orgs/{org}/teams/{slug}                 one team
//	GET /orgs/{org}/teams/{slug}/members         active members, child teams included
//	GET /orgs/{org}/teams/{slug}/memberships/{username}
//
// Lists are paginated like GitHub's: page and per_page (default 30,
// capped at 100 or SetPageSize), and a Link header with next, last, first
// and prev.

// Membership states, as GitHub reports them.
const (
	StateActive  = "active"
	StatePending = "pending" // invited, not accepted: not a member
)

// TB is the part of testing.TB that New uses; *testing.T and *testing.B
// satisfy it. It keeps the package free of the testing package so that
// `sallyport dev` can serve the stand-in (see Start).
type TB interface {
	Helper()
	Cleanup(func())
}

// extState is the stand-in's organisation, OAuth and fault state, guarded
// by Server.mu and created on first use.
type extState struct {
	orgs     map[string]*org                  // by lower-case login
	members  map[int64]map[string]*membership // user ID -> lower-case org
	apps     map[string]*OAuthApp             // by client ID
	codes    map[string]*authCode
	scopes   map[string][]string // OAuth token -> scopes; tokens absent have every scope
	faults   []*Fault
	pageSize int
	nextID   int64
}

type org struct {
	login string
	id    int64
	teams map[string]*team // by lower-case slug
}

type team struct {
	id                 int64
	slug, name, parent string // parent: slug, "" if none
}

type membership struct {
	state, role string
	teams       []string // slugs
}

// ext returns the extension state; s.mu must be held.
func (s *Server) ext() *extState {
	x := &s.x
	if x.orgs == nil {
		x.orgs = map[string]*org{}
		x.members = map[int64]map[string]*membership{}
		x.apps = map[string]*OAuthApp{}
		x.codes = map[string]*authCode{}
		x.scopes = map[string][]string{}
		x.pageSize = 100
	}
	return x
}

func (s *Server) orgRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /user/teams", s.userTeams)
	mux.HandleFunc("GET /user/memberships/orgs/{org}", s.userMembership)
	mux.HandleFunc("GET /orgs/{org}/members", s.orgMembers)
	mux.HandleFunc("GET /orgs/{org}/members/{username}", s.orgMemberCheck)
	mux.HandleFunc("GET /orgs/{org}/teams", s.orgTeams)
	mux.HandleFunc("GET /orgs/{org}/teams/{slug}", s.orgTeam)
	mux.HandleFunc("GET /orgs/{org}/teams/{slug}/members", s.teamMembers)
	mux.HandleFunc("GET /orgs/{org}/teams/{slug}/memberships/{username}", s.teamMembership)
	s.oauthRoutes(mux)
}

// AddUserWithID creates a person's account with a fixed numeric ID, as
// demo users and tests that check ID binding need. It fails if the login or
// ID is taken.
func (s *Server) AddUserWithID(login string, id int64) (User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if login == "" || id <= 0 {
		return User{}, fmt.Errorf("githubtest: user needs a login and a positive ID")
	}
	if _, ok := s.users[strings.ToLower(login)]; ok {
		return User{}, fmt.Errorf("githubtest: login %q is taken", login)
	}
	if s.userByIDLocked(id) != nil {
		return User{}, fmt.Errorf("githubtest: user ID %d is taken", id)
	}
	u := &User{Login: login, ID: id, Type: "User"}
	s.users[strings.ToLower(login)] = u
	return *u, nil
}

func (s *Server) userByIDLocked(id int64) *User {
	for _, u := range s.users {
		if u.ID == id {
			return u
		}
	}
	return nil
}

// RenameUser changes the login of u, keeping its ID and tokens, as a
// GitHub rename does; the old login becomes free. It returns the renamed
// user.
func (s *Server) RenameUser(u User, login string) (User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.userByIDLocked(u.ID)
	if p == nil {
		return User{}, fmt.Errorf("githubtest: no user with ID %d", u.ID)
	}
	if o, ok := s.users[strings.ToLower(login)]; ok && o != p {
		return User{}, fmt.Errorf("githubtest: login %q is taken", login)
	}
	delete(s.users, strings.ToLower(p.Login))
	p.Login = login
	s.users[strings.ToLower(login)] = p
	return *p, nil
}

// AddOrg creates an organisation (memberships and teams create theirs on
// first use too).
func (s *Server) AddOrg(login string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.orgLocked(login)
}

func (s *Server) orgLocked(login string) *org {
	x := s.ext()
	o := x.orgs[strings.ToLower(login)]
	if o == nil {
		x.nextID++
		o = &org{login: login, id: 9000 + x.nextID, teams: map[string]*team{}}
		x.orgs[strings.ToLower(login)] = o
	}
	return o
}

func (s *Server) teamLocked(orgLogin, slug string) *team {
	o := s.orgLocked(orgLogin)
	t := o.teams[strings.ToLower(slug)]
	if t == nil {
		x := s.ext()
		x.nextID++
		t = &team{id: 7000 + x.nextID, slug: slug, name: slug}
		o.teams[strings.ToLower(slug)] = t
	}
	return t
}

// AddTeam creates team slug in org, nested under parent (a slug, created
// if needed) unless parent is empty. Members of a child team count as
// members of its parent, as on GitHub.
func (s *Server) AddTeam(org, slug, parent string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if slug == "" || strings.EqualFold(slug, parent) {
		return fmt.Errorf("githubtest: bad team %q (parent %q)", slug, parent)
	}
	t := s.teamLocked(org, slug)
	if parent != "" {
		s.teamLocked(org, parent)
		t.parent = parent
	}
	return nil
}

// SetMembership gives u membership of org in state (StateActive or
// StatePending) with the given teams, replacing any earlier membership.
// A pending member's teams are still listed by /user/teams (the
// pessimistic case a client must handle) but not by the organisation's
// team member lists.
func (s *Server) SetMembership(u User, org, state string, teams ...string) error {
	if state != StateActive && state != StatePending {
		return fmt.Errorf("githubtest: membership state %q is not active or pending", state)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.userByIDLocked(u.ID) == nil {
		return fmt.Errorf("githubtest: no user with ID %d", u.ID)
	}
	s.orgLocked(org)
	for _, t := range teams {
		s.teamLocked(org, t)
	}
	x := s.ext()
	if x.members[u.ID] == nil {
		x.members[u.ID] = map[string]*membership{}
	}
	role := "member"
	if m := x.members[u.ID][strings.ToLower(org)]; m != nil {
		role = m.role
	}
	x.members[u.ID][strings.ToLower(org)] = &membership{state: state, role: role, teams: slices.Clone(teams)}
	return nil
}

// RemoveFromOrg ends u's membership of org, and so of its teams.
func (s *Server) RemoveFromOrg(u User, org string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.ext().members[u.ID], strings.ToLower(org))
}

// AddToTeam adds u, who must have a membership of org, to team slug.
func (s *Server) AddToTeam(u User, org, slug string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.ext().members[u.ID][strings.ToLower(org)]
	if m == nil {
		return fmt.Errorf("githubtest: user %s is not in organisation %s", u.Login, org)
	}
	s.teamLocked(org, slug)
	if !slices.ContainsFunc(m.teams, func(t string) bool { return strings.EqualFold(t, slug) }) {
		m.teams = append(m.teams, slug)
	}
	return nil
}

// RemoveFromTeam removes u from team slug of org.
func (s *Server) RemoveFromTeam(u User, org, slug string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.ext().members[u.ID][strings.ToLower(org)]; m != nil {
		m.teams = slices.DeleteFunc(m.teams, func(t string) bool { return strings.EqualFold(t, slug) })
	}
}

// SetPageSize caps per_page for the organisation endpoints (GitHub's cap
// is 100); tests set it low to exercise pagination.
func (s *Server) SetPageSize(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ext().pageSize = max(1, min(n, 100))
}

// TokenWithScopes returns a new access token acting as u with the given
// OAuth scopes (tokens from Token have every scope). The organisation
// endpoints need read:org.
func (s *Server) TokenWithScopes(u User, scopes ...string) string {
	tok := s.Token(u)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ext().scopes[tok] = slices.Clone(scopes)
	return tok
}

// orgAuth authenticates the request and checks its token has read:org.
func (s *Server) orgAuth(w http.ResponseWriter, r *http.Request) (*User, bool) {
	u, ok := s.authenticated(w, r, true)
	if !ok {
		return nil, false
	}
	tok := strings.TrimSpace(r.Header.Get("Authorization")[strings.IndexByte(r.Header.Get("Authorization"), ' ')+1:])
	s.mu.Lock()
	scopes, limited := s.ext().scopes[tok]
	s.mu.Unlock()
	if limited {
		w.Header().Set("X-OAuth-Scopes", strings.Join(scopes, ", "))
		w.Header().Set("X-Accepted-OAuth-Scopes", "admin:org, read:org")
		if !slices.Contains(scopes, "read:org") && !slices.Contains(scopes, "admin:org") {
			writeError(w, http.StatusForbidden, "Missing the 'read:org' scope.")
			return nil, false
		}
	}
	return u, true
}

// activeIn reports whether user id is an active member of org; s.mu held.
func (s *Server) activeIn(id int64, orgLogin string) bool {
	m := s.ext().members[id][strings.ToLower(orgLogin)]
	return m != nil && m.state == StateActive
}

func (s *Server) userTeams(w http.ResponseWriter, r *http.Request) {
	u, ok := s.orgAuth(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	var out []map[string]any
	x := s.ext()
	orgKeys := make([]string, 0, len(x.members[u.ID]))
	for k := range x.members[u.ID] {
		orgKeys = append(orgKeys, k)
	}
	sort.Strings(orgKeys)
	for _, k := range orgKeys {
		o := x.orgs[k]
		slugs := slices.Clone(x.members[u.ID][k].teams)
		sort.Strings(slugs)
		for _, slug := range slugs {
			if t := o.teams[strings.ToLower(slug)]; t != nil {
				j := s.teamJSON(o, t)
				j["members_count"] = len(s.teamMemberIDs(o, t))
				j["repos_count"] = 0
				j["created_at"] = "2020-01-01T00:00:00Z"
				j["updated_at"] = "2020-01-01T00:00:00Z"
				j["organization"] = s.orgJSON(o)
				out = append(out, j)
			}
		}
	}
	s.mu.Unlock()
	s.writePage(w, r, out)
}

func (s *Server) userMembership(w http.ResponseWriter, r *http.Request) {
	u, ok := s.orgAuth(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.ext().orgs[strings.ToLower(r.PathValue("org"))]
	var m *membership
	if o != nil {
		m = s.ext().members[u.ID][strings.ToLower(o.login)]
	}
	if m == nil {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"url":              s.URL + "orgs/" + o.login + "/memberships/" + u.Login,
		"state":            m.state,
		"role":             m.role,
		"organization_url": s.URL + "orgs/" + o.login,
		"organization":     s.orgJSON(o),
		"user":             s.userJSON(u),
	})
}

// requestOrg resolves {org} and whether the requester is an active member.
func (s *Server) requestOrg(w http.ResponseWriter, r *http.Request) (o *org, requester *User, member, ok bool) {
	u, ok := s.orgAuth(w, r)
	if !ok {
		return nil, nil, false, false
	}
	s.mu.Lock()
	o = s.ext().orgs[strings.ToLower(r.PathValue("org"))]
	member = o != nil && s.activeIn(u.ID, o.login)
	s.mu.Unlock()
	if o == nil {
		writeError(w, http.StatusNotFound, "Not Found")
		return nil, nil, false, false
	}
	return o, u, member, true
}

func (s *Server) orgMembers(w http.ResponseWriter, r *http.Request) {
	o, _, member, ok := s.requestOrg(w, r)
	if !ok {
		return
	}
	out := []map[string]any{}
	if member { // non-members see public members only, and none are public here
		s.mu.Lock()
		for _, u := range s.sortedUsers() {
			if s.activeIn(u.ID, o.login) {
				out = append(out, s.userJSON(u))
			}
		}
		s.mu.Unlock()
	}
	s.writePage(w, r, out)
}

func (s *Server) orgMemberCheck(w http.ResponseWriter, r *http.Request) {
	o, _, member, ok := s.requestOrg(w, r)
	if !ok {
		return
	}
	if !member {
		w.Header().Set("Location", s.URL+"orgs/"+o.login+"/public_members/"+r.PathValue("username"))
		w.WriteHeader(http.StatusFound)
		return
	}
	s.mu.Lock()
	u := s.users[strings.ToLower(r.PathValue("username"))]
	yes := u != nil && s.activeIn(u.ID, o.login)
	s.mu.Unlock()
	if !yes {
		writeError(w, http.StatusNotFound, "User does not exist or is not a member of the organization")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) orgTeams(w http.ResponseWriter, r *http.Request) {
	o, _, member, ok := s.requestOrg(w, r)
	if !ok {
		return
	}
	if !member {
		writeError(w, http.StatusForbidden, "You must be a member of the organization to list its teams")
		return
	}
	s.mu.Lock()
	out := []map[string]any{}
	for _, t := range sortedTeams(o) {
		out = append(out, s.teamJSON(o, t))
	}
	s.mu.Unlock()
	s.writePage(w, r, out)
}

// teamOf resolves {slug} of an organisation the requester is a member of.
func (s *Server) teamOf(w http.ResponseWriter, r *http.Request) (*org, *team, bool) {
	o, _, member, ok := s.requestOrg(w, r)
	if !ok {
		return nil, nil, false
	}
	s.mu.Lock()
	t := o.teams[strings.ToLower(r.PathValue("slug"))]
	s.mu.Unlock()
	if t == nil || !member {
		writeError(w, http.StatusNotFound, "Not Found")
		return nil, nil, false
	}
	return o, t, true
}

func (s *Server) orgTeam(w http.ResponseWriter, r *http.Request) {
	o, t, ok := s.teamOf(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	j := s.teamJSON(o, t)
	j["organization"] = s.orgJSON(o)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, j)
}

func (s *Server) teamMembers(w http.ResponseWriter, r *http.Request) {
	o, t, ok := s.teamOf(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	ids := s.teamMemberIDs(o, t)
	out := []map[string]any{}
	for _, u := range s.sortedUsers() {
		if ids[u.ID] {
			out = append(out, s.userJSON(u))
		}
	}
	s.mu.Unlock()
	s.writePage(w, r, out)
}

func (s *Server) teamMembership(w http.ResponseWriter, r *http.Request) {
	o, t, ok := s.teamOf(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[strings.ToLower(r.PathValue("username"))]
	if u == nil {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	m := s.ext().members[u.ID][strings.ToLower(o.login)]
	if m == nil || !s.inTeamOrChild(o, m.teams, t) {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"url":   fmt.Sprintf("%sorganizations/%d/team/%d/memberships/%s", s.URL, o.id, t.id, u.Login),
		"role":  "member",
		"state": m.state,
	})
}

// teamMemberIDs returns the active members of t or of any team nested in
// it; s.mu held.
func (s *Server) teamMemberIDs(o *org, t *team) map[int64]bool {
	ids := map[int64]bool{}
	for id, ms := range s.ext().members {
		m := ms[strings.ToLower(o.login)]
		if m != nil && m.state == StateActive && s.inTeamOrChild(o, m.teams, t) {
			ids[id] = true
		}
	}
	return ids
}

// inTeamOrChild reports whether one of slugs is t or nested below it.
func (s *Server) inTeamOrChild(o *org, slugs []string, t *team) bool {
	for _, slug := range slugs {
		c := o.teams[strings.ToLower(slug)]
		for depth := 0; c != nil && depth < 20; depth++ {
			if c == t {
				return true
			}
			if c.parent == "" {
				break
			}
			c = o.teams[strings.ToLower(c.parent)]
		}
	}
	return false
}

// sortedUsers lists users by ID; s.mu held.
func (s *Server) sortedUsers() []*User {
	out := make([]*User, 0, len(s.users))
	for _, u := range s.users {
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func sortedTeams(o *org) []*team {
	out := make([]*team, 0, len(o.teams))
	for _, t := range o.teams {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].slug < out[j].slug })
	return out
}

// orgJSON is an "organization simple" object; s.mu held.
func (s *Server) orgJSON(o *org) map[string]any {
	api := s.URL + "orgs/" + o.login
	return map[string]any{
		"login":              o.login,
		"id":                 o.id,
		"node_id":            fmt.Sprintf("O_kgDO%08d", o.id),
		"url":                api,
		"repos_url":          api + "/repos",
		"events_url":         api + "/events",
		"hooks_url":          api + "/hooks",
		"issues_url":         api + "/issues",
		"members_url":        api + "/members{/member}",
		"public_members_url": api + "/public_members{/member}",
		"avatar_url":         fmt.Sprintf("%savatars/u/%d?v=4", s.webURL(), o.id),
		"description":        nil,
	}
}

// teamJSON is a "team" object, with its parent as a "team simple"; s.mu
// held.
func (s *Server) teamJSON(o *org, t *team) map[string]any {
	j := s.teamSimpleJSON(o, t)
	j["parent"] = nil
	if p := o.teams[strings.ToLower(t.parent)]; t.parent != "" && p != nil {
		j["parent"] = s.teamSimpleJSON(o, p)
	}
	return j
}

func (s *Server) teamSimpleJSON(o *org, t *team) map[string]any {
	api := fmt.Sprintf("%sorganizations/%d/team/%d", s.URL, o.id, t.id)
	return map[string]any{
		"id":                   t.id,
		"node_id":              fmt.Sprintf("T_kwDO%08d", t.id),
		"url":                  api,
		"html_url":             s.webURL() + "orgs/" + o.login + "/teams/" + t.slug,
		"name":                 t.name,
		"slug":                 t.slug,
		"description":          nil,
		"privacy":              "closed",
		"notification_setting": "notifications_enabled",
		"permission":           "pull",
		"members_url":          api + "/members{/member}",
		"repositories_url":     api + "/repos",
	}
}

// writePage answers one page of items with GitHub's pagination.
func (s *Server) writePage(w http.ResponseWriter, r *http.Request, items []map[string]any) {
	s.mu.Lock()
	limit := s.ext().pageSize
	s.mu.Unlock()
	q := r.URL.Query()
	perPage, page := min(30, limit), 1
	if v, err := strconv.Atoi(q.Get("per_page")); err == nil && v > 0 {
		perPage = min(v, limit)
	}
	if v, err := strconv.Atoi(q.Get("page")); err == nil && v > 0 {
		page = v
	}
	last := max(1, (len(items)+perPage-1)/perPage)
	start := min(len(items), (page-1)*perPage)
	end := min(len(items), start+perPage)
	var links []string
	link := func(p int, rel string) {
		u := *r.URL
		v := u.Query()
		v.Set("page", strconv.Itoa(p))
		v.Set("per_page", strconv.Itoa(perPage))
		u.RawQuery = v.Encode()
		links = append(links, fmt.Sprintf("<%s%s>; rel=%q", strings.TrimSuffix(s.URL, "/"), u.RequestURI(), rel))
	}
	if page > 1 {
		link(page-1, "prev")
	}
	if page < last {
		link(page+1, "next")
		link(last, "last")
	}
	if page > 1 {
		link(1, "first")
	}
	if links != nil {
		w.Header().Set("Link", strings.Join(links, ", "))
	}
	out := items[start:end]
	if out == nil {
		out = []map[string]any{}
	}
	writeJSON(w, http.StatusOK, out)
}
