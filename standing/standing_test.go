package standing

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sallyport/sallyport/policy"
	"github.com/sallyport/sallyport/store"
)

func openStore(t *testing.T) *store.SQLite {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "sallyport.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestCheck(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	carol := policy.Identity{Login: "carol", ID: 2001, Teams: []string{"infra"}}
	mallory := policy.Identity{Login: "Carol", ID: 2099, Teams: []string{"website"}}
	ci := &policy.CIClaims{Repository: "Example/Site", Ref: "refs/heads/main"}

	r, err := Check(ctx, st, "github:2001", carol, SourceSignIn)
	if err != nil || !r.NewPin || r.Unpinned != "" || r.Identity.Login != "carol" || r.Pin.GitHubID != 2001 {
		t.Fatalf("carol first seen: %+v %v", r, err)
	}
	r, err = Check(ctx, st, "github:2001", carol, SourceBastion)
	if err != nil || r.NewPin || r.Unpinned != "" || r.Identity.Login != "carol" {
		t.Errorf("carol again: %+v %v", r, err)
	}

	r, err = Check(ctx, st, "github:2099", mallory, SourceBastion)
	if err != nil {
		t.Fatal(err)
	}
	want := "login Carol was first seen as GitHub user 2001; user 2099 now has that login: policy 'users: Carol' entries do not apply to them until an admin re-pins"
	if r.Unpinned != want {
		t.Errorf("mallory as carol: Unpinned %q; want %q", r.Unpinned, want)
	}
	if r.Identity.Login != "" || r.Identity.ID != 2099 || len(r.Identity.Teams) != 1 {
		t.Errorf("mallory as carol is decided as %+v; want her ID and teams without the login", r.Identity)
	}
	// The policy sees teams, not the login.
	p, err := policy.Parse("p.yaml", []byte(`version: 1
github: {org: example}
defaults: {ttl: 1h, max_ttl: 8h}
hosts: [{name: web1, address: "10.0.0.1:22"}]
roles:
  - {name: carols, members: {users: [carol]}, principals: [root], hosts: [web1]}
  - {name: web, members: {teams: [website]}, principals: [deploy], hosts: [web1]}
`))
	if err != nil {
		t.Fatal(err)
	}
	g := p.Grant(r.Identity)
	if g.Allows("root", "web1").Allow || !g.Allows("deploy", "web1").Allow {
		t.Errorf("mallory as carol: root %v, deploy %v; want only deploy", g.Allows("root", "web1").Allow, g.Allows("deploy", "web1").Allow)
	}

	if _, err := st.Repin(ctx, "carol", 2099, "github:1", "new holder"); err != nil {
		t.Fatal(err)
	}
	if r, err := Check(ctx, st, "github:2001", carol, SourceBastion); err != nil || !strings.Contains(r.Unpinned, "login carol was pinned to GitHub user 2099 by github:1; user 2001 now has that login") {
		t.Errorf("after re-pin, carol's old account: %+v %v", r, err)
	}

	if _, _, err := st.Suspend(ctx, store.Suspension{Subject: "github:2099", Reason: "hijacked", Actor: "github:1"}); err != nil {
		t.Fatal(err)
	}
	_, err = Check(ctx, st, "github:2099", mallory, SourceBastion)
	var se *store.SuspendedError
	if !errors.Is(err, store.ErrSuspended) || !errors.As(err, &se) || se.Identity != "github:2099" || se.Actor != "github:1" {
		t.Errorf("suspended: %v", err)
	}

	ciID := ci.IdentityString()
	if r, err := Check(ctx, st, ciID, policy.Identity{CI: ci}, SourceIssuance); err != nil || r.Pin != nil || r.Identity.CI == nil {
		t.Errorf("CI: %+v %v", r, err)
	}
	if _, _, err := st.Suspend(ctx, store.Suspension{Subject: "ci:example/site", Reason: "workflow hijacked", Actor: "github:1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Check(ctx, st, ciID, policy.Identity{CI: ci}, SourceIssuance); !errors.Is(err, store.ErrSuspended) ||
		!strings.Contains(err.Error(), "every GitHub Actions workload of example/site") {
		t.Errorf("CI of a suspended repository: %v", err)
	}

	if _, err := Check(ctx, st, "github:7", carol, SourceBastion); err == nil || errors.Is(err, store.ErrSuspended) {
		t.Errorf("identity of another user: %v; want an error", err)
	}
	st.Close()
	if _, err := Check(ctx, st, "github:2001", carol, SourceBastion); err == nil || errors.Is(err, store.ErrSuspended) {
		t.Errorf("closed store: %v; want an error", err)
	}
}

// standing sits beside web and bastion, under both: it must import
// neither, nor any other adapter but the store.
func TestNoAdapterImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/sallyport/sallyport/standing").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const m = "github.com/sallyport/sallyport/"
	for _, d := range strings.Fields(string(out)) {
		switch d {
		case m + "web", m + "bastion", m + "identity", m + "trust", m + "ca", m + "cmd/sallyport", "net/http":
			t.Errorf("standing depends on %s", d)
		}
	}
}
