package policy

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// largePolicy is a policy with 10,000 hosts and 1,000 roles: 100 teams
// each in 10 roles, roles selecting by label, glob, name and "*".
var largePolicy = sync.OnceValues(func() ([]byte, error) {
	var b strings.Builder
	b.WriteString("version: 1\ngithub: {org: example-oss}\ndefaults: {ttl: 8h, max_ttl: 24h}\nhosts:\n")
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&b, "  - {name: host%d, address: \"10.%d.%d.%d:22\", labels: [group%d, zone%d]}\n", i, i/65536, i/256%256, i%256, i%100, i%7)
	}
	b.WriteString("roles:\n")
	for i := 0; i < 1000; i++ {
		var sel string
		switch i % 4 {
		case 0:
			sel = fmt.Sprintf(`["label:group%d", "label:zone%d"]`, i%100, i%7)
		case 1:
			sel = fmt.Sprintf(`["host%d*"]`, i%100)
		case 2:
			sel = fmt.Sprintf(`[host%d, host%d, host%d]`, i, i+1000, i+2000)
		case 3:
			if i%100 == 3 {
				sel = `["*"]`
			} else {
				sel = fmt.Sprintf(`["label:group%d"]`, (i+50)%100)
			}
		}
		fmt.Fprintf(&b, "  - name: role%d\n    members: {teams: [team%d], users: [user%d]}\n    principals: [root, deploy, svc%d]\n    hosts: %s\n    ttl: %dh\n    permissions: [pty]\n",
			i, i%100, i, i%50, sel, 1+i%8)
		if i%10 == 0 {
			b.WriteString("    source_addresses: [10.0.0.0/8]\n")
		}
	}
	return []byte(b.String()), nil
})

func loadLarge(b *testing.B) *Policy {
	b.Helper()
	data, err := largePolicy()
	if err != nil {
		b.Fatal(err)
	}
	p, err := Parse("large.yaml", data)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// largeIdentity is in 20 of the 100 teams, so 200 of the 1,000 roles match.
func largeIdentity() Identity {
	id := Identity{Login: "user7", ID: 7}
	for i := 0; i < 20; i++ {
		id.Teams = append(id.Teams, fmt.Sprintf("team%d", i*5))
	}
	return id
}

func BenchmarkParseLarge(b *testing.B) {
	data, _ := largePolicy()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse("large.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGrant computes one identity's grant: what a sign-in costs.
func BenchmarkGrant(b *testing.B) {
	p := loadLarge(b)
	id := largeIdentity()
	if n := len(p.Grant(id).Matches()); n != 201 {
		b.Fatalf("identity matches %d roles; want 201", n)
	}
	b.ReportAllocs()
	for b.Loop() {
		p.Grant(id)
	}
}

// BenchmarkAllows is "may this identity be root on host5000" once its
// grant is computed: what each connection costs.
func BenchmarkAllows(b *testing.B) {
	p := loadLarge(b)
	g := p.Grant(largeIdentity())
	for _, tc := range []struct{ name, principal, host string }{
		{"allow", "root", "host5000"},
		{"deny-host", "svc49", "host5001"},
		{"deny-principal", "nobody", "host5000"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				g.Allows(tc.principal, tc.host)
			}
		})
	}
}
