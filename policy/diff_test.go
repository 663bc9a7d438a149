package policy

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/sallyport/sallyport/internal/golden"
)

func TestDiffGolden(t *testing.T) {
	old := readPolicy(t, examplePath)
	new := readPolicy(t, "testdata/diff/new.yaml")
	rosterData, err := os.ReadFile("testdata/diff/members.yaml")
	if err != nil {
		t.Fatal(err)
	}
	roster, err := ParseRoster("members.yaml", rosterData)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		old, new *Policy
		roster   *Roster
	}{
		{"ok/per-team", old, new, nil},
		{"ok/per-person", old, new, roster},
		{"ok/reverse", new, old, nil},
		{"ok/no-change", old, old, roster},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Compare(tc.old, tc.new, tc.roster)
			base := "diff/" + tc.name[len("ok/"):]
			for _, f := range []struct {
				ext   string
				write func(*bytes.Buffer) error
			}{
				{".txt", func(b *bytes.Buffer) error { return d.WriteText(b) }},
				{".md", func(b *bytes.Buffer) error { return d.WriteMarkdown(b) }},
				{".json", func(b *bytes.Buffer) error { return d.WriteJSON(b) }},
			} {
				var b bytes.Buffer
				if err := f.write(&b); err != nil {
					t.Fatal(err)
				}
				golden.Check(t, base+f.ext, b.Bytes())
			}
			var decoded map[string]any
			var b bytes.Buffer
			d.WriteJSON(&b)
			if err := json.Unmarshal(b.Bytes(), &decoded); err != nil {
				t.Fatalf("JSON output does not parse: %v", err)
			}
			if decoded["changed"] != !d.Empty() {
				t.Errorf("got changed %v; want %t", decoded["changed"], !d.Empty())
			}
		})
	}
}

func TestDiffNoChangeText(t *testing.T) {
	p := readPolicy(t, examplePath)
	var b bytes.Buffer
	if err := Compare(p, p, nil).WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "no change in access\n"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
}

func TestParseRoster(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"ok/teams", "teams:\n  infra: [alice]\n", true},
		{"fail/not-a-mapping", "teams: [infra]\n", false},
		{"fail/bad-login", "teams:\n  infra: [-x]\n", false},
		{"fail/duplicate-team", "teams:\n  infra: [a]\n  infra: [b]\n", false},
		{"fail/unknown-key", "teams: {}\nusers: []\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRoster("members.yaml", []byte(tc.in))
			if (err == nil) != tc.ok {
				t.Errorf("got %v; want ok %t", err, tc.ok)
			}
		})
	}
}
