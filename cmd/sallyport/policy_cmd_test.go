package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sallyport/sallyport/internal/githubtest"

	"github.com/sallyport/sallyport/internal/golden"
)

const (
	policyFile  = "testdata/policy/policy.yaml"
	newFile     = "testdata/policy/new.yaml"
	membersFile = "testdata/policy/members.yaml"
	badFile     = "testdata/policy/bad.yaml"
	moreTests   = "testdata/policy/more-tests.yaml"
)

// cliCase runs the CLI and compares stdout with a golden file and the exit
// status with want (0 for success).
type cliCase struct {
	name   string
	args   []string
	want   int    // exit status
	stderr string // substring expected in stderr or the error
}

func runCases(t *testing.T, cases []cliCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := tryCLI(t, tc.args...)
			status := 0
			var ec exitCode
			switch {
			case errors.As(err, &ec):
				status = int(ec)
			case err != nil:
				status = 1
				stderr += err.Error()
			}
			if status != tc.want {
				t.Errorf("sallyport %s: got exit status %d; want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(tc.args, " "), status, tc.want, stdout, stderr)
			}
			if !strings.Contains(stderr, tc.stderr) {
				t.Errorf("got stderr %q; want it to contain %q", stderr, tc.stderr)
			}
			golden.Check(t, filepath.Join("policy", "golden", strings.ReplaceAll(tc.name, "/", "-")+".out"), []byte(stdout))
		})
	}
}

func TestPolicyHelp(t *testing.T) {
	for _, sub := range []string{"check", "test", "explain", "diff", "comment"} {
		t.Run("ok/"+sub, func(t *testing.T) {
			stdout, _, err := tryCLI(t, "policy", sub, "--help")
			if err != nil {
				t.Errorf("err = %v; want nil", err)
			}
			if !strings.Contains(stdout, "Usage: sallyport policy "+sub) || !strings.Contains(stdout, "Flags:") {
				t.Errorf("usage does not explain the command:\n%s", stdout)
			}
		})
	}
	out := runCLI(t, "policy", "--help")
	for _, sub := range []string{"check", "test", "explain", "diff", "comment"} {
		if !strings.Contains(out, sub) {
			t.Errorf("policy --help does not list %s", sub)
		}
	}
}

func TestPolicyCheck(t *testing.T) {
	runCases(t, []cliCase{
		{name: "ok/check-example", args: []string{"policy", "check", policyFile}},
		{name: "ok/check-example-json", args: []string{"policy", "check", "--format", "json", policyFile}},
		{name: "fail/check-text", args: []string{"policy", "check", badFile, policyFile}, want: 1},
		{name: "fail/check-json", args: []string{"policy", "check", "--format", "json", badFile}, want: 1},
		{name: "fail/check-github", args: []string{"policy", "check", badFile, "--format", "github"}, want: 1},
		{name: "fail/check-missing-file", args: []string{"policy", "check", "testdata/policy/nonexistent.yaml"}, want: 1},
		{name: "fail/check-no-file", args: []string{"policy", "check"}, want: 1, stderr: "name at least one policy file"},
		{name: "fail/check-bad-format", args: []string{"policy", "check", "--format", "xml", policyFile}, want: 1, stderr: `--format "xml"`},
	})
}

func TestGitHubAnnotationEscaping(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a,b:c.yaml")
	if err := os.WriteFile(path, []byte("version: 1\nfoo%: \"x\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, _, _ := tryCLI(t, "policy", "check", "--format", "github", path)
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		if !strings.HasPrefix(line, "::error file=") {
			t.Errorf("not an annotation: %q", line)
		}
		if strings.Contains(line, "a,b:c") || strings.Contains(line, `"foo%"`) {
			t.Errorf("unescaped annotation: %q", line)
		}
	}
	if !strings.Contains(stdout, "a%2Cb%3Ac.yaml") || !strings.Contains(stdout, "foo%25") {
		t.Errorf("annotations not escaped as GitHub expects:\n%s", stdout)
	}
}

func TestPolicyTestCommand(t *testing.T) {
	runCases(t, []cliCase{
		{name: "ok/test-example", args: []string{"policy", "test", policyFile}},
		{name: "ok/test-verbose-run", args: []string{"policy", "test", "-v", "--run", "website", policyFile}},
		{name: "ok/test-no-match", args: []string{"policy", "test", "--run", "^nothing$", policyFile}},
		{name: "fail/test-beside", args: []string{"policy", "test", policyFile, "--tests", moreTests}, want: 1},
		{name: "fail/test-beside-json", args: []string{"policy", "test", "--format", "json", "--tests", moreTests, "--run", "not root", policyFile}, want: 1},
		{name: "fail/test-invalid-policy", args: []string{"policy", "test", badFile}, want: 1, stderr: "bad.yaml:19:24: role \"ops\": CIDR"},
		{name: "fail/test-bad-regexp", args: []string{"policy", "test", "--run", "(", policyFile}, want: 1, stderr: "--run"},
	})
}

func TestPolicyExplainCommand(t *testing.T) {
	runCases(t, []cliCase{
		{name: "ok/explain-user", args: []string{"policy", "explain", policyFile, "--user", "carol", "--team", "infra", "--team", "website", "--request", "deploy@web1", "--request", "readonly@db1"}},
		{name: "ok/explain-user-json", args: []string{"policy", "explain", policyFile, "--user", "data-volunteer", "--request", "readonly@db1", "--format", "json"}},
		{name: "ok/explain-ci", args: []string{"policy", "explain", policyFile, "--ci", "repository=example-oss/website,ref=refs/heads/main,environment=production", "--request", "deploy@db1"}},
		{name: "fail/explain-no-identity", args: []string{"policy", "explain", policyFile}, want: 1, stderr: "give --user"},
		{name: "fail/explain-user-and-ci", args: []string{"policy", "explain", policyFile, "--user", "a", "--ci", "repository=a/b,ref=refs/heads/main"}, want: 1, stderr: "cannot be combined"},
		{name: "fail/explain-bad-ci", args: []string{"policy", "explain", policyFile, "--ci", "repo=a/b"}, want: 1, stderr: `unknown claim "repo"`},
		{name: "fail/explain-bad-request", args: []string{"policy", "explain", policyFile, "--user", "a", "--request", "web1"}, want: 1, stderr: "not principal@host"},
	})
}

func TestPolicyDiffCommand(t *testing.T) {
	runCases(t, []cliCase{
		{name: "ok/diff-text", args: []string{"policy", "diff", policyFile, newFile}},
		{name: "ok/diff-markdown", args: []string{"policy", "diff", "--format", "markdown", policyFile, newFile}},
		{name: "ok/diff-json", args: []string{"policy", "diff", "--format", "json", policyFile, newFile}},
		{name: "ok/diff-members", args: []string{"policy", "diff", "--members", membersFile, policyFile, newFile}},
		{name: "ok/diff-none", args: []string{"policy", "diff", policyFile, policyFile}},
		{name: "ok/diff-none-markdown", args: []string{"policy", "diff", "--format", "markdown", "--exit-code", policyFile, policyFile}},
		{name: "fail/diff-exit-code", args: []string{"policy", "diff", "--exit-code", policyFile, newFile}, want: 1},
		{name: "fail/diff-invalid", args: []string{"policy", "diff", policyFile, badFile}, want: 1, stderr: "bad.yaml:19:24"},
		{name: "fail/diff-one-file", args: []string{"policy", "diff", policyFile}, want: 1, stderr: "OLD and NEW"},
	})
}

// TestPolicyComment posts the diff to the GitHub stand-in as go-github
// would to GitHub: the first run creates the comment, later runs edit it.
func TestPolicyComment(t *testing.T) {
	gh := githubtest.New(t)
	bot := gh.AddBot("github-actions[bot]")
	mallory := gh.AddUser("mallory")
	gh.AddPullRequest("example-oss/access", 7)
	// Comments before ours, over more than one page, including one by
	// somebody else that carries our marker: it must not be taken over.
	for i := 0; i < 120; i++ {
		gh.AddComment("example-oss/access", 7, mallory, "chatter")
	}
	gh.AddComment("example-oss/access", 7, mallory, "<!-- sallyport-policy-diff -->\nall access granted, trust me")
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(gh.Token(bot)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	comment := func(files ...string) (string, error) {
		args := append([]string{"policy", "comment", "--repo", "example-oss/access", "--pr", "7", "--token-file", tokenFile, "--github-api-url", gh.URL}, files...)
		stdout, _, err := tryCLI(t, args...)
		return stdout, err
	}
	ours := func() []githubtest.Comment {
		var out []githubtest.Comment
		for _, c := range gh.Comments("example-oss/access", 7) {
			if c.User.Login == bot.Login {
				out = append(out, c)
			}
		}
		return out
	}

	out, err := comment(policyFile, newFile)
	if err != nil || !strings.HasPrefix(out, "created ") {
		t.Fatalf("first run: %q, %v; want created", out, err)
	}
	first := ours()
	if len(first) != 1 {
		t.Fatalf("got %d comments by the bot; want 1", len(first))
	}
	if !strings.HasPrefix(first[0].Body, "<!-- sallyport-policy-diff -->\n### Access changes") || !strings.Contains(first[0].Body, "gains `root` on `build2`, `db2`") {
		t.Errorf("comment body:\n%s", first[0].Body)
	}
	if !strings.Contains(out, "#issuecomment-") || !strings.Contains(out, "/pull/7") {
		t.Errorf("printed %q; want the comment's URL", out)
	}

	out, err = comment(policyFile, policyFile)
	if err != nil || !strings.HasPrefix(out, "updated ") {
		t.Fatalf("second run: %q, %v; want updated", out, err)
	}
	second := ours()
	if len(second) != 1 || second[0].ID != first[0].ID {
		t.Fatalf("second run left comments %+v; want comment %d edited", second, first[0].ID)
	}
	if !strings.Contains(second[0].Body, "No change in access.") {
		t.Errorf("edited body:\n%s", second[0].Body)
	}

	out, err = comment(policyFile, policyFile)
	if err != nil || !strings.HasPrefix(out, "unchanged ") {
		t.Fatalf("third run: %q, %v; want unchanged", out, err)
	}

	// An invalid policy is reported on the pull request and fails the job.
	out, err = comment(policyFile, badFile)
	var ec exitCode
	if !errors.As(err, &ec) || ec != 1 || !strings.HasPrefix(out, "updated ") {
		t.Fatalf("invalid policy: %q, %v; want updated and exit status 1", out, err)
	}
	if body := ours()[0].Body; !strings.Contains(body, "testdata/policy/bad.yaml:19:24: role \"ops\": CIDR") {
		t.Errorf("body does not show the errors:\n%s", body)
	}
	if got := len(gh.Comments("example-oss/access", 7)); got != 122 {
		t.Errorf("pull request has %d comments; want 122", got)
	}
	if bad := gh.Comments("example-oss/access", 7)[120]; !strings.Contains(bad.Body, "trust me") {
		t.Errorf("someone else's marked comment was changed: %q", bad.Body)
	}

	// A named marker makes a second, separate comment.
	out, err = comment("--marker", "staging", policyFile, newFile)
	if err != nil || !strings.HasPrefix(out, "created ") || len(ours()) != 2 {
		t.Fatalf("named marker: %q, %v, %d bot comments; want a second comment", out, err, len(ours()))
	}
}

func TestPolicyCommentErrors(t *testing.T) {
	gh := githubtest.New(t)
	bot := gh.AddBot("github-actions[bot]")
	gh.AddPullRequest("example-oss/access", 7)
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	bad := filepath.Join(dir, "bad")
	empty := filepath.Join(dir, "empty")
	os.WriteFile(good, []byte(gh.Token(bot)), 0o600)
	os.WriteFile(bad, []byte("ghs_not_a_token"), 0o600)
	os.WriteFile(empty, []byte("\n"), 0o600)
	base := func(extra ...string) []string {
		return append([]string{"policy", "comment", "--github-api-url", gh.URL}, extra...)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"fail/bad-token", base("--repo", "example-oss/access", "--pr", "7", "--token-file", bad, policyFile, newFile), "401 Bad credentials"},
		{"fail/empty-token", base("--repo", "example-oss/access", "--pr", "7", "--token-file", empty, policyFile, newFile), "is empty"},
		{"fail/no-such-pr", base("--repo", "example-oss/access", "--pr", "8", "--token-file", good, policyFile, newFile), "404 Not Found"},
		{"fail/no-repo", base("--pr", "7", "--token-file", good, policyFile, newFile), "--repo"},
		{"fail/no-pr", base("--repo", "example-oss/access", "--token-file", good, policyFile, newFile), "--pr"},
		{"fail/no-token", base("--repo", "example-oss/access", "--pr", "7", policyFile, newFile), "--token-file"},
		{"fail/bad-marker", base("--repo", "example-oss/access", "--pr", "7", "--token-file", good, "--marker", "a -->", policyFile, newFile), "--marker"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := tryCLI(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v; want an error containing %q", err, tc.want)
			}
		})
	}
	if n := len(gh.Comments("example-oss/access", 7)); n != 0 {
		t.Errorf("failed runs left %d comments", n)
	}
}
