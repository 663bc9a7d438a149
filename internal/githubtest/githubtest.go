// Package githubtest plays GitHub in tests: an httptest server that speaks
// the same REST endpoints and JSON as api.github.com, backed by in-memory
// state that tests set up and inspect. GitHub itself cannot be reached from
// tests, so code that talks to it (through go-github or plain HTTP) is
// pointed at Server.URL instead.
//
// Served today: GET /user, and issue comments (list with pagination,
// create, get, edit, delete) as pull request bots use them. The server is
// meant to grow: each GitHub area lives in its own file and registers its
// routes in routes(), sharing users, tokens, repositories and the error
// format defined here.
package githubtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Server is a running GitHub stand-in. Its methods are safe for concurrent
// use with the requests it serves.
type Server struct {
	// URL is the REST API base URL with a trailing slash, as go-github's
	// Client.BaseURL wants it, e.g. "http://127.0.0.1:41234/".
	URL string

	srv *httptest.Server

	mu       sync.Mutex
	now      func() time.Time
	nextID   int64
	users    map[string]*User // by lower-case login
	tokens   map[string]*User
	repos    map[string]*repo // by lower-case "owner/name"
	comments map[int64]*Comment
	requests []string

	// x holds organisations, teams, OAuth apps and faults (orgs.go,
	// oauth.go, faults.go).
	x extState
}

// User is a GitHub account: a person ("User") or an app's bot ("Bot").
type User struct {
	Login string
	ID    int64
	Type  string
}

// Comment is an issue or pull request comment as the server stores it.
type Comment struct {
	ID        int64
	Repo      string // "owner/name" as added
	Issue     int
	Body      string
	User      User
	CreatedAt time.Time
	UpdatedAt time.Time
}

type repo struct {
	fullName string
	issues   map[int]bool // number -> is a pull request
}

// New starts a server and stops it when the test ends. Its clock starts at
// 2024-01-02T03:04:05Z and advances one second per write, so timestamps are
// deterministic; SetClock replaces it.
func New(t TB) *Server {
	t.Helper()
	s := &Server{
		users:    map[string]*User{},
		tokens:   map[string]*User{},
		repos:    map[string]*repo{},
		comments: map[int64]*Comment{},
	}
	clock := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	s.now = func() time.Time {
		clock = clock.Add(time.Second)
		return clock
	}
	mux := http.NewServeMux()
	s.routes(mux)
	s.srv = httptest.NewServer(s.logged(mux))
	s.URL = s.srv.URL + "/"
	t.Cleanup(s.srv.Close)
	return s
}

func (s *Server) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /user", s.getAuthenticatedUser)
	s.orgRoutes(mux)
	// "issues/{number}/comments" and "issues/comments/{id}" overlap as
	// ServeMux patterns, so one route dispatches both.
	mux.HandleFunc("/repos/{owner}/{repo}/issues/{a}/{b}", s.issueComments)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "Not Found")
	})
}

// SetClock makes now the source of timestamps for later writes.
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// Client returns a new HTTP client for the server. Each call returns a
// distinct client because go-github's Client.WithAuthToken (v57) installs
// its token in the *http.Client it was given, so two go-github clients
// sharing one *http.Client would share a token.
func (s *Server) Client() *http.Client {
	return &http.Client{Transport: s.srv.Client().Transport}
}

// AddUser creates a person's account and returns it.
func (s *Server) AddUser(login string) User { return s.addAccount(login, "User") }

// AddBot creates a bot account such as "github-actions[bot]".
func (s *Server) AddBot(login string) User { return s.addAccount(login, "Bot") }

func (s *Server) addAccount(login, typ string) User {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.users[strings.ToLower(login)]; ok {
		return *u
	}
	s.nextID++
	u := &User{Login: login, ID: 1000 + s.nextID, Type: typ}
	s.users[strings.ToLower(login)] = u
	return *u
}

// Token returns a new access token acting as u, which must have been added.
func (s *Server) Token(u User) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	tok := fmt.Sprintf("ghs_test%d%s", s.nextID, strings.Repeat("x", 20))
	s.tokens[tok] = s.users[strings.ToLower(u.Login)]
	return tok
}

// AddRepo creates a public repository "owner/name".
func (s *Server) AddRepo(fullName string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.repos[strings.ToLower(fullName)]; !ok {
		s.repos[strings.ToLower(fullName)] = &repo{fullName: fullName, issues: map[int]bool{}}
	}
}

// AddPullRequest creates pull request number in repository fullName,
// adding the repository if needed. Pull requests share the issue number
// space and their comments are issue comments, as on GitHub.
func (s *Server) AddPullRequest(fullName string, number int) {
	s.AddRepo(fullName)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repos[strings.ToLower(fullName)].issues[number] = true
}

// AddIssue creates issue number in repository fullName.
func (s *Server) AddIssue(fullName string, number int) {
	s.AddRepo(fullName)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repos[strings.ToLower(fullName)].issues[number] = false
}

// Requests lists the requests served so far as "METHOD /path?query".
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

func (s *Server) logged(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, r.Method+" "+r.URL.RequestURI())
		s.mu.Unlock()
		h := w.Header()
		h.Set("X-GitHub-Media-Type", "github.v3; format=json")
		h.Set("X-GitHub-Api-Version-Selected", "2022-11-28")
		h.Set("X-RateLimit-Limit", "5000")
		h.Set("X-RateLimit-Remaining", "4999")
		h.Set("X-RateLimit-Reset", strconv.FormatInt(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), 10))
		h.Set("X-RateLimit-Used", "1")
		h.Set("X-RateLimit-Resource", "core")
		if s.fault(w, r) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authenticated returns the user the request's token acts as. With
// required, a request without a valid token is answered with 401 as GitHub
// does, and ok is false.
func (s *Server) authenticated(w http.ResponseWriter, r *http.Request, required bool) (u *User, ok bool) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		if required {
			writeError(w, http.StatusUnauthorized, "Requires authentication")
			return nil, false
		}
		return nil, true
	}
	scheme, tok, _ := strings.Cut(auth, " ")
	if !strings.EqualFold(scheme, "bearer") && !strings.EqualFold(scheme, "token") {
		writeError(w, http.StatusUnauthorized, "Bad credentials")
		return nil, false
	}
	s.mu.Lock()
	u = s.tokens[strings.TrimSpace(tok)]
	s.mu.Unlock()
	if u == nil {
		writeError(w, http.StatusUnauthorized, "Bad credentials")
		return nil, false
	}
	return u, true
}

func (s *Server) getAuthenticatedUser(w http.ResponseWriter, r *http.Request) {
	u, ok := s.authenticated(w, r, true)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.userJSON(u))
}

// userJSON is a "simple user" object as GitHub embeds it in other objects.
func (s *Server) userJSON(u *User) map[string]any {
	web := s.webURL()
	return map[string]any{
		"login":               u.Login,
		"id":                  u.ID,
		"node_id":             fmt.Sprintf("U_kgDO%08d", u.ID),
		"avatar_url":          fmt.Sprintf("%savatars/u/%d?v=4", web, u.ID),
		"gravatar_id":         "",
		"url":                 s.URL + "users/" + u.Login,
		"html_url":            web + u.Login,
		"type":                u.Type,
		"site_admin":          false,
		"user_view_type":      "public",
		"followers_url":       s.URL + "users/" + u.Login + "/followers",
		"organizations_url":   s.URL + "users/" + u.Login + "/orgs",
		"repos_url":           s.URL + "users/" + u.Login + "/repos",
		"received_events_url": s.URL + "users/" + u.Login + "/received_events",
	}
}

// webURL stands in for https://github.com/ in html_url fields.
func (s *Server) webURL() string { return s.URL + "web/" }

// errorBody is GitHub's error response.
type errorBody struct {
	Message          string       `json:"message"`
	Errors           []fieldError `json:"errors,omitempty"`
	DocumentationURL string       `json:"documentation_url"`
	Status           string       `json:"status"`
}

type fieldError struct {
	Resource string `json:"resource"`
	Code     string `json:"code"`
	Field    string `json:"field"`
	Message  string `json:"message,omitempty"`
}

func writeError(w http.ResponseWriter, status int, message string, errs ...fieldError) {
	writeJSON(w, status, errorBody{Message: message, Errors: errs, DocumentationURL: "https://docs.github.com/rest", Status: strconv.Itoa(status)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
