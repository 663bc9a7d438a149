package main

import (
	"strings"
	"testing"

	"github.com/sallyport/sallyport/policy"
	"github.com/sallyport/sallyport/web"
)

func TestDemoPolicy(t *testing.T) {
	for _, login := range []string{"root", "volunteer"} {
		t.Run("ok/"+login, func(t *testing.T) {
			data, err := withDemoTarget(devPolicy, "127.0.0.1:40001", login)
			if err != nil {
				t.Fatal(err)
			}
			p, err := web.Check("policy.yaml", data) // parses, and its own tests pass
			if err != nil {
				t.Fatalf("%v\n%s", err, data)
			}
			alice := policy.Identity{Login: "alice", ID: 1001, Teams: []string{"infra", "website"}}
			bob := policy.Identity{Login: "bob", ID: 1002, Teams: []string{"website"}}
			if d := p.Grant(alice).Allows(login, demoHost); !d.Allow || d.Address != "127.0.0.1:40001" {
				t.Errorf("alice %s@demo: %+v; want allowed at 127.0.0.1:40001", login, d)
			}
			if d := p.Grant(bob).Allows(login, demoHost); d.Allow {
				t.Errorf("bob %s@demo allowed; want denied", login)
			}
			moved := setDemoAddress(data, "127.0.0.1:40002")
			if p, err := web.Check("policy.yaml", moved); err != nil {
				t.Fatal(err)
			} else if d := p.Grant(alice).Allows(login, demoHost); d.Address != "127.0.0.1:40002" {
				t.Errorf("after setDemoAddress: address %q; want 127.0.0.1:40002", d.Address)
			}
			if got := setDemoAddress(devPolicy, "127.0.0.1:40002"); string(got) != string(devPolicy) {
				t.Error("setDemoAddress changed a policy without the demo host")
			}
			if has := strings.Contains(string(data), "demo-target"); has != (login != "root") {
				t.Errorf("demo-target role present = %v for login %s; want it only when the infrastructure role does not grant the login", has, login)
			}
		})
	}
}
