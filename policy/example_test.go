package policy_test

import (
	"fmt"
	"os"

	"github.com/sallyport/sallyport/policy"
)

func Example() {
	data, err := os.ReadFile("testdata/policy-example.yaml")
	if err != nil {
		panic(err)
	}
	p, err := policy.Parse("policy.yaml", data)
	if err != nil {
		fmt.Println(err) // file:line:col: message, one per line
		return
	}

	// At sign-in: the identity layer vouches for login, ID and teams.
	g := p.Grant(policy.Identity{Login: "bob", ID: 1042, Teams: []string{"website"}})
	fmt.Println("principals:", g.Principals(), "ttl:", g.TTL())

	// At connection time: one decision per principal@host.
	d := g.Allows("deploy", "web1")
	fmt.Println(d.Allow, d.Address, d.Permissions)
	fmt.Println(d.Reason)
	fmt.Println(g.Allows("deploy", "db1"))
	// Output:
	// principals: [deploy] ttl: 8h0m0s
	// true web1.internal.example.org:22 pty
	// role website-maintainers (team website) grants deploy on web1 (hosts "label:web")
	// deny deploy@db1: no role of user bob (teams website) grants deploy on host db1 (deploy is granted by website-maintainers on label:web)
}

func ExampleCompare() {
	old, _ := policy.Parse("old.yaml", []byte(`version: 1
github: {org: example-oss}
defaults: {ttl: 8h, max_ttl: 24h}
hosts: [{name: web1, address: "10.0.0.1:22"}, {name: db1, address: "10.0.0.2:22"}]
roles:
  - {name: web, members: {teams: [website]}, principals: [deploy], hosts: [web1], permissions: [pty]}
`))
	new, _ := policy.Parse("new.yaml", []byte(`version: 1
github: {org: example-oss}
defaults: {ttl: 8h, max_ttl: 24h}
hosts: [{name: web1, address: "10.0.0.1:22"}, {name: db1, address: "10.0.0.2:22"}]
roles:
  - {name: web, members: {teams: [website]}, principals: [deploy], hosts: ["*"], permissions: [pty]}
`))
	policy.Compare(old, new, &policy.Roster{Teams: map[string][]string{"website": {"bob"}}}).WriteText(os.Stdout)
	// Output:
	// bob (teams website):
	//   gains deploy on db1: permissions pty; via web
}

func ExampleParseHostKey() {
	// The target's /etc/ssh/ssh_host_ed25519_key.pub, as pinned under a
	// host's host_keys.
	k, err := policy.ParseHostKey("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIsCCfaGKD7LlISU6O0lcSZQEKbDT0Ka/OP4vXwWvpvS root@web1")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(k.Type(), k.Bits(), k.Fingerprint(), k.Comment())

	_, err = policy.ParseHostKey("web1.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIsCCfaGKD7LlISU6O0lcSZQEKbDT0Ka/OP4vXwWvpvS")
	fmt.Println(err)
	// Output:
	// ssh-ed25519 256 SHA256:LR8cFz2Cp+gp4b4/Cr9MHCJ0UMrwQxRxBhP/6QUp3hc root@web1
	// host key starts with "web1.example.org", not a key type: pin the key alone, without the host names of a known_hosts or ssh-keyscan line or the options of an authorized_keys line
}
