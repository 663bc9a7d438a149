package store

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
)

var t0 = time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)

// fakeClock is a clock advancing one second per reading.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func openTest(t testing.TB, path string, opts Options) *SQLite {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "sallyport.db")
	}
	if opts.Now == nil {
		opts.Now = (&fakeClock{t: t0}).Now
	}
	s, err := Open(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newCert returns a certificate for key signed by ca.
func newCert(t testing.TB, ca ssh.Signer, key ssh.PublicKey, serial uint64, typ uint32, principals ...string) *ssh.Certificate {
	t.Helper()
	if len(principals) == 0 {
		principals = []string{"root"} // x/crypto refuses to sign without
	}
	c := &ssh.Certificate{
		Key:             key,
		Serial:          serial,
		CertType:        typ,
		KeyId:           "alice/12345/" + string(rune('a'+serial%26)),
		ValidPrincipals: principals,
		ValidAfter:      uint64(t0.Add(-5 * time.Minute).Unix()),
		ValidBefore:     uint64(t0.Add(8 * time.Hour).Unix()),
		Permissions:     ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}},
	}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNextSerialConcurrent(t *testing.T) {
	s := openTest(t, "", Options{})
	const goroutines, each = 100, 5
	var (
		mu   sync.Mutex
		seen = map[uint64]bool{}
		wg   sync.WaitGroup
	)
	for range goroutines {
		wg.Go(func() {
			for range each {
				n, err := s.NextSerial(context.Background())
				if err != nil {
					t.Errorf("NextSerial: %v", err)
					return
				}
				mu.Lock()
				if n == 0 || seen[n] {
					t.Errorf("got serial %d twice or zero", n)
				}
				seen[n] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if got, want := len(seen), goroutines*each; got != want {
		t.Errorf("got %d distinct serials; want %d", got, want)
	}
}

func TestNextSerialIncreasesAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	var last uint64
	for round := range 3 {
		s, err := Open(context.Background(), path, Options{})
		if err != nil {
			t.Fatalf("round %d: Open: %v", round, err)
		}
		for range 3 {
			n, err := s.NextSerial(context.Background())
			if err != nil {
				t.Fatalf("round %d: NextSerial: %v", round, err)
			}
			if n <= last {
				t.Fatalf("round %d: got serial %d after %d; want strictly increasing, never 0", round, n, last)
			}
			last = n
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if last != 9 {
		t.Errorf("got last serial %d; want 9", last)
	}
}

func TestNextSerialSkipsRecorded(t *testing.T) {
	s := openTest(t, "", Options{})
	ca := newSigner(t)
	if err := s.RecordIssued(context.Background(), newCert(t, ca, newSigner(t).PublicKey(), 40, ssh.UserCert, "root"), "offline:ca-cli"); err != nil {
		t.Fatal(err)
	}
	n, err := s.NextSerial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != 41 {
		t.Errorf("got serial %d after recording 40; want 41", n)
	}
}

func TestCertificatesRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	ca := newSigner(t)
	alice, bob := newSigner(t).PublicKey(), newSigner(t).PublicKey()
	host := newSigner(t).PublicKey()
	certs := map[uint64]*ssh.Certificate{}
	for _, c := range []struct {
		key      ssh.PublicKey
		typ      uint32
		identity string
		p        []string
	}{
		{alice, ssh.UserCert, "github:1", []string{"root", "deploy"}},
		{bob, ssh.UserCert, "github:2", []string{"deploy"}},
		{alice, ssh.UserCert, "github:1", []string{"alice"}},
		{host, ssh.HostCert, "offline:ca-cli", []string{"web1.example.org"}},
	} {
		serial, err := s.NextSerial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cert := newCert(t, ca, c.key, serial, c.typ, c.p...)
		if err := s.RecordIssued(ctx, cert, c.identity); err != nil {
			t.Fatalf("RecordIssued(%d): %v", serial, err)
		}
		certs[serial] = cert
	}
	forever := newCert(t, ca, bob, 5, ssh.UserCert, "x")
	forever.ValidAfter, forever.ValidBefore = 0, ssh.CertTimeInfinity
	if err := forever.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordIssued(ctx, forever, "github:2"); err != nil {
		t.Fatal(err)
	}
	certs[5] = forever

	tests := []struct {
		name string
		f    CertificateFilter
		want []uint64
	}{
		{"ok/all", CertificateFilter{}, []uint64{5, 4, 3, 2, 1}},
		{"ok/serial", CertificateFilter{Serial: 2}, []uint64{2}},
		{"ok/key", CertificateFilter{KeyFingerprint: ssh.FingerprintSHA256(alice)}, []uint64{3, 1}},
		{"ok/identity", CertificateFilter{Identity: "github:2"}, []uint64{5, 2}},
		{"ok/key-and-identity", CertificateFilter{KeyFingerprint: ssh.FingerprintSHA256(bob), Identity: "github:1"}, nil},
		{"ok/limit", CertificateFilter{Limit: 2}, []uint64{5, 4}},
		{"ok/unknown-serial", CertificateFilter{Serial: 99}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Certificates(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			var serials []uint64
			for _, c := range got {
				serials = append(serials, c.Serial)
			}
			if !slices.Equal(serials, tt.want) {
				t.Fatalf("got serials %v; want %v", serials, tt.want)
			}
			for _, c := range got {
				checkRecord(t, c, certs[c.Serial])
			}
		})
	}
	if _, err := s.Certificates(ctx, CertificateFilter{Limit: -1}); err == nil {
		t.Error("got no error for a negative limit")
	}
}

func checkRecord(t *testing.T, got Certificate, cert *ssh.Certificate) {
	t.Helper()
	wantType := CertTypeUser
	if cert.CertType == ssh.HostCert {
		wantType = CertTypeHost
	}
	want := Certificate{
		Serial:         cert.Serial,
		KeyID:          cert.KeyId,
		Type:           wantType,
		Identity:       got.Identity,
		Principals:     nonNil(cert.ValidPrincipals),
		ValidAfter:     cert.ValidAfter,
		ValidBefore:    cert.ValidBefore,
		KeyFingerprint: ssh.FingerprintSHA256(cert.Key),
		CAFingerprint:  ssh.FingerprintSHA256(cert.SignatureKey),
		AuthorizedKey:  strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert))),
		IssuedAt:       got.IssuedAt,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v; want %+v", got, want)
	}
	if got.IssuedAt.IsZero() || got.IssuedAt.Location() != time.UTC {
		t.Errorf("got issued_at %v; want a UTC time", got.IssuedAt)
	}
	parsed, err := got.Cert()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(parsed.Marshal(), cert.Marshal()) {
		t.Errorf("stored certificate %d does not round-trip", cert.Serial)
	}
}

func TestRecordIssuedRefuses(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	ca := newSigner(t)
	revokedKey := newSigner(t).PublicKey()
	key := newSigner(t).PublicKey()
	if err := s.RecordIssued(ctx, newCert(t, ca, key, 1, ssh.UserCert, "root"), "github:1"); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordIssued(ctx, newCert(t, ca, key, 2, ssh.UserCert, "root"), "github:1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, Revocation{Serial: 2, Actor: "github:9"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, Revocation{Key: revokedKey, Actor: "github:9"}); err != nil {
		t.Fatal(err)
	}
	unsigned := newCert(t, ca, key, 7, ssh.UserCert)
	unsigned.Signature = nil
	badType := newCert(t, ca, key, 8, ssh.UserCert)
	badType.CertType = 3

	tests := []struct {
		name     string
		cert     *ssh.Certificate
		identity string
		wantErr  error
	}{
		{"fail/duplicate-serial", newCert(t, ca, newSigner(t).PublicKey(), 1, ssh.UserCert), "github:2", ErrDuplicateSerial},
		{"fail/recorded-revoked-serial", newCert(t, ca, newSigner(t).PublicKey(), 2, ssh.UserCert), "github:2", ErrDuplicateSerial},
		{"fail/revoked-key", newCert(t, ca, revokedKey, 3, ssh.UserCert), "github:2", ErrRevoked},
		{"fail/serial-zero", newCert(t, ca, key, 0, ssh.UserCert), "github:1", nil},
		{"fail/serial-too-big", newCert(t, ca, key, 1<<63, ssh.UserCert), "github:1", nil},
		{"fail/nil", nil, "github:1", nil},
		{"fail/unsigned", unsigned, "github:1", nil},
		{"fail/bad-type", badType, "github:1", nil},
		{"fail/no-identity", newCert(t, ca, key, 9, ssh.UserCert), "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.RecordIssued(ctx, tt.cert, tt.identity)
			if err == nil {
				t.Fatal("got no error")
			}
			if !strings.HasPrefix(err.Error(), "store: record certificate") {
				t.Errorf("got error %q; want it prefixed with what failed", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("got error %v; want %v", err, tt.wantErr)
			}
		})
	}
	got, err := s.Certificates(ctx, CertificateFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Errorf("got %d certificates after refusals; want 2", len(got))
	}
	// A serial revoked, then somehow recorded again, is refused as revoked
	// even when the certificate record is gone (e.g. restored from backup).
	if _, err := s.db.Exec(`DELETE FROM certificates WHERE serial = 2`); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordIssued(ctx, newCert(t, ca, key, 2, ssh.UserCert), "github:1"); !errors.Is(err, ErrRevoked) {
		t.Errorf("got error %v for a revoked serial; want ErrRevoked", err)
	}
}

func TestRevoke(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	ca := newSigner(t)
	alice, bob := newSigner(t).PublicKey(), newSigner(t).PublicKey()
	for i, k := range []ssh.PublicKey{alice, bob, alice, bob} {
		if err := s.RecordIssued(ctx, newCert(t, ca, k, uint64(i+1), ssh.UserCert, "root"), "github:1"); err != nil {
			t.Fatal(err)
		}
	}

	type rev struct {
		serial uint64
		key    string
	}
	steps := []struct {
		name    string
		r       Revocation
		wantErr error // nil: ok
		anyErr  bool
		want    []rev // revocations afterwards
		fields  map[string]string
	}{
		{"ok/serial", Revocation{Serial: 2, Reason: "laptop lost", Actor: "github:9"}, nil, false,
			[]rev{{serial: 2}}, map[string]string{"serial": "2"}},
		{"ok/serial-again", Revocation{Serial: 2, Reason: "again", Actor: "github:9"}, nil, false,
			[]rev{{serial: 2}}, map[string]string{"serial": "2", "already_revoked": "true"}},
		{"ok/key", Revocation{Key: alice, Reason: "key leaked", Actor: "github:9"}, nil, false,
			[]rev{{serial: 2}, {key: ssh.FingerprintSHA256(alice)}, {serial: 1}, {serial: 3}},
			map[string]string{"key_fingerprint": ssh.FingerprintSHA256(alice), "revoked_serials": "1,3"}},
		{"ok/key-again", Revocation{Key: alice, Actor: "github:9"}, nil, false,
			[]rev{{serial: 2}, {key: ssh.FingerprintSHA256(alice)}, {serial: 1}, {serial: 3}},
			map[string]string{"key_fingerprint": ssh.FingerprintSHA256(alice), "already_revoked": "true"}},
		{"fail/unknown-serial", Revocation{Serial: 77, Actor: "github:9"}, ErrNotFound, true, nil, nil},
		{"fail/nothing", Revocation{Actor: "github:9"}, nil, true, nil, nil},
		{"fail/no-actor", Revocation{Serial: 4}, nil, true, nil, nil},
		{"fail/certificate-as-key", Revocation{Key: newCert(t, ca, bob, 9, ssh.UserCert), Actor: "github:9"}, nil, true, nil, nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before, err := s.AuditEvents(ctx, AuditQuery{Type: audit.TypeRevoke})
			if err != nil {
				t.Fatal(err)
			}
			err = s.Revoke(ctx, st.r)
			if st.anyErr {
				if err == nil {
					t.Fatal("got no error")
				}
				if st.wantErr != nil && !errors.Is(err, st.wantErr) {
					t.Fatalf("got error %v; want %v", err, st.wantErr)
				}
				after, err := s.AuditEvents(ctx, AuditQuery{Type: audit.TypeRevoke})
				if err != nil {
					t.Fatal(err)
				}
				if len(after) != len(before) {
					t.Errorf("got %d revoke events after a refused revocation; want %d", len(after), len(before))
				}
				return
			}
			if err != nil {
				t.Fatalf("Revoke: %v", err)
			}
			revs, err := s.Revocations(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var got []rev
			for _, r := range revs {
				var g rev
				g.serial = r.Serial
				if r.Key != nil {
					g.key = ssh.FingerprintSHA256(r.Key)
				}
				if r.Actor != "github:9" || r.Time.IsZero() {
					t.Errorf("got revocation %+v; want actor and time set", r)
				}
				got = append(got, g)
			}
			if !slices.Equal(got, st.want) {
				t.Errorf("got revocations %v; want %v", got, st.want)
			}
			events, err := s.AuditEvents(ctx, AuditQuery{Type: audit.TypeRevoke, Limit: 1})
			if err != nil {
				t.Fatal(err)
			}
			if len(events) != 1 || !reflect.DeepEqual(events[0].Fields, st.fields) || events[0].Reason != st.r.Reason || events[0].Outcome != audit.OutcomeOK {
				t.Errorf("got events %+v; want one with fields %v", events, st.fields)
			}
		})
	}
	// The first revocation's reason is kept.
	revs, err := s.Revocations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if revs[0].Reason != "laptop lost" {
		t.Errorf("got reason %q; want the first one, %q", revs[0].Reason, "laptop lost")
	}
	if !bytes.Equal(revs[1].Key.Marshal(), alice.Marshal()) {
		t.Error("revoked key does not round-trip")
	}
}

// commitChecker is an audit log that checks, as each line arrives, that its
// event is already committed (visible to another connection).
type commitChecker struct {
	t    *testing.T
	db   *sql.DB
	mu   sync.Mutex
	buf  bytes.Buffer
	seen int
}

func (c *commitChecker) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen++
	var n int
	if err := c.db.QueryRow(`SELECT count(*) FROM audit_events`).Scan(&n); err != nil {
		c.t.Errorf("count events: %v", err)
	}
	if n < c.seen {
		c.t.Errorf("audit line %d written with only %d events committed: %s", c.seen, n, p)
	}
	return c.buf.Write(p)
}

func TestAuditLogAfterCommit(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db")
	other, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	log := &commitChecker{t: t, db: other}
	s := openTest(t, path, Options{AuditLog: log})
	ca := newSigner(t)
	key := newSigner(t).PublicKey()

	if err := s.Audit(ctx, audit.Event{Type: audit.TypeLogin, Actor: "github:1\n{\"forged\":1}", Outcome: audit.OutcomeOK, Fields: map[string]string{"via": "web"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordIssued(ctx, newCert(t, ca, key, 1, ssh.UserCert, "root"), "github:1"); err != nil {
		t.Fatal(err)
	}
	// Failed transactions write no line.
	if err := s.RecordIssued(ctx, newCert(t, ca, key, 1, ssh.UserCert, "root"), "github:1"); err == nil {
		t.Fatal("duplicate serial recorded")
	}
	if err := s.Audit(ctx, audit.Event{Type: audit.TypeLogin, Outcome: audit.OutcomeOK}); err == nil {
		t.Fatal("event without actor stored")
	}
	if err := s.Revoke(ctx, Revocation{Serial: 1, Actor: "github:9", Reason: "test"}); err != nil {
		t.Fatal(err)
	}

	stored, err := s.AuditEvents(ctx, AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(stored) // oldest first, like the log
	var logged []audit.Event
	sc := bufio.NewScanner(&log.buf)
	for sc.Scan() {
		var e audit.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		logged = append(logged, e)
	}
	if len(logged) != 3 {
		t.Fatalf("got %d log lines; want 3:\n%s", len(logged), log.buf.String())
	}
	if !reflect.DeepEqual(logged, stored) {
		t.Errorf("got logged events\n%+v\nwant the stored ones\n%+v", logged, stored)
	}
	for i, typ := range []string{audit.TypeLogin, audit.TypeIssue, audit.TypeRevoke} {
		if logged[i].Type != typ {
			t.Errorf("got event %d type %q; want %q", i, logged[i].Type, typ)
		}
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestAuditLogFailure(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{AuditLog: failWriter{}})
	err := s.Audit(ctx, audit.Event{Type: audit.TypeLogin, Actor: "a", Outcome: audit.OutcomeOK})
	if !errors.Is(err, ErrAuditLog) {
		t.Fatalf("got error %v; want ErrAuditLog", err)
	}
	events, err := s.AuditEvents(ctx, AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 {
		t.Errorf("got %d events; want the committed one", len(events))
	}
}

func TestAuditEvents(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	in := []audit.Event{
		{Time: t0.Add(1 * time.Minute), Type: audit.TypeLogin, Actor: "github:1", Outcome: audit.OutcomeOK},
		{Time: t0.Add(2 * time.Minute), Type: audit.TypeDeny, Actor: "github:2", Subject: "root@web1", Outcome: audit.OutcomeDenied, Reason: "no role"},
		{Time: t0.Add(3 * time.Minute).In(time.FixedZone("X", 3600)), Type: audit.TypeLogin, Actor: "github:2", Outcome: audit.OutcomeOK},
		{Time: t0.Add(4 * time.Minute), Type: audit.TypeSessionStart, Actor: "github:1", Subject: "root@web1", Outcome: audit.OutcomeOK, Fields: map[string]string{"session": "s1"}},
	}
	for _, e := range in {
		if err := s.Audit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		q    AuditQuery
		want []int // indexes into in, in the order expected
	}{
		{"ok/all-newest-first", AuditQuery{}, []int{3, 2, 1, 0}},
		{"ok/type", AuditQuery{Type: audit.TypeLogin}, []int{2, 0}},
		{"ok/actor", AuditQuery{Actor: "github:1"}, []int{3, 0}},
		{"ok/subject", AuditQuery{Subject: "root@web1"}, []int{3, 1}},
		{"ok/since-inclusive", AuditQuery{Since: t0.Add(2 * time.Minute)}, []int{3, 2, 1}},
		{"ok/since-other-zone", AuditQuery{Since: t0.Add(3 * time.Minute).In(time.FixedZone("Y", -7200))}, []int{3, 2}},
		{"ok/limit", AuditQuery{Limit: 1}, []int{3}},
		{"ok/combined", AuditQuery{Type: audit.TypeLogin, Actor: "github:2"}, []int{2}},
		{"ok/none", AuditQuery{Type: "nope"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.AuditEvents(ctx, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			var want []audit.Event
			for _, i := range tt.want {
				e := in[i]
				e.Time = e.Time.UTC()
				want = append(want, e)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v; want %+v", got, want)
			}
		})
	}
}

func TestMigrations(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Reopening applies nothing twice.
	s, err = Open(ctx, path, Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	var versions []int
	rows, err := s.db.Query(`SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
	}
	rows.Close()
	if len(versions) != len(migrations) || versions[len(versions)-1] != len(migrations) {
		t.Errorf("got versions %v; want 1..%d", versions, len(migrations))
	}
	// A newer binary migrated the file: refuse it.
	if _, err := s.db.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, 'later')`, len(migrations)+1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = Open(ctx, path, Options{})
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("got error %v; want ErrSchemaTooNew", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("got error %q; want it to name the database", err)
	}
}

func TestOpenFileMode(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sallyport.db")
	s := openTest(t, path, Options{})
	if _, err := s.NextSerial(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("got mode %v for %s; want 0600", got, filepath.Base(p))
		}
	}
	var mode string
	if err := s.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("got journal mode %q (%v); want wal", mode, err)
	}
	var sync int
	if err := s.db.QueryRow(`PRAGMA synchronous`).Scan(&sync); err != nil || sync != 2 {
		t.Errorf("got synchronous %d (%v); want 2 (FULL)", sync, err)
	}
	var fk int
	if err := s.db.QueryRow(`PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
		t.Errorf("got foreign_keys %d (%v); want 1", fk, err)
	}
}

func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		wantErr error
		wantMsg string
	}{
		{"fail/missing-folder", filepath.Join(dir, "nope", "db"), fs.ErrNotExist, "folder " + filepath.Join(dir, "nope") + " does not exist"},
		{"fail/folder-is-file", filepath.Join(file, "db"), nil, "is not a folder"},
		{"fail/path-is-folder", dir, nil, "store: open"},
		{"fail/empty", "", nil, "no database path"},
		{"fail/uri-syntax", filepath.Join(dir, "db?mode=ro"), nil, "must not contain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(context.Background(), tt.path, Options{})
			if err == nil {
				s.Close()
				t.Fatal("got no error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("got error %v; want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("got error %q; want it to contain %q", err, tt.wantMsg)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open created the missing folder: %v", err)
	}
}

func BenchmarkNextSerialAndRecord(b *testing.B) {
	ctx := context.Background()
	s := openTest(b, "", Options{})
	ca := newSigner(b)
	key := newSigner(b).PublicKey()
	for b.Loop() {
		serial, err := s.NextSerial(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.RecordIssued(ctx, newCert(b, ca, key, serial, ssh.UserCert, "root"), "github:1"); err != nil {
			b.Fatal(err)
		}
	}
}
