package githubtest

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-github/v57/github"
)

func client(t *testing.T, s *Server, token string) *github.Client {
	t.Helper()
	c := github.NewClient(s.Client())
	if token != "" {
		c = c.WithAuthToken(token)
	}
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	c.BaseURL = u
	return c
}

func TestAuthenticatedUser(t *testing.T) {
	s := New(t)
	alice := s.AddUser("alice")
	u, _, err := client(t, s, s.Token(alice)).Users.Get(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if u.GetLogin() != "alice" || u.GetID() != alice.ID || u.GetType() != "User" {
		t.Errorf("got %s %d %s; want alice %d User", u.GetLogin(), u.GetID(), u.GetType(), alice.ID)
	}
	_, _, err = client(t, s, "nope").Users.Get(context.Background(), "")
	var ge *github.ErrorResponse
	if !errors.As(err, &ge) || ge.Response.StatusCode != http.StatusUnauthorized || ge.Message != "Bad credentials" {
		t.Errorf("bad token: got %v; want 401 Bad credentials", err)
	}
	_, _, err = client(t, s, "").Users.Get(context.Background(), "")
	if !errors.As(err, &ge) || ge.Message != "Requires authentication" {
		t.Errorf("no token: got %v; want 401 Requires authentication", err)
	}
}

func TestIssueComments(t *testing.T) {
	ctx := context.Background()
	s := New(t)
	bot := s.AddBot("github-actions[bot]")
	other := s.AddUser("mallory")
	s.AddPullRequest("Example-OSS/access", 7)
	c := client(t, s, s.Token(bot))

	for i := 0; i < 45; i++ {
		s.AddComment("example-oss/access", 7, other, "hello")
	}
	// Pagination follows the Link header, as go-github reads it.
	var all []*github.IssueComment
	opts := &github.IssueListCommentsOptions{ListOptions: github.ListOptions{PerPage: 20}}
	pages := 0
	for {
		page, resp, err := c.Issues.ListComments(ctx, "example-oss", "access", 7, opts)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		all = append(all, page...)
		if resp.NextPage == 0 {
			if resp.PrevPage != 2 || resp.FirstPage != 1 {
				t.Errorf("last page links: prev %d first %d; want 2 and 1", resp.PrevPage, resp.FirstPage)
			}
			break
		}
		if resp.LastPage != 3 {
			t.Errorf("LastPage = %d; want 3", resp.LastPage)
		}
		opts.Page = resp.NextPage
	}
	if len(all) != 45 || pages != 3 {
		t.Fatalf("listed %d comments in %d pages; want 45 in 3", len(all), pages)
	}

	made, resp, err := c.Issues.CreateComment(ctx, "example-oss", "access", 7, &github.IssueComment{Body: github.String("first")})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusCreated || made.GetUser().GetLogin() != bot.Login || made.GetUser().GetType() != "Bot" ||
		!strings.HasSuffix(made.GetHTMLURL(), "/Example-OSS/access/pull/7#issuecomment-"+strconv.FormatInt(made.GetID(), 10)) || made.GetCreatedAt().IsZero() {
		t.Errorf("created %+v (status %d)", made, resp.StatusCode)
	}
	edited, _, err := c.Issues.EditComment(ctx, "example-oss", "access", made.GetID(), &github.IssueComment{Body: github.String("second")})
	if err != nil {
		t.Fatal(err)
	}
	if edited.GetBody() != "second" || !edited.GetUpdatedAt().After(edited.GetCreatedAt().Time) {
		t.Errorf("edited %+v", edited)
	}
	got, _, err := c.Issues.GetComment(ctx, "example-oss", "access", made.GetID())
	if err != nil || got.GetBody() != "second" {
		t.Errorf("get: %v %v", got, err)
	}

	statusOf := func(err error) int {
		var ge *github.ErrorResponse
		if errors.As(err, &ge) {
			return ge.Response.StatusCode
		}
		return 0
	}
	tests := []struct {
		name string
		call func() error
		want int
	}{
		{"fail/edit-someone-elses", func() error {
			_, _, err := c.Issues.EditComment(ctx, "example-oss", "access", all[0].GetID(), &github.IssueComment{Body: github.String("x")})
			return err
		}, http.StatusForbidden},
		{"fail/empty-body", func() error {
			_, _, err := c.Issues.CreateComment(ctx, "example-oss", "access", 7, &github.IssueComment{Body: github.String("")})
			return err
		}, http.StatusUnprocessableEntity},
		{"fail/too-long", func() error {
			_, _, err := c.Issues.CreateComment(ctx, "example-oss", "access", 7, &github.IssueComment{Body: github.String(strings.Repeat("x", MaxCommentLength+1))})
			return err
		}, http.StatusUnprocessableEntity},
		{"fail/unknown-repo", func() error {
			_, _, err := c.Issues.ListComments(ctx, "example-oss", "nothing", 7, nil)
			return err
		}, http.StatusNotFound},
		{"fail/unknown-pr", func() error {
			_, _, err := c.Issues.CreateComment(ctx, "example-oss", "access", 8, &github.IssueComment{Body: github.String("x")})
			return err
		}, http.StatusNotFound},
		{"fail/comment-of-other-repo", func() error {
			s.AddRepo("example-oss/other")
			_, _, err := c.Issues.GetComment(ctx, "example-oss", "other", made.GetID())
			return err
		}, http.StatusNotFound},
		{"fail/anonymous-create", func() error {
			_, _, err := client(t, s, "").Issues.CreateComment(ctx, "example-oss", "access", 7, &github.IssueComment{Body: github.String("x")})
			return err
		}, http.StatusUnauthorized},
		{"ok/delete-own", func() error {
			_, err := c.Issues.DeleteComment(ctx, "example-oss", "access", made.GetID())
			return err
		}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := statusOf(tc.call()); got != tc.want {
				t.Errorf("got status %d; want %d", got, tc.want)
			}
		})
	}
	if n := len(s.Comments("example-oss/access", 7)); n != 45 {
		t.Errorf("%d comments left; want 45", n)
	}
	if reqs := s.Requests(); len(reqs) == 0 || !strings.HasPrefix(reqs[0], "GET /repos/example-oss/access/issues/7/comments?") {
		t.Errorf("requests log starts %v", reqs[:min(1, len(reqs))])
	}
}
