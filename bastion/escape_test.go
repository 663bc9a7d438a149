package bastion

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sallyport/sallyport/audit"
)

// TestAuditFieldsEscaped: paths, commands and other text from the client
// or the target reach the audit trail escaped, so that bytes that are not
// UTF-8 stay distinct instead of all becoming U+FFFD. Real sftp and ssh.
func TestAuditFieldsEscaped(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(e.issue(certOptions{}))
	dir := t.TempDir()
	ff, fe := filepath.Join(dir, "x\xff"), filepath.Join(dir, "x\xfe")
	for _, f := range sftpForms(e) {
		batch := "mkdir " + ff + "\nmkdir " + fe + "\nrmdir " + ff + "\nrmdir " + fe + "\n"
		args := append(append([]string{"-q", "-b", "-", "-F", c.config}, f.opts...), f.remote)
		if r := run(t, strings.NewReader(batch), "sftp", args...); r.code != 0 {
			t.Fatalf("%s: sftp: code %d stderr %q", f.name, r.code, r.stderr)
		}
		sftpOps(t, e, f.name, "mkdir "+dir+`/x\xff`, "mkdir "+dir+`/x\xfe`, "rmdir "+dir+`/x\xff`, "rmdir "+dir+`/x\xfe`)
	}

	// A command with bytes that are not UTF-8, and a backslash, which
	// escaping doubles so that it cannot be mistaken for an escape.
	r := c.ssh(nil, c.direct(e.login, "web1"), "echo \xff\xfe \\\\ | od -An -c")
	if r.code != 0 || !strings.Contains(r.stdout, "377 376") {
		t.Fatalf("code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	const want = `echo \xff\xfe \\\\ | od -An -c`
	for _, typ := range []string{audit.TypeSessionStart, audit.TypeExec} {
		evs := e.audits(typ)
		if len(evs) == 0 || evs[len(evs)-1].Fields["command"] != want {
			t.Errorf("%s events %+v; want the last with command %q", typ, evs, want)
		}
	}
	if _, err := os.Stat(ff); !os.IsNotExist(err) {
		t.Errorf("%q still there: %v", ff, err)
	}
}
