package bastion

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
)

func TestCheckDestination(t *testing.T) {
	for _, tc := range []struct {
		name    string
		host    string
		port    uint32
		refused string // part of the reason; "" for accepted
	}{
		{"ok/name", "db1.internal", 5432, ""},
		{"ok/localhost", "localhost", 22, ""},
		{"ok/underscore", "_ldap._tcp.example.org", 389, ""},
		{"ok/ipv4", "127.0.0.1", 1, ""},
		{"ok/ipv6", "::1", 65535, ""},
		{"ok/ipv6-zone", "fe80::1%eth0", 80, ""},
		{"ok/longest", strings.Repeat("a.", 126) + "a", 80, ""},
		{"fail/empty", "", 80, "no host"},
		{"fail/too-long", strings.Repeat("a", 254), 80, "longer than 253"},
		{"fail/huge", strings.Repeat("a", 200000), 80, "longer than 253"},
		{"fail/space", "db 1", 80, "not a host name"},
		{"fail/control", "db1\x1b[2J", 80, "not a host name"},
		{"fail/nul", "db1\x00evil", 80, "not a host name"},
		{"fail/invalid-utf8", "db\xff", 80, "not a host name"},
		{"fail/option-like", "-oProxyCommand=x", 80, "not a host name"},
		{"fail/brackets", "[::1]", 80, "not a host name"},
		{"fail/zone-control", "fe80::1%\x1b", 80, "not a host name"},
		{"fail/port-zero", "db1", 0, "port 0"},
		{"fail/port-large", "db1", 65536, "port 65536"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := checkDestination(tc.host, tc.port)
			switch {
			case tc.refused == "" && got != "":
				t.Errorf("checkDestination(%.40q, %d) = %q; want accepted", tc.host, tc.port, got)
			case tc.refused != "" && !strings.Contains(got, tc.refused):
				t.Errorf("checkDestination(%.40q, %d) = %q; want refused: %s", tc.host, tc.port, got, tc.refused)
			case len(got) > 200 || strings.ContainsAny(got, "\x00\x1b"):
				t.Errorf("checkDestination(%.40q, %d) = %.300q; want a short reason, escaped", tc.host, tc.port, got)
			}
		})
	}
}

// TestForwardDestinationFlood: a client asking again and again for
// forwards to a huge host name is refused before anything else, with a
// bounded amount of audit, and its connection is closed for too many
// refusals.
func TestForwardDestinationFlood(t *testing.T) {
	e := newEnv(t, envOptions{})
	cl := e.webClient(certOptions{})
	host := strings.Repeat("a", 200000)
	var err error
	for i := 0; i < 10*maxRefusals && err == nil; i++ {
		var ch ssh.Channel
		ch, _, err = cl.OpenChannel("direct-tcpip", ssh.Marshal(directTCPIP{Host: host, Port: 80, OriginHost: "127.0.0.1", OriginPort: 1}))
		var oe *ssh.OpenChannelError
		switch {
		case err == nil:
			ch.Close()
			t.Fatal("forward to a 200000-byte host name opened")
		case errors.As(err, &oe):
			if !strings.Contains(oe.Message, "longer than 253") {
				t.Fatalf("refused with %q; want the reason", oe.Message)
			}
			err = nil
		}
	}
	if err == nil {
		t.Fatalf("the connection is still open after %d refused forwards", 10*maxRefusals)
	}
	var size, n int
	for _, ev := range e.audits("") {
		if ev.Type == audit.TypePortForward || ev.Type == audit.TypeDeny {
			n++
			size += len(ev.Reason)
			for _, v := range ev.Fields {
				size += len(v)
			}
		}
	}
	if n > maxRefusals+1 || size > 16<<10 {
		t.Errorf("%d audit events, %d bytes of reasons and fields; want at most %d events of a few hundred bytes", n, size, maxRefusals+1)
	}
}

// TestForwardOutcomeAudited: a forward is audited once the target opened
// it, and a forward the target refuses is audited as refused, with the
// target's reason, never as opened. Real ssh -W through both target forms.
func TestForwardOutcomeAudited(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(e.issue(certOptions{}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close() // nothing listens there now: the target's sshd cannot connect
	for name, args := range map[string][]string{
		"direct": c.direct(e.login, "web1", "-W", closed),
		"jump":   c.jump(e.login, "web1", "-W", closed),
	} {
		r := c.ssh(nil, args)
		if r.code == 0 || !strings.Contains(r.stderr, "open failed") {
			t.Errorf("%s: code %d stderr %q; want the forward refused", name, r.code, r.stderr)
		}
	}
	ok := c.ssh(strings.NewReader("SSH-2.0-test\r\n"), c.direct(e.login, "web1", "-W", "127.0.0.1:"+strconv.Itoa(e.target.Port)))
	if !strings.HasPrefix(ok.stdout, "SSH-2.0-") {
		t.Errorf("forward to the target's sshd: code %d stdout %q stderr %q", ok.code, ok.stdout, ok.stderr)
	}
	waitFor(t, 5*time.Second, "the forward's close to be audited", func() bool {
		for _, ev := range e.audits(audit.TypePortForward) {
			if ev.Reason == "closed" {
				return true
			}
		}
		return false
	})
	var refused, opened int
	for _, ev := range e.audits(audit.TypePortForward) {
		switch dest := ev.Fields["destination"]; {
		case dest == closed && ev.Outcome != audit.OutcomeOK && strings.Contains(ev.Reason, "Connection refused"):
			refused++
		case dest == closed:
			t.Errorf("forward to %s audited as %s %q; want refused by the target", dest, ev.Outcome, ev.Reason)
		case ev.Outcome == audit.OutcomeOK && ev.Reason == "opened":
			opened++
		}
	}
	if refused != 2 || opened != 1 {
		t.Errorf("audited %d forwards refused by the target and %d opened; want 2 and 1", refused, opened)
	}
}
