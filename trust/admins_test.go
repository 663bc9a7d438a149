package trust

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sallyport/sallyport/internal/gpgtest"
)

func adminFprs(a *Admins) []string {
	var out []string
	for _, ad := range a.List() {
		out = append(out, string(ad.Fingerprint))
	}
	slices.Sort(out)
	return out
}

func reasonOf(a *Admins, fpr string) string {
	for _, r := range a.Rejected() {
		if string(r.Fingerprint) == fpr {
			return r.Reason
		}
	}
	return ""
}

// TestWebOfTrust builds a web of trust with real gpg and checks that the
// admin set is exactly what the rules say.
func TestWebOfTrust(t *testing.T) {
	g := gpgtest.New(t)
	k := map[string]string{}
	gen := func(name string, id int, expire string) {
		k[name] = g.GenKey(uid(name, id), expire)
	}
	gen("r1", 1, "1y")
	gen("r2", 2, "1y")
	k["r1b"] = g.GenKey("r1 second key (github:r1/1) <r1b@example.org>", "1y") // same person as r1
	gen("a", 10, "1y")                                                         // r1 + r2: round 1
	gen("b", 11, "1y")                                                         // r1 only
	gen("c", 12, "1y")                                                         // r1 + a: round 2
	gen("d", 13, "1y")                                                         // a + c: round 3
	gen("sha1", 14, "1y")                                                      // r1 + SHA-1 certification by r2
	gen("revcert", 15, "1y")                                                   // r1 + r2, r2's certification revoked
	gen("revkey", 16, "1y")                                                    // r1 + r2, key revoked
	gen("short", 17, "1d")                                                     // r1 + r2, key expires in a day
	gen("certexp", 18, "1y")                                                   // r1 + r2, r2's certification expires in a day
	gen("sybil", 19, "1y")                                                     // r1 + r1b: one person, two keys
	gen("self", 20, "1y")                                                      // r1 + its own second key with the same account
	k["self2"] = g.GenKey("self again (github:self/20) <self2@example.org>", "1y")
	k["nogh"] = g.GenKey("No GitHub <nogh@example.org>", "1y")
	k["twogh"] = g.GenKey(uid("two", 21), "1y")
	g.Run("--quick-add-uid", k["twogh"], uid("other", 22))

	certify := func(target string, by ...string) {
		for _, s := range by {
			g.Certify(k[s], k[target])
		}
	}
	certify("a", "r1", "r2")
	certify("b", "r1")
	certify("c", "r1", "a")
	certify("d", "a", "c")
	certify("sha1", "r1")
	g.Certify(k["r2"], k["sha1"], "--allow-weak-key-signatures", "--cert-digest-algo", "SHA1")
	if out := string(g.RunStdin(g.Export(k["sha1"]), "--list-packets")); !strings.Contains(out, "digest algo 2,") {
		t.Fatalf("gpg made no SHA-1 certification:\n%s", out)
	}
	certify("revcert", "r1", "r2")
	g.RevokeCertification(k["revcert"], k["r2"])
	certify("revkey", "r1", "r2")
	g.RevokeKey(k["revkey"])
	certify("short", "r1", "r2")
	certify("certexp", "r1")
	g.Certify(k["r2"], k["certexp"], "--default-cert-expire", "1d")
	certify("sybil", "r1", "r1b")
	certify("self", "r1", "self2")
	certify("nogh", "r1", "r2")
	certify("twogh", "r1", "r2")

	var all []string
	for _, f := range k {
		all = append(all, f)
	}
	dir := filepath.Join(t.TempDir(), "trust")
	if err := InitFolder(dir, []Fingerprint{Fingerprint(k["r1"]), Fingerprint(k["r2"]), Fingerprint(k["r1b"])}); err != nil {
		t.Fatal(err)
	}
	// Add keys one by one, then everything again: merging must be
	// idempotent.
	for _, f := range all {
		if _, err := AddKeys(dir, g.Export(f)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := AddKeys(dir, g.Export(all...)); err != nil {
		t.Fatal(err)
	}
	folder, err := LoadFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(time.Second) // after every signature gpg made

	names := func(ns ...string) []string {
		var out []string
		for _, n := range ns {
			out = append(out, k[n])
		}
		slices.Sort(out)
		return out
	}
	tests := []struct {
		name      string
		roots     []string
		threshold int
		at        time.Time
		want      []string
		reasons   map[string]string
	}{
		{
			name: "ok/threshold-2", roots: []string{"r1", "r2", "r1b"}, at: now,
			want: names("r1", "r2", "r1b", "a", "c", "d", "short", "certexp"),
			reasons: map[string]string{
				"b":       "certified by 1 distinct admins; 2 needed",
				"sha1":    "certified by 1 distinct admins",
				"revcert": "certified by 1 distinct admins",
				"revkey":  "key is revoked",
				"sybil":   "certified by 1 distinct admins",
				"self":    "certified by 1 distinct admins",
				"self2":   "certified by 0 distinct admins",
				"nogh":    "no user ID of the form",
				"twogh":   "two GitHub accounts",
			},
		},
		{
			name: "ok/threshold-1", roots: []string{"r1", "r2", "r1b"}, threshold: 1, at: now,
			want: names("r1", "r2", "r1b", "a", "b", "c", "d", "sha1", "revcert", "short", "certexp", "sybil", "self"),
		},
		{
			name: "ok/threshold-3", roots: []string{"r1", "r2", "r1b"}, threshold: 3, at: now,
			want: names("r1", "r2", "r1b"),
		},
		{
			name: "fail/expired-key-and-certification", roots: []string{"r1", "r2", "r1b"}, at: now.Add(50 * time.Hour),
			want:    names("r1", "r2", "r1b", "a", "c", "d"),
			reasons: map[string]string{"short": "key is expired", "certexp": "certified by 1 distinct admins"},
		},
		{
			name: "fail/lost-root-drops-dependents", roots: []string{"r1", "r1b"}, at: now,
			want:    names("r1", "r1b"),
			reasons: map[string]string{"a": "certified by 1", "c": "certified by 1", "d": "certified by 0"},
		},
		{
			name: "fail/root-not-in-keyring", roots: []string{"r1", "r2", "missing"}, at: now,
			want:    names("r1", "r2", "a", "c", "d", "short", "certexp"),
			reasons: map[string]string{"missing": "not in the keyring"},
		},
		{
			name: "fail/revoked-root", roots: []string{"revkey", "r1"}, threshold: 1, at: now,
			want:    names("r1", "a", "b", "c", "d", "sha1", "revcert", "short", "certexp", "sybil", "self"),
			reasons: map[string]string{"revkey": "key is revoked"},
		},
	}
	k["missing"] = strings.Repeat("AB", 20)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := *folder
			f.Roots = nil
			for _, r := range tc.roots {
				f.Roots = append(f.Roots, Fingerprint(k[r]))
			}
			a, err := ComputeAdmins(&f, Options{Threshold: tc.threshold, Now: tc.at})
			if err != nil {
				t.Fatal(err)
			}
			if got := adminFprs(a); !slices.Equal(got, tc.want) {
				t.Errorf("admins = %v; want %v\nrejected: %+v", nameOf(k, got), nameOf(k, tc.want), a.Rejected())
			}
			for n, want := range tc.reasons {
				if got := reasonOf(a, k[n]); !strings.Contains(got, want) {
					t.Errorf("%s: reason %q; want it to contain %q", n, got, want)
				}
			}
		})
	}

	t.Run("ok/chain-and-accounts", func(t *testing.T) {
		a, err := ComputeAdmins(folder, Options{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		d, ok := a.ByFingerprint(Fingerprint(k["d"]))
		if !ok || d.Round != 3 || d.GitHub != (GitHubAccount{Login: "d", ID: 13}) {
			t.Errorf("d = %+v, %v; want round 3, github:d/13", d, ok)
		}
		if want := []Fingerprint{Fingerprint(k["a"]), Fingerprint(k["c"])}; !slices.Equal(sorted(d.CertifiedBy), sorted(want)) {
			t.Errorf("d certified by %v; want %v", d.CertifiedBy, want)
		}
		if !a.IsAdmin(1) || len(a.ByGitHubID(1)) != 2 || a.IsAdmin(11) || a.IsAdmin(0) {
			t.Errorf("IsAdmin(1)=%v (keys %d), IsAdmin(11)=%v; want true (2), false", a.IsAdmin(1), len(a.ByGitHubID(1)), a.IsAdmin(11))
		}
	})
	t.Run("fail/revoked-admin-drops-dependents", func(t *testing.T) {
		g.RevokeKey(k["a"])
		if _, err := AddKeys(dir, g.Export(k["a"])); err != nil {
			t.Fatal(err)
		}
		f, err := LoadFolder(dir)
		if err != nil {
			t.Fatal(err)
		}
		a, err := ComputeAdmins(f, Options{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := adminFprs(a), names("r1", "r2", "r1b", "short", "certexp"); !slices.Equal(got, want) {
			t.Errorf("admins = %v; want %v", nameOf(k, got), nameOf(k, want))
		}
	})
}

func sorted(f []Fingerprint) []Fingerprint {
	out := slices.Clone(f)
	slices.Sort(out)
	return out
}

func nameOf(k map[string]string, fprs []string) []string {
	var out []string
	for _, f := range fprs {
		n := f
		for name, v := range k {
			if v == f {
				n = name
			}
		}
		out = append(out, n)
	}
	return out
}

func TestParseRoots(t *testing.T) {
	full := "0123456789ABCDEF0123456789ABCDEF01234567"
	tests := []struct {
		name, in string
		want     []Fingerprint
		err      error
		errText  string
	}{
		{name: "ok/one", in: full + "\n", want: []Fingerprint{Fingerprint(full)}},
		{name: "ok/spaced-lower-comments", in: "# roots\n\n0123 4567 89ab cdef 0123  4567 89AB CDEF 0123 4567\n", want: []Fingerprint{Fingerprint(full)}},
		{name: "ok/v6", in: strings.Repeat("ab", 32), want: []Fingerprint{Fingerprint(strings.Repeat("AB", 32))}},
		{name: "fail/long-key-id", in: "89ABCDEF01234567\n", err: ErrKeyID},
		{name: "fail/short-key-id", in: "0x01234567\n", err: ErrKeyID},
		{name: "fail/odd-length", in: full[:39] + "\n", errText: "39 hexadecimal digits"},
		{name: "fail/not-hex", in: strings.Repeat("G", 40), errText: "not hexadecimal"},
		{name: "fail/duplicate", in: full + "\n" + strings.ToLower(full) + "\n", errText: "listed twice"},
		{name: "fail/empty", in: "# nothing\n", errText: "no fingerprints"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRoots([]byte(tc.in))
			switch {
			case tc.err != nil && !errors.Is(err, tc.err):
				t.Fatalf("err = %v; want %v", err, tc.err)
			case tc.errText != "" && (err == nil || !strings.Contains(err.Error(), tc.errText)):
				t.Fatalf("err = %v; want %q", err, tc.errText)
			case tc.err == nil && tc.errText == "" && err != nil:
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v; want %v", got, tc.want)
			}
		})
	}
}

func TestParseUserID(t *testing.T) {
	tests := []struct {
		name, in string
		want     GitHubAccount
		ok       bool
	}{
		{"ok/full", "Alice Example (github:alice/101) <alice@example.org>", GitHubAccount{"alice", 101}, true},
		{"ok/no-email", "Alice (github:al-ice/7)", GitHubAccount{"al-ice", 7}, true},
		{"fail/no-id", "Alice (github:alice) <alice@example.org>", GitHubAccount{}, false},
		{"fail/zero-id", "Alice (github:alice/0)", GitHubAccount{}, false},
		{"fail/double-hyphen", "Alice (github:al--ice/7)", GitHubAccount{}, false},
		{"fail/trailing-hyphen", "Alice (github:alice-/7)", GitHubAccount{}, false},
		{"fail/login-too-long", "A (github:" + strings.Repeat("a", 40) + "/7)", GitHubAccount{}, false},
		{"fail/no-name", "(github:alice/7)", GitHubAccount{}, false},
		{"fail/two-comments", "A (x) (github:alice/7)", GitHubAccount{}, false},
		{"fail/extra-after", "A (github:alice/7) <a@b> x", GitHubAccount{}, false},
		{"fail/id-overflow", "A (github:alice/99999999999999999999)", GitHubAccount{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseUserID(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("ParseUserID(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
			}
			if !tc.ok && !errors.Is(err, ErrNoGitHubAccount) {
				t.Errorf("err = %v; want ErrNoGitHubAccount", err)
			}
		})
	}
}
