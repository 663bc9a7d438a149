package store

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
)

func TestPinLogins(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	pins, err := s.PinLogins(ctx, "directory", []SeenLogin{{"Carol", 2001}, {"bob", 1002}})
	if err != nil {
		t.Fatal(err)
	}
	if len(pins) != 2 || pins[0].Login != "carol" || pins[0].SeenAs != "Carol" || pins[0].GitHubID != 2001 || pins[0].Source != "directory" || pins[0].Actor != "" {
		t.Fatalf("first pins %+v", pins)
	}
	// carol renamed away; mallory (2099) took the login, in any case.
	pins, err = s.PinLogins(ctx, "web sign-in", []SeenLogin{{"CAROL", 2099}, {"carol-new", 2001}})
	if err != nil {
		t.Fatal(err)
	}
	if pins[0].GitHubID != 2001 || pins[0].Source != "directory" {
		t.Errorf("carol seen as 2099: pin %+v; want the first pin, to 2001, kept", pins[0])
	}
	if pins[1].Login != "carol-new" || pins[1].GitHubID != 2001 || pins[1].Source != "web sign-in" {
		t.Errorf("carol-new: %+v", pins[1])
	}
	var got []string
	for _, e := range auditTyped(t, s, AuditTypeLoginPin) {
		got = append(got, e.Actor+" "+e.Subject+" "+e.Fields["source"])
	}
	if want := []string{"github:2001 carol directory", "github:1002 bob directory", "github:2001 carol-new web sign-in"}; !slices.Equal(got, want) {
		t.Errorf("audited pins %q; want %q (only new pins)", got, want)
	}
	for _, bad := range []SeenLogin{{"", 1}, {"has space", 1}, {"carol", 0}, {"carol", -4}, {strings.Repeat("x", 101), 1}} {
		if _, err := s.PinLogins(ctx, "directory", []SeenLogin{bad}); err == nil {
			t.Errorf("PinLogins(%+v): no error", bad)
		}
	}
	if _, err := s.PinLogins(ctx, "", []SeenLogin{{"dave", 5}}); err == nil {
		t.Error("PinLogins without a source: no error")
	}
	list, err := s.LoginPins(ctx, LoginPinFilter{GitHubID: 2001})
	if err != nil || len(list) != 2 || list[0].Login != "carol" || list[1].Login != "carol-new" {
		t.Errorf("LoginPins(2001) = %+v, %v", list, err)
	}
	list, err = s.LoginPins(ctx, LoginPinFilter{Login: "CaRoL"})
	if err != nil || len(list) != 1 || list[0].GitHubID != 2001 {
		t.Errorf("LoginPins(CaRoL) = %+v, %v", list, err)
	}
}

func TestStanding(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	st, err := s.Standing(ctx, "github:2001", "carol", 2001, "bastion")
	if err != nil {
		t.Fatal(err)
	}
	if st.Suspension != nil || st.Pin == nil || st.Pin.GitHubID != 2001 || st.Pin.Source != "bastion" || !st.NewPin {
		t.Fatalf("first standing %+v %+v; want a new pin to 2001", st, st.Pin)
	}
	st, err = s.Standing(ctx, "github:2099", "Carol", 2099, "issuance")
	if err != nil {
		t.Fatal(err)
	}
	if st.NewPin || st.Pin.GitHubID != 2001 {
		t.Errorf("carol seen as 2099: %+v %+v; want the pin to 2001", st, st.Pin)
	}
	st, err = s.Standing(ctx, "github:2099", "", 0, "issuance")
	if err != nil || st.Pin != nil || st.NewPin {
		t.Errorf("without a login: %+v %v; want no pin", st, err)
	}
	if _, err := s.Standing(ctx, "github:2099", "bad login", 2099, "issuance"); err == nil {
		t.Error("a login GitHub cannot give: no error")
	}
	if _, _, err := s.Suspend(ctx, Suspension{Subject: "github:2099", Reason: "token leaked", Actor: "github:1"}); err != nil {
		t.Fatal(err)
	}
	st, err = s.Standing(ctx, "github:2099", "carol", 2099, "issuance")
	if err != nil {
		t.Fatal(err)
	}
	if sp := st.Suspension; sp == nil || sp.Subject != "github:2099" || sp.Reason != "token leaked" || sp.Actor != "github:1" || sp.Time.IsZero() {
		t.Errorf("suspension %+v", sp)
	}
	if st.Pin == nil || st.Pin.GitHubID != 2001 {
		t.Errorf("pin %+v; want it read with the suspension", st.Pin)
	}
}

func TestRepinAndUnpin(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	if _, err := s.PinLogins(ctx, "directory", []SeenLogin{{"carol", 2001}}); err != nil {
		t.Fatal(err)
	}
	old, err := s.Repin(ctx, "Carol", 2099, "github:1", "the old account was deleted")
	if err != nil || old == nil || old.GitHubID != 2001 {
		t.Fatalf("Repin: %+v %v; want the pin to 2001 replaced", old, err)
	}
	st, err := s.Standing(ctx, "github:2099", "carol", 2099, "bastion")
	if err != nil || st.Pin.GitHubID != 2099 || st.Pin.Source != PinSourceAdmin || st.Pin.Actor != "github:1" || st.Pin.Reason != "the old account was deleted" {
		t.Errorf("after re-pin: %+v %v", st.Pin, err)
	}
	evs := auditTyped(t, s, AuditTypeLoginPin)
	last := evs[len(evs)-1]
	if last.Actor != "github:1" || last.Subject != "carol" || last.Fields["github_id"] != "2099" || last.Fields["previous_github_id"] != "2001" || last.Reason == "" {
		t.Errorf("re-pin audited as %+v", last)
	}
	if old, err := s.Repin(ctx, "dave", 5, "github:1", "new volunteer"); err != nil || old != nil {
		t.Errorf("re-pin of an unpinned login: %+v %v", old, err)
	}
	for _, tc := range []struct {
		login         string
		id            int64
		actor, reason string
	}{{"carol", 0, "github:1", "x"}, {"carol", 5, "", "x"}, {"carol", 5, "github:1", " "}, {"no such", 5, "github:1", "x"}} {
		if _, err := s.Repin(ctx, tc.login, tc.id, tc.actor, tc.reason); err == nil {
			t.Errorf("Repin(%+v): no error", tc)
		}
	}

	p, err := s.Unpin(ctx, "CAROL", "github:1", "carol leaves the project")
	if err != nil || p.GitHubID != 2099 {
		t.Fatalf("Unpin: %+v %v", p, err)
	}
	if _, err := s.Unpin(ctx, "carol", "github:1", "again"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Unpin: %v; want ErrNotFound", err)
	}
	if _, err := s.Unpin(ctx, "dave", "", "x"); err == nil {
		t.Error("Unpin without an actor: no error")
	}
	evs = auditTyped(t, s, AuditTypeLoginPin)
	if last := evs[len(evs)-1]; last.Fields["released"] != "true" || last.Fields["previous_github_id"] != "2099" || last.Reason != "carol leaves the project" {
		t.Errorf("release audited as %+v", last)
	}
	// Released, the login is pinned to whoever is seen with it next.
	st, err = s.Standing(ctx, "github:3000", "carol", 3000, "web sign-in")
	if err != nil || !st.NewPin || st.Pin.GitHubID != 3000 {
		t.Errorf("after release: %+v %v", st.Pin, err)
	}
}

func TestParseSuspensionSubject(t *testing.T) {
	ci := "github-actions:environment=prod&ref=refs%2Fheads%2Fmain&repository=Example%2FSite&workflow=Deploy"
	tests := []struct {
		name, in, want string
	}{
		{"ok/number", " 1234 ", "github:1234"},
		{"ok/github", "github:1234", "github:1234"},
		{"ok/ci-repository", "ci:Example/Site", "ci:example/site"},
		{"ok/ci-identity-stands-for-its-repository", ci, "ci:example/site"},
		{"ok/oidc", "oidc:https://idp.example.org#u-1", "oidc:https://idp.example.org#u-1"},
		{"fail/login", "carol", ""},
		{"fail/zero", "github:0", ""},
		{"fail/negative", "-5", ""},
		{"fail/github-login", "github:carol", ""},
		{"fail/ci-no-repo", "ci:example", ""},
		{"fail/ci-identity-without-repository", "github-actions:ref=refs%2Fheads%2Fmain", ""},
		{"fail/breakglass", "breakglass:0123456789abcdef0123456789abcdef", ""},
		{"fail/empty", "", ""},
		{"fail/oidc-space", "oidc:a b", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSuspensionSubject(tc.in)
			if tc.want == "" {
				if err == nil {
					t.Errorf("got %q; want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if got := SuspensionSubject(ci); got != "ci:example/site" {
		t.Errorf("SuspensionSubject(ci) = %q", got)
	}
	if got := SuspensionSubject("github:5"); got != "github:5" {
		t.Errorf("SuspensionSubject(github:5) = %q", got)
	}
}

func TestSuspendAndLift(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	sp, fresh, err := s.Suspend(ctx, Suspension{Subject: "github:2001", Reason: "account compromised", Actor: "github:1"})
	if err != nil || !fresh || sp.Subject != "github:2001" || sp.Reason != "account compromised" || sp.Time.IsZero() {
		t.Fatalf("Suspend: %+v %v %v", sp, fresh, err)
	}
	again, fresh, err := s.Suspend(ctx, Suspension{Subject: "github:2001", Reason: "second thoughts", Actor: "github:2"})
	if err != nil || fresh || again.Reason != "account compromised" || again.Actor != "github:1" || !again.Time.Equal(sp.Time) {
		t.Errorf("suspending again: %+v %v %v; want the first suspension kept", again, fresh, err)
	}
	if _, _, err := s.Suspend(ctx, Suspension{Subject: "ci:example/site", Reason: "workflow hijacked", Actor: "github:1"}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Suspension{
		{Subject: "carol", Reason: "x", Actor: "a"},
		{Subject: "ci:Example/Site", Reason: "x", Actor: "a"}, // not canonical
		{Subject: "github:5", Reason: "x"},
		{Subject: "github:5", Actor: "a", Reason: "  "},
	} {
		if _, _, err := s.Suspend(ctx, bad); err == nil {
			t.Errorf("Suspend(%+v): no error", bad)
		}
	}
	list, err := s.Suspensions(ctx)
	if err != nil || len(list) != 2 || list[0].Subject != "github:2001" || list[1].Subject != "ci:example/site" {
		t.Fatalf("Suspensions: %+v %v", list, err)
	}
	evs := auditTyped(t, s, AuditTypeSuspend)
	if len(evs) != 3 || evs[1].Fields["already_suspended"] != "true" || evs[1].Actor != "github:2" || evs[0].Reason != "account compromised" {
		t.Errorf("suspensions audited as %+v", evs)
	}

	lifted, err := s.Lift(ctx, "github:2001", "github:2", "cleared up")
	if err != nil || lifted.Reason != "account compromised" {
		t.Fatalf("Lift: %+v %v", lifted, err)
	}
	if _, err := s.Lift(ctx, "github:2001", "github:2", "again"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Lift: %v; want ErrNotFound", err)
	}
	if _, err := s.Lift(ctx, "ci:example/site", "", "x"); err == nil {
		t.Error("Lift without an actor: no error")
	}
	evs = auditTyped(t, s, AuditTypeLift)
	if len(evs) != 1 || evs[0].Actor != "github:2" || evs[0].Subject != "github:2001" || evs[0].Reason != "cleared up" ||
		evs[0].Fields["suspended_by"] != "github:1" || evs[0].Fields["suspension_reason"] != "account compromised" {
		t.Errorf("lift audited as %+v", evs)
	}
	list, _ = s.Suspensions(ctx)
	if len(list) != 1 || list[0].Subject != "ci:example/site" {
		t.Errorf("after lift: %+v", list)
	}
}

// TestRecordIssuedSuspended: no certificate is recorded for a suspended
// identity, through RecordIssued or the Batcher, whatever its key.
func TestRecordIssuedSuspended(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	b := s.NewBatcher(BatchOptions{})
	defer b.Close()
	ca := newSigner(t)
	for _, sub := range []string{"github:2001", "ci:example/site"} {
		if _, _, err := s.Suspend(ctx, Suspension{Subject: sub, Reason: "compromised", Actor: "github:1"}); err != nil {
			t.Fatal(err)
		}
	}
	serial := uint64(0)
	next := func() uint64 { serial++; return serial }
	ciMain := "github-actions:ref=refs%2Fheads%2Fmain&repository=Example%2Fsite"
	ciOther := "github-actions:ref=refs%2Fheads%2Fmain&repository=example%2Fother"
	tests := []struct {
		name, identity string
		suspended      bool
	}{
		{"fail/github-user", "github:2001", true},
		{"fail/ci-workload-of-suspended-repository", ciMain, true},
		{"ok/other-user", "github:2002", false},
		{"ok/other-repository", ciOther, false},
	}
	for _, tc := range tests {
		for _, rec := range []struct {
			name   string
			record func(*ssh.Certificate, string) error
		}{{"record", func(c *ssh.Certificate, id string) error { return s.RecordIssued(ctx, c, id) }},
			{"batch", func(c *ssh.Certificate, id string) error { return b.RecordIssued(ctx, c, id) }}} {
			t.Run(tc.name+"/"+rec.name, func(t *testing.T) {
				err := rec.record(newCert(t, ca, newSigner(t).PublicKey(), next(), ssh.UserCert), tc.identity)
				if !tc.suspended {
					if err != nil {
						t.Fatalf("got %v; want recorded", err)
					}
					return
				}
				var se *SuspendedError
				if !errors.Is(err, ErrSuspended) || !errors.As(err, &se) || se.Identity != tc.identity || se.Reason != "compromised" {
					t.Fatalf("got %v; want a *SuspendedError for %s", err, tc.identity)
				}
				if !strings.Contains(err.Error(), "is suspended since") || !strings.Contains(err.Error(), `"compromised"`) {
					t.Errorf("error %q; want when and why", err)
				}
			})
		}
	}
	certs, err := s.Certificates(ctx, CertificateFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range certs {
		if c.Identity == "github:2001" || c.Identity == ciMain {
			t.Errorf("certificate %d recorded for suspended %s", c.Serial, c.Identity)
		}
	}
	if _, err := s.Lift(ctx, "github:2001", "github:1", "cleared"); err != nil {
		t.Fatal(err)
	}
	if err := b.RecordIssued(ctx, newCert(t, ca, newSigner(t).PublicKey(), next(), ssh.UserCert), "github:2001"); err != nil {
		t.Errorf("after lift: %v", err)
	}
}

// TestMigrateToStanding: a database of the schema before suspensions and
// login pins is brought up to date with its contents kept.
func TestMigrateToStanding(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sallyport.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for i, m := range migrations[:3] {
		if _, err := db.Exec(m); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`INSERT INTO schema_migrations VALUES (?, 'then')`, i+1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`INSERT INTO used_requests VALUES ('r1', 'then', 'github:1')`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s := openTest(t, path, Options{})
	if sum, err := s.Summary(ctx); err != nil || sum.SchemaVersion != schemaVersion {
		t.Fatalf("summary %+v %v; want version %d", sum, err, schemaVersion)
	}
	if err := s.UseRequest(ctx, "r1", audit.Event{Type: "breakglass", Actor: "x", Outcome: audit.OutcomeOK}); !errors.Is(err, ErrRequestUsed) {
		t.Errorf("request used before the migration: %v; want ErrRequestUsed", err)
	}
	if _, _, err := s.Suspend(ctx, Suspension{Subject: "github:1", Reason: "x", Actor: "github:2"}); err != nil {
		t.Errorf("suspend after migration: %v", err)
	}
	if _, err := s.PinLogins(ctx, "directory", []SeenLogin{{"a", 1}}); err != nil {
		t.Errorf("pin after migration: %v", err)
	}
}

// auditTyped returns the audit events of type typ, oldest first.
func auditTyped(t *testing.T, s *SQLite, typ string) []audit.Event {
	t.Helper()
	evs, err := s.AuditEvents(context.Background(), AuditQuery{Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(evs)
	return evs
}

// TestSuspendSelf: nobody suspends themselves, and a suspended actor
// suspends nobody, so two admins suspending each other at once leave one
// of them able to lift it.
func TestSuspendSelf(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	for _, tc := range []struct{ subject, actor string }{
		{"github:1003", "github:1003"},
		{"ci:example/site", "github-actions:ref=refs%2Fheads%2Fmain&repository=Example%2FSite"},
	} {
		if _, _, err := s.Suspend(ctx, Suspension{Subject: tc.subject, Reason: "oops", Actor: tc.actor}); !errors.Is(err, ErrSelfSuspension) {
			t.Errorf("%s suspending %s: %v; want ErrSelfSuspension", tc.actor, tc.subject, err)
		}
	}
	if list, err := s.Suspensions(ctx); err != nil || len(list) != 0 {
		t.Fatalf("suspensions after refusals: %+v %v", list, err)
	}
	if evs := auditTyped(t, s, AuditTypeSuspend); len(evs) != 0 {
		t.Errorf("refused suspensions audited as done: %+v", evs)
	}
	// carol and octo suspend each other; octo's comes second.
	if _, _, err := s.Suspend(ctx, Suspension{Subject: "github:1004", Reason: "account taken over", Actor: "github:1003"}); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.Suspend(ctx, Suspension{Subject: "github:1003", Reason: "account taken over", Actor: "github:1004"})
	var se *SuspendedError
	if !errors.As(err, &se) || se.Identity != "github:1004" || se.Actor != "github:1003" {
		t.Fatalf("suspended github:1004 suspending github:1003: %v; want the actor's own suspension", err)
	}
	if list, _ := s.Suspensions(ctx); len(list) != 1 || list[0].Subject != "github:1004" {
		t.Errorf("suspensions %+v; want github:1004's only", list)
	}
	// The CA's machine is never suspended.
	if _, _, err := s.Suspend(ctx, Suspension{Subject: "github:1003", Reason: "x", Actor: "offline:root"}); err != nil {
		t.Errorf("offline suspension: %v", err)
	}
}

func TestRevokeIdentity(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	ca, sessionCA := newSigner(t), newSigner(t)
	sessionFP := ssh.FingerprintSHA256(sessionCA.PublicKey())
	k1, k2, other := newSigner(t).PublicKey(), newSigner(t).PublicKey(), newSigner(t).PublicKey()
	serial := uint64(0)
	record := func(signer ssh.Signer, key ssh.PublicKey, identity string) {
		t.Helper()
		serial++
		if err := s.RecordIssued(ctx, newCert(t, signer, key, serial, ssh.UserCert), identity); err != nil {
			t.Fatal(err)
		}
	}
	for _, rec := range []struct {
		key      ssh.PublicKey
		identity string
	}{{k1, "github:1"}, {k1, "github:1"}, {k2, "github:1"}, {other, "github:2"}} {
		record(ca, rec.key, rec.identity)
	}
	// The bastion's session certificates of github:1's connections, each
	// of a one-minute key of its own.
	for range 20 {
		record(sessionCA, newSigner(t).PublicKey(), "github:1")
	}
	done, err := s.RevokeIdentity(ctx, "github:1", sessionFP, "account compromised", "github:9")
	if err != nil || done.Keys != 2 || done.Certificates != 3 || done.Sessions != 20 {
		t.Fatalf("RevokeIdentity: %+v %v; want 2 keys, 3 certificates, 20 session certificates left", done, err)
	}
	revs, err := s.Revocations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	revoked := map[string]bool{}
	var serials []uint64
	for _, r := range revs {
		if r.Actor != "github:9" || r.Reason != "account compromised" || !r.Time.Equal(revs[0].Time) {
			t.Errorf("revocation %+v; want by github:9, at the time of the first (%s): one transaction", r, revs[0].Time)
		}
		if r.Key != nil {
			revoked[ssh.FingerprintSHA256(r.Key)] = true
		} else {
			serials = append(serials, r.Serial)
		}
	}
	if len(revoked) != 2 || !revoked[ssh.FingerprintSHA256(k1)] || !revoked[ssh.FingerprintSHA256(k2)] {
		t.Errorf("revoked keys %v; want github:1's two only, no session key", revoked)
	}
	if !slices.Equal(serials, []uint64{1, 2, 3}) {
		t.Errorf("revoked serials %v; want 1, 2 and 3, no session certificate", serials)
	}
	evs := auditTyped(t, s, audit.TypeRevoke)
	if len(evs) != 2 || evs[0].Subject != ssh.FingerprintSHA256(k1) || evs[0].Fields["revoked_serials"] != "1,2" || evs[0].Fields["identity"] != "github:1" {
		t.Errorf("revocations audited as %+v; want one event per key", evs)
	}
	// Again: nothing new, still audited.
	if done, err := s.RevokeIdentity(ctx, "github:1", sessionFP, "again", "github:9"); err != nil || done.Keys != 2 {
		t.Errorf("again: %+v %v", done, err)
	}
	if evs := auditTyped(t, s, audit.TypeRevoke); len(evs) != 4 || evs[3].Fields["already_revoked"] != "true" {
		t.Errorf("revoking again audited as %+v", evs)
	}
	// Without the session CA, nothing is left alone.
	if done, err := s.RevokeIdentity(ctx, "github:1", "", "everything", "github:9"); err != nil || done.Keys != 22 || done.Sessions != 0 {
		t.Errorf("without a session CA: %+v %v; want all 22 keys", done, err)
	}
	if done, err := s.RevokeIdentity(ctx, "github:3", sessionFP, "x", "github:9"); err != nil || done.Keys != 0 || done.Certificates != 0 {
		t.Errorf("identity without certificates: %+v %v", done, err)
	}
	if _, err := s.RevokeIdentity(ctx, "", sessionFP, "x", "github:9"); err == nil {
		t.Error("no identity: no error")
	}
	if _, err := s.RevokeIdentity(ctx, "github:3", sessionFP, "x", ""); err == nil {
		t.Error("no actor: no error")
	}
}
