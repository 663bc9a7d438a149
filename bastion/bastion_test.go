package bastion

import (
	"strings"
	"testing"
)

func TestExecBothForms(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(e.issue(certOptions{}))
	for _, form := range []struct {
		name string
		args func(login, host string, args ...string) []string
	}{
		{"direct", c.direct},
		{"jump", c.jump},
	} {
		t.Run(form.name, func(t *testing.T) {
			for _, tc := range []struct {
				name, cmd, out string
				code           int
			}{
				{"ok/exit0", "echo hello", "hello\n", 0},
				{"ok/exit1", "echo bye; exit 1", "bye\n", 1},
				{"ok/stderr", "echo oops >&2; exit 3", "", 3},
			} {
				t.Run(tc.name, func(t *testing.T) {
					r := c.ssh(nil, form.args(e.login, "web1"), tc.cmd)
					if r.code != tc.code || r.stdout != tc.out {
						t.Fatalf("got code %d stdout %q; want %d %q (stderr %q)", r.code, r.stdout, tc.code, tc.out, r.stderr)
					}
					if strings.Contains(tc.cmd, ">&2") && !strings.Contains(r.stderr, "oops") {
						t.Fatalf("stderr %q lacks oops", r.stderr)
					}
				})
			}
		})
	}
}
