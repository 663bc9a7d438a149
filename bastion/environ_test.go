package bastion

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sallyport/sallyport/audit"
)

func TestCheckEnv(t *testing.T) {
	for _, tc := range []struct {
		name, env, value string
		refused          string // part of the reason; "" for accepted
	}{
		{"ok/lang", "LANG", "en_US.UTF-8", ""},
		{"ok/lang-modifier", "LANG", "sr_RS.UTF-8@latin", ""},
		{"ok/lang-empty", "LANG", "", ""},
		{"ok/lc-all", "LC_ALL", "C", ""},
		{"ok/lc-ctype", "LC_CTYPE", "C.UTF-8", ""},
		{"ok/lc-terminal", "LC_TERMINAL", "iTerm2", ""},
		{"ok/lc-terminal-version", "LC_TERMINAL_VERSION", "3.4.19", ""},
		{"ok/term", "TERM", "xterm-256color", ""},
		{"ok/term-dotted", "TERM", "screen.xterm-256color", ""},
		{"ok/term-plus", "TERM", "xterm+256color", ""},
		{"fail/not-listed", "FOO", "bar", "only LANG, LC_* and TERM"},
		{"fail/lower-case", "lc_all", "C", "only LANG, LC_* and TERM"},
		{"fail/lc-alone", "LC_", "C", "only LANG, LC_* and TERM"},
		{"fail/equals-in-name", "LC_X=Y", "C", "only LANG, LC_* and TERM"},
		{"fail/escape-in-name", "LC_\x1b]0;x\a", "C", "only LANG, LC_* and TERM"},
		{"fail/nul-in-name", "LC_A\x00B", "C", "only LANG, LC_* and TERM"},
		{"fail/long-name", "LC_" + strings.Repeat("A", 30), "C", "only LANG, LC_* and TERM"},
		{"fail/command", "LC_X", "touch /tmp/pwned; echo", "not a locale name"},
		{"fail/substitution", "LANG", "$(id)", "not a locale name"},
		{"fail/space", "LANG", "en US", "not a locale name"},
		{"fail/newline", "LC_ALL", "C\n", "not a locale name"},
		{"fail/invalid-utf8", "LANG", "\xff", "not a locale name"},
		{"fail/long-locale", "LANG", strings.Repeat("a", 65), "not a locale name"},
		{"fail/term-command", "TERM", "xterm; id", "not a terminal name"},
		{"fail/term-empty", "TERM", "", "not a terminal name"},
		{"fail/term-dash", "TERM", "-x", "not a terminal name"},
		{"fail/term-long", "TERM", strings.Repeat("x", 65), "not a terminal name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := checkEnv(tc.env, tc.value)
			switch {
			case tc.refused == "" && got != "":
				t.Errorf("checkEnv(%q, %q) = %q; want accepted", tc.env, tc.value, got)
			case tc.refused != "" && !strings.Contains(got, tc.refused):
				t.Errorf("checkEnv(%q, %q) = %q; want refused: %s", tc.env, tc.value, got, tc.refused)
			case strings.ContainsAny(got, "\x00\x1b\a\n"):
				t.Errorf("checkEnv(%q, %q) = %q; want the name escaped", tc.env, tc.value, got)
			}
		})
	}
}

// TestEnvSmuggled: a command hidden in an allowed variable (LC_X="...",
// then `eval "$LC_X"`) is refused by the bastion, although the target
// would accept it, and audited; the variables passed on are listed in the
// session's audit record. Real ssh with SendEnv, through both target
// forms.
func TestEnvSmuggled(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(e.issue(certOptions{}))
	mark := filepath.Join(t.TempDir(), "smuggled")
	environ := []string{"LC_X=touch " + mark + "; echo", "LC_ALL=C", "LANG=en_US.UTF-8"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LC_") && !strings.HasPrefix(kv, "LANG=") {
			environ = append(environ, kv)
		}
	}
	for name, args := range map[string][]string{"direct": c.direct(e.login, "web1"), "jump": c.jump(e.login, "web1")} {
		cmd := exec.Command("ssh", append(args, "-o", "SendEnv=LC_X LC_ALL LANG", "--", `eval "$LC_X"; echo "X=${LC_X-unset} ALL=${LC_ALL-unset} LANG=${LANG-unset}"`)...)
		cmd.Env = environ
		out, err := cmd.Output()
		if err != nil || string(out) != "X=unset ALL=C LANG=en_US.UTF-8\n" {
			t.Errorf("%s: got %q (%v); want LC_X refused and the others passed on", name, out, err)
		}
	}
	if _, err := os.Stat(mark); err == nil {
		t.Error("the command in LC_X ran on the target")
	}
	refused := 0
	for _, ev := range e.audits(audit.TypeDeny) {
		if strings.Contains(ev.Reason, `"LC_X"`) && strings.Contains(ev.Reason, "not a locale name") {
			refused++
		}
	}
	if refused != 2 {
		t.Errorf("audited %d refusals of LC_X; want one per session", refused)
	}
	starts := e.audits(audit.TypeSessionStart)
	for _, ev := range starts {
		if env := ev.Fields["env"]; env != "LANG=en_US.UTF-8 LC_ALL=C" {
			t.Errorf("session.start env %q; want the variables passed on", env)
		}
	}
	if len(starts) != 2 {
		t.Errorf("%d session.start events; want 2", len(starts))
	}
}

// TestTerminalTypeChecked: the terminal type of a pty request becomes TERM
// on the target; one that is not a terminal name is refused like such a
// TERM variable, and audited. Real ssh -tt with a crafted TERM gives up as
// with any refused pty; a sane one gets its terminal.
func TestTerminalTypeChecked(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(e.issue(certOptions{}))
	environ := []string{"TERM=xterm;touch /tmp/x"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TERM=") {
			environ = append(environ, kv)
		}
	}
	cmd := exec.Command("ssh", append(c.direct(e.login, "web1", "-tt"), "--", "echo TERM=$TERM")...)
	cmd.Env = environ
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "PTY allocation request failed") {
		t.Errorf("crafted TERM: %q (%v); want the pty refused", out, err)
	}
	cmd = exec.Command("ssh", append(c.direct(e.login, "web1", "-tt"), "--", "echo TERM=$TERM")...)
	cmd.Env = append(environ[1:], "TERM=xterm-256color")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "TERM=xterm-256color") {
		t.Errorf("xterm-256color: %q (%v); want a terminal", out, err)
	}
	refused := 0
	for _, ev := range e.audits(audit.TypeDeny) {
		if strings.Contains(ev.Reason, `terminal type "xterm;touch /tmp/x" refused`) {
			refused++
		}
	}
	if refused != 1 {
		t.Errorf("audited %d refusals of the terminal type; want 1", refused)
	}
}
