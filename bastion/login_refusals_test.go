package bastion

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
)

// refusalAudits counts the deny events for the certificate serials in
// serials: those audited one by one, and the refusals summed up in
// summaries.
func refusalAudits(t *testing.T, e *env, serials map[string]bool) (audited, suppressed int) {
	t.Helper()
	for _, ev := range e.audits(audit.TypeDeny) {
		if !serials[ev.Fields["serial"]] || ev.Outcome != audit.OutcomeDenied {
			continue
		}
		if n := ev.Fields["suppressed"]; n != "" {
			k, err := strconv.Atoi(n)
			if err != nil || !strings.Contains(ev.Reason, "like this were not audited one by one (the last: certificate serial") {
				t.Fatalf("summary %+v", ev)
			}
			suppressed += k
			continue
		}
		audited++
	}
	return audited, suppressed
}

// TestLoginRefusalsAcrossConnections: a refused certificate is decided
// once on its connection, however often it is offered there, and its
// refusals across connections are audited up to
// loginKeyBudget, the rest summed up in one event; the user is told the
// reason every time.
func TestLoginRefusalsAcrossConnections(t *testing.T) {
	e := newEnv(t, envOptions{})
	key, cert := e.issue(certOptions{ttl: time.Minute})
	e.offset.Store(int64(2 * time.Hour))
	s := certSigner(t, key, cert)
	serials := map[string]bool{fmt.Sprint(cert.Serial): true}
	const want = "has expired; sign in again with 'sallyport login'"
	conns := 0
	t.Run("fail/repeated-offer-decided-once", func(t *testing.T) {
		// The client offers the certificate again and again: only the
		// first proof is decided and audited, and MaxAuthTries ends
		// the connection.
		start := time.Now()
		_, banner, err := e.xclientBanner(e.login+"@web1", s, s, s, s, s, s, s, s)
		conns++
		if err == nil || !strings.Contains(banner, want) {
			t.Fatalf("got %v, banner %q; want refused with %q", err, banner, want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("the connection took %s to end", d)
		}
		if audited, _ := refusalAudits(t, e, serials); audited != 1 {
			t.Fatalf("%d refusals audited for one connection; want 1", audited)
		}
	})
	t.Run("fail/flood", func(t *testing.T) {
		for range 50 {
			_, banner, err := e.xclientBanner(e.login+"@web1", s, s, s, s, s, s, s, s)
			conns++
			if err == nil || !strings.Contains(banner, want) {
				t.Fatalf("got %v, banner %q; want refused with %q", err, banner, want)
			}
		}
		// The real client still sees the reason, audited or not.
		c := e.client(key, cert)
		r := c.ssh(nil, c.direct(e.login, "web1"), "true")
		conns++
		if r.code != 255 || !strings.Contains(r.stderr, want) {
			t.Fatalf("ssh: code %d stderr %q; want %q", r.code, r.stderr, want)
		}
		if audited, _ := refusalAudits(t, e, serials); audited > loginKeyBudget.burst {
			t.Fatalf("%d refusals audited for %d connections; want at most %d", audited, conns, loginKeyBudget.burst)
		}
	})
	t.Run("ok/summary", func(t *testing.T) {
		if err := e.srv.Close(); err != nil {
			t.Fatal(err)
		}
		audited, suppressed := refusalAudits(t, e, serials)
		if audited+suppressed != conns || suppressed == 0 {
			t.Fatalf("%d refusals audited and %d summed up; want %d in all, some summed up", audited, suppressed, conns)
		}
	})
}

// TestLoginRefusalsPerSource: refusals of many certificates from one
// source are audited up to loginSourceBudget, the rest summed up.
func TestLoginRefusalsPerSource(t *testing.T) {
	e := newEnv(t, envOptions{})
	const n = 80
	signers := make([]ssh.Signer, n)
	serials := map[string]bool{}
	for i := range signers {
		key, cert := e.issue(certOptions{ttl: time.Minute})
		signers[i] = certSigner(t, key, cert)
		serials[fmt.Sprint(cert.Serial)] = true
	}
	e.offset.Store(int64(2 * time.Hour))
	for i, s := range signers {
		if _, err := e.xclient(e.login+"@web1", s); err == nil {
			t.Fatalf("certificate %d accepted", i)
		}
	}
	audited, _ := refusalAudits(t, e, serials)
	if audited > loginSourceBudget.burst+1 {
		t.Fatalf("%d refusals from one source audited; want at most %d", audited, loginSourceBudget.burst+1)
	}
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if audited, suppressed := refusalAudits(t, e, serials); audited+suppressed != n {
		t.Fatalf("%d refusals audited and %d summed up; want %d in all", audited, suppressed, n)
	}
}
