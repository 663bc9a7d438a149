package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// failingPolicy is the demo policy with one of its own tests failing.
var failingPolicy = breakPolicyTest(string(devPolicy))

// breakPolicyTest edits a test of the demo policy p to fail: bob's team may
// deploy to web1, which the edited test says it may not.
func breakPolicyTest(p string) string {
	return strings.Replace(p, "allow: [deploy@web1, deploy@web2]\n    deny: [deploy@db1, root@web1]",
		"allow: [deploy@web2]\n    deny: [deploy@db1, deploy@web1]", 1)
}

const failingTest = `test "website team deploys web, never the database" fails`

// TestServePolicyRefusedByTests checks that a reload refused by the policy's
// own tests logs why each test fails and how to see more, and that a
// reload that succeeds says so with the policy's size.
func TestServePolicyRefusedByTests(t *testing.T) {
	if failingPolicy == string(devPolicy) {
		t.Fatal("the demo policy changed: failingPolicy no longer edits it")
	}
	cfg := serveSetup(t, nil, freeAddr(t), "policy_poll: 100ms\n")
	_, stderr := startServe(t, cfg)
	waitLog(t, stderr, "policy loaded", 1)
	policy := filepath.Join(filepath.Dir(cfg), "policy.yaml")
	if err := os.WriteFile(policy, []byte(failingPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	waitLog(t, stderr, "policy refused", 1)
	for _, want := range []string{"deploy@web1: allowed, want denied", "run `sallyport policy test " + policy + "` for details"} {
		waitLog(t, stderr, want, 1)
	}
	// Refused once, explained once, though the file is read again and again.
	time.Sleep(500 * time.Millisecond)
	if n := strings.Count(stderr.String(), "deploy@web1: allowed, want denied"); n != 1 {
		t.Errorf("the failure was explained %d times; want once:\n%s", n, stderr.String())
	}
	if err := os.WriteFile(policy, append(devPolicy, "# fixed\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	waitLog(t, stderr, "policy loaded", 2)
	if log := stderr.String(); !strings.Contains(log[strings.LastIndex(log, "policy loaded"):], "hosts=4 roles=5") {
		t.Errorf("the reload does not say what was loaded:\n%s", log)
	}
}

// TestDevRefusesPolicyFailingTests checks that dev, started on a data
// folder whose policy fails its own tests, says which test fails, why, and
// how to see more.
func TestDevRefusesPolicyFailingTests(t *testing.T) {
	data := t.TempDir()
	policy := filepath.Join(data, "policy.yaml")
	if err := os.WriteFile(policy, []byte(failingPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err := run(ctx, []string{"dev", "--listen", "127.0.0.1:0", "--bastion", "127.0.0.1:0", "--data", data}, new(strings.Builder), new(strings.Builder))
	if err == nil {
		t.Fatal("dev started with a policy failing its tests")
	}
	for _, want := range []string{failingTest, "deploy@web1: allowed, want denied", "run `sallyport policy test " + policy + "` for details"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v; want %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("err = %q; want one line", err)
	}
}
