package bastion

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sallyport/sallyport/policy"
	"github.com/sallyport/sallyport/store"
)

// carolRoles grant the target's login on web1 to the login carol, and,
// without a terminal, to the team readers.
const carolRoles = `
  - name: carols
    members:
      users: [carol]
    principals: [%[1]s]
    hosts: [web1]
    permissions: [pty]
  - name: readers
    members:
      teams: [readers]
    principals: [%[1]s]
    hosts: [web1]
    permissions: []
`

// carolUnpinned is the bastion's reason for refusing mallory (2099) once
// she holds carol's former login.
const carolUnpinned = "login carol was first seen as GitHub user 2001; user 2099 now has that login: policy 'users: carol' entries do not apply to them until an admin re-pins"

// renameCarol has the directory report carol (2001) and mallory (2099)
// under their own logins, lets carol log in through the bastion (which
// pins her login), then has carol rename her account and mallory take the
// freed login, in mallory's teams.
func (e *env) renameCarol(t *testing.T, malloryTeams ...string) {
	t.Helper()
	e.dirs.set(2001, policy.Identity{Login: "carol"}, true)
	e.dirs.set(2099, policy.Identity{Login: "mallory", Teams: malloryTeams}, true)
	c := e.client(e.issue(certOptions{githubID: 2001, login: "carol"}))
	if r := c.ssh(nil, c.direct(e.login, "web1"), "true"); r.code != 0 {
		t.Fatalf("carol's own login: %d %s", r.code, r.stderr)
	}
	e.dirs.set(2001, policy.Identity{Login: "carol-new"}, true)
	e.dirs.set(2099, policy.Identity{Login: "carol", Teams: malloryTeams}, true)
}

func TestRenamedLoginRefusedAtBastion(t *testing.T) {
	e := newEnv(t, envOptions{policy: carolRoles})
	// mallory's certificate was issued before the renames.
	c := e.client(e.issue(certOptions{githubID: 2099, login: "mallory"}))
	e.renameCarol(t)
	for _, f := range c.forms(e.login, "web1") {
		r := c.ssh(nil, f.args, "true")
		if r.code == 0 {
			t.Fatalf("%s: mallory, now named carol, got in through carol's role", f.name)
		}
		if !strings.Contains(r.stderr, carolUnpinned) {
			t.Errorf("%s: stderr %q; want the pin named", f.name, r.stderr)
		}
		if d := e.lastDeny(); !strings.Contains(d, carolUnpinned) {
			t.Errorf("%s: audited denial %q; want the pin named", f.name, d)
		}
	}
	pins, err := e.store.LoginPins(context.Background(), store.LoginPinFilter{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, p := range pins {
		got[p.Login] = p.GitHubID
		if p.Source != "bastion" {
			t.Errorf("pin %+v; want seen by the bastion", p)
		}
	}
	if got["carol"] != 2001 || got["carol-new"] != 0 && got["carol-new"] != 2001 {
		t.Errorf("pins %v; want carol pinned to 2001", got)
	}
}

func TestRenamedLoginTeamsCountAtBastion(t *testing.T) {
	e := newEnv(t, envOptions{policy: carolRoles})
	c := e.client(e.issue(certOptions{githubID: 2099, login: "mallory"}))
	e.renameCarol(t, "readers")
	// Allowed through readers, on its terms: no terminal, which carols
	// would have given.
	if r := c.ssh(nil, c.direct(e.login, "web1"), "echo in"); r.code != 0 || !strings.Contains(r.stdout, "in") {
		t.Fatalf("mallory through her team: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := c.ssh(nil, c.direct(e.login, "web1", "-tt"), "tty"); r.code != 255 || !strings.Contains(r.stderr, "PTY allocation request failed") {
		t.Errorf("mallory asking for a terminal, which only carol's role grants: %d %q %q", r.code, r.stdout, r.stderr)
	}
}

func TestRenamedLoginRepinnedAtBastion(t *testing.T) {
	e := newEnv(t, envOptions{policy: carolRoles})
	c := e.client(e.issue(certOptions{githubID: 2099, login: "mallory"}))
	e.renameCarol(t)
	if r := c.ssh(nil, c.direct(e.login, "web1"), "true"); r.code == 0 {
		t.Fatal("mallory got in before the re-pin")
	}
	if _, err := e.store.Repin(context.Background(), "carol", 2099, "github:1", "carol's old account is gone; 2099 is the new carol"); err != nil {
		t.Fatal(err)
	}
	if r := c.ssh(nil, c.direct(e.login, "web1"), "true"); r.code != 0 {
		t.Fatalf("after the re-pin: %d %s", r.code, r.stderr)
	}
}

// TestSuspendedRefusedAtBastion: a suspended person is refused at login,
// whatever certificate they hold, until the suspension is lifted.
func TestSuspendedRefusedAtBastion(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(e.issue(certOptions{}))
	if r := c.ssh(nil, c.direct(e.login, "web1"), "true"); r.code != 0 {
		t.Fatalf("before: %d %s", r.code, r.stderr)
	}
	if _, _, err := e.store.Suspend(context.Background(), store.Suspension{Subject: "github:1001", Reason: "laptop stolen", Actor: "github:7"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range c.forms(e.login, "web1") {
		r := c.ssh(nil, f.args, "true")
		if r.code == 0 {
			t.Fatalf("%s: a suspended user got in", f.name)
		}
		if !strings.Contains(r.stderr, `github:1001 is suspended since`) || !strings.Contains(r.stderr, `by github:7 ("laptop stolen")`) {
			t.Errorf("%s: stderr %q; want who suspended and why", f.name, r.stderr)
		}
		if d := e.lastDeny(); !strings.Contains(d, "github:1001 is suspended") {
			t.Errorf("%s: audited denial %q", f.name, d)
		}
	}
	// rita is not suspended.
	rc := e.client(e.issue(certOptions{githubID: 1002, login: "rita"}))
	if r := rc.ssh(nil, rc.direct(e.login, "web1"), "true"); r.code != 0 {
		t.Errorf("rita: %d %s", r.code, r.stderr)
	}
	if _, err := e.store.Lift(context.Background(), "github:1001", "github:7", "laptop found"); err != nil {
		t.Fatal(err)
	}
	if r := c.ssh(nil, c.direct(e.login, "web1"), "true"); r.code != 0 {
		t.Errorf("after the lift: %d %s", r.code, r.stderr)
	}
}

// TestSuspensionEndsLiveSession: the sweep ends a suspended person's
// live sessions (direct and through ProxyJump) with the reason, without
// being told; Reevaluate, as `serve` calls when the suspensions change,
// ends them at once.
func TestSuspensionEndsLiveSession(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sweep  time.Duration
		notify bool
	}{
		{"sweep", 300 * time.Millisecond, false},
		{"reevaluate", time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{configure: func(s *Server) { s.SweepInterval = tc.sweep }})
			for i := range 2 {
				key, cert := e.issue(certOptions{})
				c := e.client(key, cert)
				f := c.forms(e.login, "web1")[i]
				_, stderr, done := liveSession(t, c, f.args)
				if _, _, err := e.store.Suspend(context.Background(), store.Suspension{Subject: "github:1001", Reason: "account hijacked", Actor: "github:7"}); err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				if tc.notify {
					e.srv.Reevaluate("suspensions changed")
				}
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					t.Fatalf("%s: session still running 10s after the suspension", f.name)
				}
				t.Logf("%s: ended %s after the suspension", f.name, time.Since(start))
				if s := stderr.String(); !strings.Contains(s, "session ended: ") || !strings.Contains(s, `github:1001 is suspended since`) {
					t.Errorf("%s: stderr %q; want the suspension", f.name, s)
				}
				if d := e.lastDeny(); !strings.Contains(d, "live session ended") || !strings.Contains(d, "account hijacked") {
					t.Errorf("%s: last deny %q", f.name, d)
				}
				if i == 0 {
					if _, err := e.store.Lift(context.Background(), "github:1001", "github:7", "next case"); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	}
}

// TestSuspendedCIAtBastion: a suspended repository's workloads are
// refused, whatever their ref, environment or workflow.
func TestSuspendedCIAtBastion(t *testing.T) {
	e := newEnv(t, envOptions{policy: ciRoles})
	ci := policy.CIClaims{Repository: "example/site", Ref: "refs/heads/main", Environment: "prod"}
	c := e.client(e.issueCI(ci.IdentityString(), e.login))
	if r := c.ssh(nil, c.direct(e.login, "web1"), "true"); r.code != 0 {
		t.Fatalf("before: %d %s", r.code, r.stderr)
	}
	if _, _, err := e.store.Suspend(context.Background(), store.Suspension{Subject: "ci:example/site", Reason: "workflow hijacked", Actor: "github:7"}); err != nil {
		t.Fatal(err)
	}
	r := c.ssh(nil, c.direct(e.login, "web1"), "true")
	if r.code == 0 || !strings.Contains(r.stderr, "every GitHub Actions workload of example/site") {
		t.Errorf("suspended repository: %d %q", r.code, r.stderr)
	}
}

// TestBreakGlassSignerSuspended: a break-glass certificate is refused once
// the admin who signed its request is suspended, and works again after the
// suspension is lifted.
func TestBreakGlassSignerSuspended(t *testing.T) {
	e := newEnv(t, envOptions{configure: func(s *Server) { s.Directory = nobody{} }})
	a := newGlassAdmin(t)
	k, cert := e.breakGlass(a, e.login, "web1")
	c := e.client(k, cert)
	if r := c.ssh(nil, c.direct(e.login, "web1"), "echo glass"); r.code != 0 {
		t.Fatalf("before: code %d stderr %q", r.code, r.stderr)
	}
	ctx := context.Background()
	if _, _, err := e.store.Suspend(ctx, store.Suspension{Subject: "github:4242", Reason: "key lost", Actor: "github:7"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range c.forms(e.login, "web1") {
		r := c.ssh(nil, f.args, "echo glass")
		if r.code == 0 || strings.Contains(r.stdout, "glass") || !strings.Contains(r.stderr, "signed by github:4242, who is suspended") {
			t.Fatalf("%s: code %d stdout %q stderr %q; want refused naming the suspended signer", f.name, r.code, r.stdout, r.stderr)
		}
	}
	if _, err := e.store.Lift(ctx, "github:4242", "github:7", "key found"); err != nil {
		t.Fatal(err)
	}
	if r := c.ssh(nil, c.direct(e.login, "web1"), "echo glass"); r.code != 0 {
		t.Fatalf("after the lift: code %d stderr %q", r.code, r.stderr)
	}
}
