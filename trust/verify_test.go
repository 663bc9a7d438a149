package trust

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sallyport/sallyport/atomicfile"
)

func TestVerifyPolicy(t *testing.T) {
	w := newWorld(t)
	g := w.gpg
	short := g.GenKey(uid("short", 5), "1d")
	g.Certify(w.root1, short)
	g.Certify(w.root2, short)
	w.add(t, short)

	policy := []byte("org: example\r\nroles:\r\n  - name: ops\r\n")
	policyPath := w.file(t, "policy.yaml", policy)
	oldPath := w.file(t, "old.yaml", []byte("org: example\n"))
	sig := func(signer string, extra ...string) []byte { return g.DetachSign(signer, policyPath, extra...) }
	r1, r2, ad, out := sig(w.root1), sig(w.root2), sig(w.admin), sig(w.outsider)
	binary := g.Run("--local-user", w.root2, "--output", "-", "--detach-sign", policyPath)
	text := sig(w.root2, "--textmode")
	// The same text with LF line endings: a text-mode signature would
	// still verify over it.
	lfPath := w.file(t, "policy-lf.yaml", bytes.ReplaceAll(policy, []byte("\r\n"), []byte("\n")))
	textLF := g.DetachSign(w.root2, lfPath, "--textmode")
	old := g.DetachSign(w.root2, oldPath)
	inline := g.Run("--local-user", w.root2, "--armor", "--output", "-", "--sign", policyPath)
	clear := g.ClearSign(w.root2, policyPath)
	shortSig := sig(short)
	now := time.Now().Add(time.Second)

	tests := []struct {
		name     string
		data     []byte
		sigs     [][]byte
		required int
		at       time.Time
		opts     PolicyOptions
		signers  []string // GitHub logins
		err      error
		reason   string
	}{
		{name: "ok/two-admins-one-file", sigs: [][]byte{append(append([]byte{}, r1...), ad...)}, signers: []string{"root1", "admin"}},
		{name: "ok/two-files-binary-and-armored", sigs: [][]byte{r1, binary}, signers: []string{"root1", "root2"}},
		{name: "ok/one-required", sigs: [][]byte{r1}, required: 1, signers: []string{"root1"}},
		{name: "ok/three-of-two", sigs: [][]byte{r1, r2, ad}, signers: []string{"root1", "root2", "admin"}},
		{name: "fail/tampered", data: append(append([]byte{}, policy...), "  - name: evil\n"...), sigs: [][]byte{r1, r2}, err: ErrNotEnoughSignatures, reason: "bad signature"},
		{name: "fail/non-admin", sigs: [][]byte{r1, out}, err: ErrNotEnoughSignatures, reason: "not an admin", signers: []string{"root1"}},
		{name: "fail/too-few", sigs: [][]byte{r1}, err: ErrNotEnoughSignatures, signers: []string{"root1"}},
		{name: "fail/same-admin-twice", sigs: [][]byte{r1, r1}, err: ErrNotEnoughSignatures, signers: []string{"root1"}},
		{name: "fail/expired-signing-key", sigs: [][]byte{r1, shortSig}, at: now.Add(50 * time.Hour), err: ErrNotEnoughSignatures, reason: "not an admin: key is expired", signers: []string{"root1"}},
		{name: "ok/signing-key-before-expiry", sigs: [][]byte{r1, shortSig}, signers: []string{"root1", "short"}},
		{name: "fail/text-mode", sigs: [][]byte{r1, text}, err: ErrNotEnoughSignatures, reason: "text-mode", signers: []string{"root1"}},
		{name: "fail/text-mode-changed-line-endings", sigs: [][]byte{r1, textLF}, err: ErrNotEnoughSignatures, reason: "text-mode", signers: []string{"root1"}},
		{name: "fail/signature-over-older-policy", sigs: [][]byte{r1, old}, err: ErrNotEnoughSignatures, reason: "bad signature", signers: []string{"root1"}},
		{name: "fail/inline-signed", sigs: [][]byte{r1, inline}, err: ErrNotDetached},
		{name: "fail/clear-signed", sigs: [][]byte{r1, clear}, err: ErrNotDetached},
		{name: "fail/garbage", sigs: [][]byte{[]byte("not a signature")}, err: ErrNotDetached},
		{name: "fail/no-signatures", sigs: nil, err: ErrNotDetached},
		{name: "fail/rollback", sigs: [][]byte{r1, r2}, opts: PolicyOptions{NotBefore: now.Add(time.Minute)}, err: ErrNotEnoughSignatures, reason: "before the policy in force"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			at := tc.at
			if at.IsZero() {
				at = now
			}
			a := w.admins(t, at)
			data := tc.data
			if data == nil {
				data = policy
			}
			opts := tc.opts
			opts.Required = 2
			if tc.required != 0 {
				opts.Required = tc.required
			}
			v, err := a.VerifyPolicy(data, tc.sigs, opts)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("err = %v; want %v", err, tc.err)
			}
			var logins []string
			for _, s := range v.Signers() {
				logins = append(logins, s.Login)
			}
			slices.Sort(logins)
			want := slices.Clone(tc.signers)
			slices.Sort(want)
			if !slices.Equal(logins, want) {
				t.Errorf("signers = %v; want %v (%s)", logins, want, v)
			}
			if tc.reason != "" && !strings.Contains(v.String(), tc.reason) {
				t.Errorf("verification %q; want a reason containing %q", v, tc.reason)
			}
		})
	}
}

func TestSignatureFiles(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/policy.yaml"
	for _, n := range []string{"policy.yaml", "policy.yaml.asc", "policy.yaml.bob.asc", "policy.yaml.alice.asc", "other.asc"} {
		if err := atomicfile.Write(dir+"/"+n, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := SignatureFiles(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{p + ".asc", p + ".alice.asc", p + ".bob.asc"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v; want %v", got, want)
	}
	if _, err := SignatureFiles(dir + "/third"); err == nil {
		t.Errorf("no error for a document without signatures")
	}
}
