package trust

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sallyport/sallyport/internal/gpgtest"
)

// world is a GnuPG home with two root admins, one admin certified by both,
// and an outsider nobody certified, with a trust folder holding all four.
type world struct {
	gpg                 *gpgtest.Home
	dir                 string // trust folder
	root1, root2, admin string
	outsider            string
	roots               []Fingerprint
	threshold           int
}

func uid(name string, id int) string {
	return fmt.Sprintf("%s (github:%s/%d) <%s@example.org>", name, name, id, name)
}

func newWorld(t *testing.T) *world {
	t.Helper()
	g := gpgtest.New(t)
	w := &world{gpg: g, dir: filepath.Join(t.TempDir(), "trust"), threshold: 2}
	w.root1 = g.GenKey(uid("root1", 1), "1y")
	w.root2 = g.GenKey(uid("root2", 2), "1y")
	w.admin = g.GenKey(uid("admin", 3), "1y")
	w.outsider = g.GenKey(uid("outsider", 4), "1y")
	g.Certify(w.root1, w.admin)
	g.Certify(w.root2, w.admin)
	w.roots = []Fingerprint{Fingerprint(w.root1), Fingerprint(w.root2)}
	if err := InitFolder(w.dir, w.roots); err != nil {
		t.Fatal(err)
	}
	w.add(t, w.root1, w.root2, w.admin, w.outsider)
	return w
}

func (w *world) add(t *testing.T, fprs ...string) {
	t.Helper()
	if _, err := AddKeys(w.dir, w.gpg.Export(fprs...)); err != nil {
		t.Fatal(err)
	}
}

func (w *world) admins(t *testing.T, now time.Time) *Admins {
	t.Helper()
	f, err := LoadFolder(w.dir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := ComputeAdmins(f, Options{Threshold: w.threshold, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (w *world) file(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
