package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-github/v57/github"
)

// maxCommentBody keeps a comment under GitHub's 65,536-character limit with
// room for the truncation note.
const maxCommentBody = 60000

func runPolicyComment(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("policy comment", "OLD NEW", `
Post the access diff from OLD to NEW (as "policy diff --format markdown"
prints it) as a comment on a pull request. Later runs edit that same comment
instead of adding another: it is found by a hidden marker and its author.
When OLD or NEW is invalid, the comment lists the errors instead and the
command exits 1 after posting it.

In GitHub Actions, give the workflow "pull-requests: write" permission and
pass the job's token on standard input:
  echo "$GITHUB_TOKEN" | sallyport policy comment --repo "$GITHUB_REPOSITORY" \
    --pr "$PR_NUMBER" --token-file /dev/stdin old.yaml policy.yaml`, stderr)
	repo := fs.String("repo", "", "the pull request's repository as `OWNER/NAME` (required)")
	pr := fs.Int("pr", 0, "the pull request `number` (required)")
	tokenFile := fs.String("token-file", "", "read the GitHub token from this `file`; /dev/stdin reads standard input (required; the token is never taken from a flag, where other users could see it)")
	apiURL := fs.String("github-api-url", "https://api.github.com/", "GitHub REST API base `URL`; for GitHub Enterprise Server use https://HOST/api/v3/")
	author := fs.String("author", "github-actions[bot]", "`login` the token posts as; only a comment by this login is edited, so nobody else's comment carrying the marker is taken over")
	marker := fs.String("marker", "", "`name` to tell several policy comments on one pull request apart (letters, digits, '.', '_', '-'); empty for one per pull request")
	members := fs.String("members", "", "YAML `file` mapping team slugs to logins, for a per-person diff (see policy diff)")
	timeout := fs.Duration("timeout", time.Minute, "give up on GitHub after this `duration`")
	files, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	owner, name, ok := strings.Cut(*repo, "/")
	switch {
	case len(files) != 2:
		fs.Usage()
		return fmt.Errorf("policy comment: name two policy files, OLD and NEW")
	case !ok || owner == "" || name == "" || strings.Contains(name, "/"):
		return fmt.Errorf("--repo %q: want OWNER/NAME", *repo)
	case *pr <= 0:
		return fmt.Errorf("--pr: give the pull request number")
	case *tokenFile == "":
		return fmt.Errorf("--token-file: give the file holding the GitHub token")
	case !markerName.MatchString(*marker):
		return fmt.Errorf("--marker %q: use letters, digits, '.', '_' and '-'", *marker)
	}
	base, err := url.Parse(*apiURL)
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return fmt.Errorf("--github-api-url %q: want an http(s) URL", *apiURL)
	}
	if !strings.HasSuffix(base.Path, "/") {
		base.Path += "/"
	}
	tokenData, err := os.ReadFile(*tokenFile)
	if err != nil {
		return fmt.Errorf("--token-file: %w", err)
	}
	token := strings.TrimSpace(string(tokenData))
	if token == "" {
		return fmt.Errorf("--token-file %s is empty", *tokenFile)
	}

	// Compute the body first: a broken policy still gets a comment, so the
	// author sees why on the pull request.
	var diags bytes.Buffer
	var body strings.Builder
	tag := "<!-- sallyport-policy-diff -->"
	if *marker != "" {
		tag = fmt.Sprintf("<!-- sallyport-policy-diff:%s -->", *marker)
	}
	body.WriteString(tag + "\n")
	d, diffErr := computeDiff(files[0], files[1], *members, io.MultiWriter(stderr, &diags))
	var ec exitCode
	switch {
	case errors.As(diffErr, &ec):
		fmt.Fprintf(&body, "### Access changes\n\nThe policy is invalid, so access cannot be compared. `sallyport policy check` reports:\n\n```\n%s```\n", strings.ReplaceAll(diags.String(), "```", "'''"))
	case diffErr != nil:
		return diffErr
	default:
		var md bytes.Buffer
		if err := d.WriteMarkdown(&md); err != nil {
			return err
		}
		body.Write(md.Bytes())
	}
	text := body.String()
	if len(text) > maxCommentBody {
		cut := strings.LastIndexByte(text[:maxCommentBody], '\n')
		text = text[:cut+1] + "\n_The diff is too long for a comment and was cut here; run `sallyport policy diff` for all of it._\n"
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	client := github.NewClient(nil).WithAuthToken(token)
	client.BaseURL = base
	url, action, err := upsertComment(ctx, client, owner, name, *pr, *author, tag, text)
	if err != nil {
		return fmt.Errorf("policy comment: %w", err)
	}
	fmt.Fprintf(stdout, "%s %s\n", action, url)
	return diffErr
}

var markerName = regexp.MustCompile(`^[A-Za-z0-9._-]*$`)

// upsertComment edits the comment by author that carries tag, or creates
// one. It returns the comment's URL and what was done.
func upsertComment(ctx context.Context, client *github.Client, owner, repo string, pr int, author, tag, body string) (string, string, error) {
	opts := &github.IssueListCommentsOptions{ListOptions: github.ListOptions{PerPage: 100}}
	var existing *github.IssueComment
	for existing == nil {
		page, resp, err := client.Issues.ListComments(ctx, owner, repo, pr, opts)
		if err != nil {
			return "", "", fmt.Errorf("listing comments on %s/%s#%d: %w", owner, repo, pr, err)
		}
		for _, c := range page {
			if strings.EqualFold(c.GetUser().GetLogin(), author) && hasTag(c.GetBody(), tag) {
				existing = c
				break
			}
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	if existing == nil {
		c, _, err := client.Issues.CreateComment(ctx, owner, repo, pr, &github.IssueComment{Body: github.String(body)})
		if err != nil {
			return "", "", fmt.Errorf("commenting on %s/%s#%d: %w", owner, repo, pr, err)
		}
		return c.GetHTMLURL(), "created", nil
	}
	if existing.GetBody() == body {
		return existing.GetHTMLURL(), "unchanged", nil
	}
	c, _, err := client.Issues.EditComment(ctx, owner, repo, existing.GetID(), &github.IssueComment{Body: github.String(body)})
	if err != nil {
		return "", "", fmt.Errorf("editing comment %d on %s/%s#%d: %w", existing.GetID(), owner, repo, pr, err)
	}
	return c.GetHTMLURL(), "updated", nil
}

// hasTag reports whether the comment body starts with tag on its own line,
// so that "<!-- sallyport-policy-diff -->" does not match the tag of a
// named marker, nor a tag quoted later in someone's text.
func hasTag(body, tag string) bool {
	first, _, _ := strings.Cut(body, "\n")
	return strings.TrimSpace(first) == tag
}
