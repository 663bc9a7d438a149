package githubtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxCommentLength is GitHub's limit on a comment body, in characters.
const MaxCommentLength = 65536

// AddComment stores a comment by author, as if posted on GitHub, and
// returns it. The repository and issue must exist.
func (s *Server) AddComment(fullName string, number int, author User, body string) Comment {
	s.mu.Lock()
	defer s.mu.Unlock()
	rp := s.repos[strings.ToLower(fullName)]
	if rp == nil {
		panic("githubtest: AddComment on unknown repository " + fullName)
	}
	return *s.storeComment(rp, number, author, body)
}

// storeComment must be called with s.mu held.
func (s *Server) storeComment(rp *repo, number int, author User, body string) *Comment {
	s.nextID++
	now := s.now()
	c := &Comment{ID: 2000000 + s.nextID, Repo: rp.fullName, Issue: number, Body: body, User: author, CreatedAt: now, UpdatedAt: now}
	s.comments[c.ID] = c
	return c
}

// Comments lists the comments on an issue or pull request, oldest first.
func (s *Server) Comments(fullName string, number int) []Comment {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commentsLocked(fullName, number)
}

func (s *Server) commentsLocked(fullName string, number int) []Comment {
	var out []Comment
	for _, c := range s.comments {
		if strings.EqualFold(c.Repo, fullName) && c.Issue == number {
			out = append(out, *c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (s *Server) commentJSON(c *Comment) map[string]any {
	s.mu.Lock()
	u := s.users[strings.ToLower(c.User.Login)]
	kind := "issues"
	if rp := s.repos[strings.ToLower(c.Repo)]; rp != nil && rp.issues[c.Issue] {
		kind = "pull"
	}
	s.mu.Unlock()
	if u == nil {
		u = &c.User
	}
	association := "NONE"
	if owner, _, _ := strings.Cut(c.Repo, "/"); strings.EqualFold(owner, c.User.Login) {
		association = "OWNER"
	}
	return map[string]any{
		"id":                       c.ID,
		"node_id":                  fmt.Sprintf("IC_kwDO%010d", c.ID),
		"url":                      fmt.Sprintf("%srepos/%s/issues/comments/%d", s.URL, c.Repo, c.ID),
		"html_url":                 fmt.Sprintf("%s%s/%s/%d#issuecomment-%d", s.webURL(), c.Repo, kind, c.Issue, c.ID),
		"issue_url":                fmt.Sprintf("%srepos/%s/issues/%d", s.URL, c.Repo, c.Issue),
		"body":                     c.Body,
		"user":                     s.userJSON(u),
		"created_at":               c.CreatedAt.UTC().Format(time.RFC3339),
		"updated_at":               c.UpdatedAt.UTC().Format(time.RFC3339),
		"author_association":       association,
		"performed_via_github_app": nil,
		"reactions": map[string]any{
			"url": fmt.Sprintf("%srepos/%s/issues/comments/%d/reactions", s.URL, c.Repo, c.ID), "total_count": 0,
			"+1": 0, "-1": 0, "laugh": 0, "hooray": 0, "confused": 0, "heart": 0, "rocket": 0, "eyes": 0,
		},
	}
}

// issueComments serves
//
//	GET    /repos/{owner}/{repo}/issues/{number}/comments
//	POST   /repos/{owner}/{repo}/issues/{number}/comments
//	GET    /repos/{owner}/{repo}/issues/comments/{id}
//	PATCH  /repos/{owner}/{repo}/issues/comments/{id}
//	DELETE /repos/{owner}/{repo}/issues/comments/{id}
func (s *Server) issueComments(w http.ResponseWriter, r *http.Request) {
	a, b := r.PathValue("a"), r.PathValue("b")
	switch {
	case a == "comments":
		r.SetPathValue("id", b)
		switch r.Method {
		case http.MethodGet:
			s.getComment(w, r)
		case http.MethodPatch:
			s.editComment(w, r)
		case http.MethodDelete:
			s.deleteComment(w, r)
		default:
			writeError(w, http.StatusNotFound, "Not Found")
		}
	case b == "comments":
		r.SetPathValue("number", a)
		switch r.Method {
		case http.MethodGet:
			s.listComments(w, r)
		case http.MethodPost:
			s.createComment(w, r)
		default:
			writeError(w, http.StatusNotFound, "Not Found")
		}
	default:
		writeError(w, http.StatusNotFound, "Not Found")
	}
}

// repoAndIssue resolves {owner}/{repo} and {number}, answering 404 as
// GitHub does when either does not exist.
func (s *Server) repoAndIssue(w http.ResponseWriter, r *http.Request) (*repo, int, bool) {
	s.mu.Lock()
	rp := s.repos[strings.ToLower(r.PathValue("owner")+"/"+r.PathValue("repo"))]
	s.mu.Unlock()
	if rp == nil {
		writeError(w, http.StatusNotFound, "Not Found")
		return nil, 0, false
	}
	n, err := strconv.Atoi(r.PathValue("number"))
	if err != nil {
		writeError(w, http.StatusNotFound, "Not Found")
		return nil, 0, false
	}
	s.mu.Lock()
	_, exists := rp.issues[n]
	s.mu.Unlock()
	if !exists {
		writeError(w, http.StatusNotFound, "Not Found")
		return nil, 0, false
	}
	return rp, n, true
}

// listComments serves GET /repos/{owner}/{repo}/issues/{number}/comments
// with GitHub's page/per_page pagination and Link header.
func (s *Server) listComments(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.authenticated(w, r, false); !ok {
		return
	}
	rp, n, ok := s.repoAndIssue(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	all := s.commentsLocked(rp.fullName, n)
	s.mu.Unlock()
	items := make([]map[string]any, 0, len(all))
	for i := range all {
		items = append(items, s.commentJSON(&all[i]))
	}
	s.writePage(w, r, items)
}

// commentBody decodes {"body": "..."} and checks it as GitHub does.
func commentBody(w http.ResponseWriter, r *http.Request) (string, bool) {
	var req struct {
		Body *string `json:"body"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "Problems parsing JSON")
		return "", false
	}
	if req.Body == nil || *req.Body == "" {
		writeError(w, http.StatusUnprocessableEntity, "Validation Failed",
			fieldError{Resource: "IssueComment", Code: "missing_field", Field: "body"})
		return "", false
	}
	if utf8.RuneCountInString(*req.Body) > MaxCommentLength {
		writeError(w, http.StatusUnprocessableEntity, "Validation Failed",
			fieldError{Resource: "IssueComment", Code: "custom", Field: "body", Message: fmt.Sprintf("body is too long (maximum is %d characters)", MaxCommentLength)})
		return "", false
	}
	return *req.Body, true
}

func (s *Server) createComment(w http.ResponseWriter, r *http.Request) {
	u, ok := s.authenticated(w, r, true)
	if !ok {
		return
	}
	rp, n, ok := s.repoAndIssue(w, r)
	if !ok {
		return
	}
	body, ok := commentBody(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	c := s.storeComment(rp, n, *u, body)
	s.mu.Unlock()
	w.Header().Set("Location", fmt.Sprintf("%srepos/%s/issues/comments/%d", s.URL, rp.fullName, c.ID))
	writeJSON(w, http.StatusCreated, s.commentJSON(c))
}

// comment resolves {owner}/{repo} and {id}; GitHub answers 404 for a
// comment that is not in that repository.
func (s *Server) comment(w http.ResponseWriter, r *http.Request) (*Comment, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	s.mu.Lock()
	c := s.comments[id]
	s.mu.Unlock()
	if err != nil || c == nil || !strings.EqualFold(c.Repo, r.PathValue("owner")+"/"+r.PathValue("repo")) {
		writeError(w, http.StatusNotFound, "Not Found")
		return nil, false
	}
	return c, true
}

func (s *Server) getComment(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.authenticated(w, r, false); !ok {
		return
	}
	if c, ok := s.comment(w, r); ok {
		writeJSON(w, http.StatusOK, s.commentJSON(c))
	}
}

// editComment lets only the comment's author edit it. (On GitHub,
// collaborators with write access may edit others' comments too; the
// stand-in is stricter so tests notice a bot editing a comment it did not
// write.)
func (s *Server) editComment(w http.ResponseWriter, r *http.Request) {
	u, ok := s.authenticated(w, r, true)
	if !ok {
		return
	}
	c, ok := s.comment(w, r)
	if !ok {
		return
	}
	if c.User.ID != u.ID {
		writeError(w, http.StatusForbidden, "You must have write access to this repository to edit this comment.")
		return
	}
	body, ok := commentBody(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	c.Body = body
	c.UpdatedAt = s.now()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, s.commentJSON(c))
}

func (s *Server) deleteComment(w http.ResponseWriter, r *http.Request) {
	u, ok := s.authenticated(w, r, true)
	if !ok {
		return
	}
	c, ok := s.comment(w, r)
	if !ok {
		return
	}
	if c.User.ID != u.ID {
		writeError(w, http.StatusForbidden, "Resource not accessible by integration")
		return
	}
	s.mu.Lock()
	delete(s.comments, c.ID)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}
