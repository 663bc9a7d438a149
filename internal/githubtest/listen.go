package githubtest

import (
	"fmt"
	"net"
	"net/http/httptest"
	"sync"
)

// Start runs a stand-in outside tests, as `sallyport dev` does, on addr,
// which must be a loopback address ("" means 127.0.0.1 on a free port).
// Call Close to stop it.
func Start(addr string) (*Server, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("githubtest: listen address: %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("githubtest: refusing to listen on %s: the stand-in only listens on a loopback IP address", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("githubtest: %w", err)
	}
	c := &closer{}
	s := New(c)
	// New listens on a free loopback port; move the same handler to ln.
	h := s.srv.Config.Handler
	s.srv.Close()
	ts := httptest.NewUnstartedServer(h)
	ts.Listener.Close()
	ts.Listener = ln
	ts.Start()
	s.mu.Lock()
	s.srv = ts
	s.URL = ts.URL + "/"
	s.mu.Unlock()
	return s, nil
}

// Close stops a stand-in made by Start. (One made by New stops when its
// test ends.)
func (s *Server) Close() {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	srv.Close()
}

// closer is the TB of a stand-in made by Start.
type closer struct {
	mu  sync.Mutex
	fns []func()
}

func (c *closer) Helper() {}

func (c *closer) Cleanup(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, fn)
}

// Demo users for `sallyport dev`, matching the teams of the reference
// policy (infra, website, release-managers).
var demoUsers = []struct {
	login string
	id    int64
	state string
	teams []string
	other bool // member of another organisation only
}{
	{"alice", 1001, StateActive, []string{"infra", "website"}, false},
	{"bob", 1002, StateActive, []string{"website"}, false},
	{"carol", 1003, StateActive, []string{"release-managers"}, false},
	{"octo-admin", 1004, StateActive, nil, false},
	{"dave", 1005, StatePending, []string{"infra"}, false},
	{"erin", 1006, StateActive, []string{"infra"}, true},
}

// AddDemoUsers adds the demo users of `sallyport dev` for organisation org
// and returns them:
//
//   - alice (ID 1001): teams infra and website
//   - bob (ID 1002): team website
//   - carol (ID 1003): team release-managers
//   - octo-admin (ID 1004): member without a team
//   - dave (ID 1005): invited (pending, so not a member), team infra
//   - erin (ID 1006): member of "other-org" only, its team infra
func (s *Server) AddDemoUsers(org string) ([]User, error) {
	var out []User
	for _, d := range demoUsers {
		u, err := s.AddUserWithID(d.login, d.id)
		if err != nil {
			return nil, err
		}
		o := org
		if d.other {
			o = "other-org"
		}
		if err := s.SetMembership(u, o, d.state, d.teams...); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}
