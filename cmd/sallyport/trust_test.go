package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sallyport/sallyport/internal/gpgtest"
	"github.com/sallyport/sallyport/trust"
)

// gpgWorld is a GnuPG home with two root admins, a third admin certified by
// both, and an outsider, all added to a trust folder with the CLI.
type gpgWorld struct {
	gpg                           *gpgtest.Home
	dir                           string // scratch folder
	trustDir                      string
	root1, root2, admin, outsider string
}

func adminUID(name string, id int) string {
	return fmt.Sprintf("%s (github:%s/%d) <%s@example.org>", name, name, id, name)
}

func newGPGWorld(t *testing.T, trustDir string) *gpgWorld {
	t.Helper()
	g := gpgtest.New(t)
	w := &gpgWorld{gpg: g, dir: t.TempDir(), trustDir: trustDir}
	w.root1 = g.GenKey(adminUID("root1", 1), "1y")
	w.root2 = g.GenKey(adminUID("root2", 2), "1y")
	w.admin = g.GenKey(adminUID("admin", 3), "1y")
	w.outsider = g.GenKey(adminUID("outsider", 4), "1y")
	g.Certify(w.root1, w.admin)
	g.Certify(w.root2, w.admin)
	runCLI(t, "trust", "init", "--trust", trustDir, "--roots", w.root1+","+w.root2)
	runCLI(t, "trust", "add", "--trust", trustDir, w.export(t, w.root1, w.root2, w.admin, w.outsider))
	return w
}

// export writes the public keys of fprs to a file and returns its path.
func (w *gpgWorld) export(t *testing.T, fprs ...string) string {
	t.Helper()
	return w.write(t, "keys.asc", w.gpg.Export(fprs...))
}

// secret writes the secret key of fpr to a file and returns its path.
func (w *gpgWorld) secret(t *testing.T, fpr string) string {
	t.Helper()
	return w.write(t, "secret-"+fpr+".asc", w.gpg.ExportSecret(fpr))
}

func (w *gpgWorld) write(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(w.dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTrustCommands(t *testing.T) {
	trustDir := filepath.Join(t.TempDir(), "trust")
	w := newGPGWorld(t, trustDir)

	out := runCLI(t, "trust", "admins", "--trust", trustDir)
	for _, want := range []string{
		"3 admin(s), threshold 2",
		"github:root1/1  " + w.root1 + "  root",
		"github:admin/3  " + w.admin + "  round 1, certified by",
		"1 key(s) not admitted",
		w.outsider,
		"certified by 0 distinct admins; 2 needed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("trust admins output lacks %q:\n%s", want, out)
		}
	}
	if out := runCLI(t, "trust", "admins", "--trust", trustDir, "--threshold", "3"); !strings.Contains(out, "2 admin(s)") {
		t.Errorf("threshold 3 output:\n%s", out)
	}

	file := w.write(t, "policy.yaml", []byte("org: example\n"))
	sig1 := w.write(t, "policy.yaml.asc", w.gpg.DetachSign(w.root1, file))
	sigOut := w.write(t, "policy.yaml.outsider.asc", w.gpg.DetachSign(w.outsider, file))
	tests := []struct {
		name string
		args []string
		out  string // in stdout
		err  string // in the error; "" means success
	}{
		{name: "ok/one-admin", args: []string{file, sig1}, out: "signed by 1 distinct admin(s), 1 required: OK"},
		{name: "ok/default-signature-files", args: []string{file}, out: "refused signature by " + w.outsider},
		{name: "fail/two-required", args: []string{"--required", "2", file}, err: "signed by 1 distinct admins, 2 required"},
		{name: "fail/outsider-only", args: []string{file, sigOut}, out: "not an admin", err: "not enough valid admin signatures"},
		{name: "fail/changed-file", args: []string{w.write(t, "other.yaml", []byte("org: evil\n")), sig1}, err: "bad signature"},
		{name: "fail/no-trust-flag", args: []string{file, sig1, "--trust", ""}, err: "--trust is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := tryCLI(t, append([]string{"trust", "verify", "--trust", trustDir}, tc.args...)...)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("err = %v; want %q\n%s", err, tc.err, out)
			}
			if !strings.Contains(out, tc.out) {
				t.Errorf("output lacks %q:\n%s", tc.out, out)
			}
		})
	}

	t.Run("fail/init-key-id", func(t *testing.T) {
		_, _, err := tryCLI(t, "trust", "init", "--trust", filepath.Join(t.TempDir(), "t"), "--roots", w.root1[24:])
		if !errors.Is(err, trust.ErrKeyID) {
			t.Errorf("err = %v; want ErrKeyID", err)
		}
	})
	t.Run("fail/init-twice", func(t *testing.T) {
		_, _, err := tryCLI(t, "trust", "init", "--trust", trustDir, "--roots", w.root1)
		if err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Errorf("err = %v; want already exists", err)
		}
	})
	t.Run("fail/add-secret-key", func(t *testing.T) {
		_, _, err := tryCLI(t, "trust", "add", "--trust", trustDir, w.secret(t, w.admin))
		if !errors.Is(err, trust.ErrSecretKey) {
			t.Errorf("err = %v; want ErrSecretKey", err)
		}
	})
	t.Run("ok/add-merges-new-certification", func(t *testing.T) {
		w.gpg.Certify(w.root1, w.outsider)
		w.gpg.Certify(w.admin, w.outsider)
		// Only the outsider's key, with its new certifications.
		if out := runCLI(t, "trust", "add", "--trust", trustDir, w.export(t, w.outsider)); !strings.HasPrefix(out, "updated "+w.outsider) {
			t.Errorf("add output %q", out)
		}
		if out := runCLI(t, "trust", "admins", "--trust", trustDir); !strings.Contains(out, "4 admin(s)") || !strings.Contains(out, "github:outsider/4  "+w.outsider+"  round 2") {
			t.Errorf("after certification:\n%s", out)
		}
	})
}

// newHomeWith returns a fresh GnuPG home holding only fpr's secret key, as
// that admin's own machine would.
func newHomeWith(t *testing.T, w *gpgWorld, fpr string) *gpgtest.Home {
	t.Helper()
	h := gpgtest.New(t)
	h.Import(w.gpg.ExportSecret(fpr))
	return h
}

// other returns a GnuPG home holding only the outsider's secret key.
func other(t *testing.T, w *gpgWorld) *gpgtest.Home { return newHomeWith(t, w, w.outsider) }
