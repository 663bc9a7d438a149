package bastion

import (
	"errors"
	"strings"
	"testing"
)

func TestParseUser(t *testing.T) {
	for _, tc := range []struct {
		name, in    string
		login, host string
		ok          bool
	}{
		{"ok/login-host", "root@web1", "root", "web1", true},
		{"ok/login-only", "deploy", "deploy", "", true},
		{"ok/fqdn-lowercased", "root@Web1.EU", "root", "web1.eu", true},
		{"ok/dotted-login", "a.b_c-d@db-1", "a.b_c-d", "db-1", true},
		{"fail/empty", "", "", "", false},
		{"fail/empty-host", "root@", "", "", false},
		{"fail/empty-login", "@web1", "", "", false},
		{"fail/two-at", "root@web1@evil", "", "", false},
		{"fail/percent", "root%web1@web1", "", "", false},
		{"fail/percent-host", "root@web%h", "", "", false},
		{"fail/option", "-oProxyCommand=x@web1", "", "", false},
		{"fail/option-host", "root@-oProxyCommand", "", "", false},
		{"fail/control", "root\n@web1", "", "", false},
		{"fail/escape", "root@web1\x1b[2J", "", "", false},
		{"fail/nul", "root\x00@web1", "", "", false},
		{"fail/non-ascii", "röot@web1", "", "", false},
		{"fail/space", "root @web1", "", "", false},
		{"fail/ip", "root@127.0.0.1", "", "", false},
		{"fail/ipv6", "root@::1", "", "", false},
		{"fail/glob", "root@web*", "", "", false},
		{"fail/comma", "root,admin@web1", "", "", false},
		{"fail/long-login", strings.Repeat("a", 33) + "@web1", "", "", false},
		{"fail/overlong", "root@" + strings.Repeat("a.", 200) + "b", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			login, host, err := ParseUser(tc.in)
			if tc.ok {
				if err != nil || login != tc.login || host != tc.host {
					t.Fatalf("got %q %q %v; want %q %q", login, host, err, tc.login, tc.host)
				}
				return
			}
			if !errors.Is(err, ErrBadUser) {
				t.Fatalf("got %q %q %v; want ErrBadUser", login, host, err)
			}
		})
	}
}

func FuzzParseUser(f *testing.F) {
	for _, s := range []string{"root@web1", "deploy", "root@web1@x", "a%b", "-o@x", "root@WEB1.example", "\x00", "r@1.2.3.4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		login, host, err := ParseUser(s)
		if err != nil {
			if !errors.Is(err, ErrBadUser) {
				t.Fatalf("error %v does not wrap ErrBadUser", err)
			}
			return
		}
		if len(s) > MaxUserLen {
			t.Fatalf("accepted %d bytes", len(s))
		}
		for _, part := range []string{login, host} {
			if strings.ContainsAny(part, "@%*?, \t\r\n") || strings.HasPrefix(part, "-") {
				t.Fatalf("accepted %q -> %q %q", s, login, host)
			}
			for _, r := range part {
				if r < 0x20 || r >= 0x7f {
					t.Fatalf("accepted control or non-ASCII in %q", s)
				}
			}
		}
		if login == "" {
			t.Fatalf("accepted empty login in %q", s)
		}
		want := login
		if host != "" {
			want += "@" + host
		}
		if !strings.EqualFold(want, s) {
			t.Fatalf("round trip %q -> %q", s, want)
		}
	})
}
