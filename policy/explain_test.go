package policy

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/sallyport/sallyport/internal/golden"
)

func TestExplainGolden(t *testing.T) {
	p := readPolicy(t, examplePath)
	tests := []struct {
		name     string
		id       Identity
		requests []string
	}{
		{"ok/infra-and-website", Identity{Login: "carol", ID: 3, Teams: []string{"infra", "website"}}, []string{"deploy@web1", "root@db1", "readonly@db1"}},
		{"ok/readonly", Identity{Login: "data-volunteer", ID: 9}, []string{"readonly@db1", "readonly@web1"}},
		{"ok/ci", Identity{CI: &CIClaims{Repository: "example-oss/website", Ref: "refs/heads/main", Environment: "production"}}, []string{"deploy@web2", "deploy@db1"}},
		{"ok/outsider", Identity{Login: "mallory"}, []string{"root@web1", "root@nowhere"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := p.Explain(tc.id, tc.requests...)
			var text bytes.Buffer
			if err := e.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, "explain/"+tc.name[len("ok/"):]+".txt", text.Bytes())
			var js bytes.Buffer
			if err := e.WriteJSON(&js); err != nil {
				t.Fatal(err)
			}
			if !json.Valid(js.Bytes()) {
				t.Fatal("invalid JSON")
			}
			golden.Check(t, "explain/"+tc.name[len("ok/"):]+".json", js.Bytes())
		})
	}
}
