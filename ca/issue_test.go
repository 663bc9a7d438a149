package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"flag"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// memLedger is an in-memory Ledger for the CA's unit tests; the store's own
// tests cover durability.
type memLedger struct {
	mu      sync.Mutex
	serial  uint64
	issued  []*ssh.Certificate
	failRec error
}

func (l *memLedger) NextSerial(context.Context) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.serial++
	return l.serial, nil
}

func (l *memLedger) RecordIssued(_ context.Context, c *ssh.Certificate, _ string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failRec != nil {
		return l.failRec
	}
	l.issued = append(l.issued, c)
	return nil
}

var testNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func seededSigner(t testing.TB, seed byte) ssh.Signer {
	t.Helper()
	s, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testAuthority(t testing.TB) (*Authority, *memLedger) {
	t.Helper()
	l := &memLedger{}
	a, err := New(Keys{User: seededSigner(t, 1), Session: seededSigner(t, 2), Host: seededSigner(t, 3)}, l)
	if err != nil {
		t.Fatal(err)
	}
	a.Now = func() time.Time { return testNow }
	return a, l
}

func userKey(t testing.TB) ssh.PublicKey { return seededSigner(t, 9).PublicKey() }

func okUserRequest(t testing.TB) UserRequest {
	return UserRequest{
		PublicKey:  userKey(t),
		Principals: []string{"root", "deploy"},
		TTL:        time.Hour,
		MaxTTL:     8 * time.Hour,
		KeyID:      "alice github:1234",
	}
}

// checkCert verifies a certificate the way sshd would: marshal, parse,
// check the signing authority, then CertChecker for principal at time at.
func checkCert(t *testing.T, cert *ssh.Certificate, authority ssh.PublicKey, principal string, at time.Time) error {
	t.Helper()
	parsed, err := ssh.ParsePublicKey(cert.Marshal())
	if err != nil {
		t.Fatalf("parse issued certificate: %v", err)
	}
	pc := parsed.(*ssh.Certificate)
	if !bytes.Equal(pc.SignatureKey.Marshal(), authority.Marshal()) {
		return errors.New("signed by another authority")
	}
	checker := &ssh.CertChecker{
		Clock:                    func() time.Time { return at },
		SupportedCriticalOptions: []string{criticalForceCommand, criticalSourceAddress},
	}
	return checker.CheckCert(principal, pc)
}

func TestIssueUser(t *testing.T) {
	a, l := testAuthority(t)
	_, pfx := mustPrefix(t, "203.0.113.0/24")
	req := okUserRequest(t)
	req.Permissions = []Permission{PermitPTY, PermitX11Forwarding}
	req.SourceAddresses = []netip.Prefix{pfx}
	req.ForceCommand = "/usr/bin/uptime"
	cert, err := a.IssueUser(context.Background(), req)
	if err != nil {
		t.Fatalf("IssueUser: %v", err)
	}
	if cert.CertType != ssh.UserCert {
		t.Errorf("cert type = %d; want user", cert.CertType)
	}
	if cert.Serial != 1 {
		t.Errorf("serial = %d; want 1", cert.Serial)
	}
	if got, want := cert.KeyId, "alice github:1234 serial=1"; got != want {
		t.Errorf("key ID = %q; want %q", got, want)
	}
	if got, want := strings.Join(cert.ValidPrincipals, ","), "root,deploy"; got != want {
		t.Errorf("principals = %q; want %q", got, want)
	}
	if got, want := time.Unix(int64(cert.ValidAfter), 0).UTC(), testNow.Add(-defaultUserSkew); !got.Equal(want) {
		t.Errorf("valid after = %v; want %v", got, want)
	}
	if got, want := time.Unix(int64(cert.ValidBefore), 0).UTC(), testNow.Add(time.Hour); !got.Equal(want) {
		t.Errorf("valid before = %v; want %v", got, want)
	}
	wantExt := map[string]string{"permit-pty": "", "permit-X11-forwarding": ""}
	if len(cert.Extensions) != len(wantExt) {
		t.Errorf("extensions = %v; want %v", cert.Extensions, wantExt)
	}
	for k := range wantExt {
		if _, ok := cert.Extensions[k]; !ok {
			t.Errorf("extension %s missing from %v", k, cert.Extensions)
		}
	}
	if got := cert.CriticalOptions["force-command"]; got != "/usr/bin/uptime" {
		t.Errorf("force-command = %q", got)
	}
	if got := cert.CriticalOptions["source-address"]; got != "203.0.113.0/24" {
		t.Errorf("source-address = %q", got)
	}
	if len(l.issued) != 1 || l.issued[0] != cert {
		t.Errorf("ledger has %d certificates; want the issued one", len(l.issued))
	}
	if err := checkCert(t, cert, a.PublicKey(KindUser), "root", testNow); err != nil {
		t.Errorf("round trip check as root: %v", err)
	}
	for _, tc := range []struct {
		name      string
		principal string
		at        time.Time
	}{
		{"fail/other-principal", "admin", testNow},
		{"fail/expired", "root", testNow.Add(time.Hour + time.Second)},
		{"fail/not-yet-valid", "root", testNow.Add(-defaultUserSkew - time.Second)},
	} {
		if err := checkCert(t, cert, a.PublicKey(KindUser), tc.principal, tc.at); err == nil {
			t.Errorf("%s: CertChecker accepted the certificate", tc.name)
		}
	}
	if err := checkCert(t, cert, a.PublicKey(KindHost), "root", testNow); err == nil {
		t.Error("certificate verifies against the host CA")
	}
}

func mustPrefix(t testing.TB, s string) (string, netip.Prefix) {
	t.Helper()
	p, err := ParseSourceAddress(s)
	if err != nil {
		t.Fatal(err)
	}
	return s, p
}

func TestIssueUserNoPermissionsMeansNoExtensions(t *testing.T) {
	a, _ := testAuthority(t)
	cert, err := a.IssueUser(context.Background(), okUserRequest(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.Extensions) != 0 || len(cert.CriticalOptions) != 0 {
		t.Errorf("extensions %v, critical options %v; want none", cert.Extensions, cert.CriticalOptions)
	}
}

func rsaKey(t *testing.T, bits int) ssh.PublicKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func ecdsaKey(t *testing.T, c elliptic.Curve) ssh.PublicKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// skKey builds a FIDO public key of the given type from its wire format.
func skKey(t *testing.T, typ string) ssh.PublicKey {
	t.Helper()
	var wire []byte
	put := func(b []byte) {
		wire = append(wire, byte(len(b)>>24), byte(len(b)>>16), byte(len(b)>>8), byte(len(b)))
		wire = append(wire, b...)
	}
	put([]byte(typ))
	switch typ {
	case ssh.KeyAlgoSKED25519:
		put(bytes.Repeat([]byte{7}, ed25519.PublicKeySize))
	case ssh.KeyAlgoSKECDSA256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		put([]byte("nistp256"))
		ek, err := k.PublicKey.ECDH()
		if err != nil {
			t.Fatal(err)
		}
		put(ek.Bytes())
	}
	put([]byte("ssh:"))
	pub, err := ssh.ParsePublicKey(wire)
	if err != nil {
		t.Fatalf("parse %s: %v", typ, err)
	}
	return pub
}

func TestUserKeyTypes(t *testing.T) {
	a, _ := testAuthority(t)
	someCert, err := a.IssueUser(context.Background(), okUserRequest(t))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		key  ssh.PublicKey
		want error
	}{
		{"ok/ed25519", userKey(t), nil},
		{"ok/ecdsa-p256", ecdsaKey(t, elliptic.P256()), nil},
		{"ok/ecdsa-p384", ecdsaKey(t, elliptic.P384()), nil},
		{"ok/ecdsa-p521", ecdsaKey(t, elliptic.P521()), nil},
		{"ok/rsa-2048", rsaKey(t, 2048), nil},
		{"ok/sk-ed25519", skKey(t, ssh.KeyAlgoSKED25519), nil},
		{"ok/sk-ecdsa", skKey(t, ssh.KeyAlgoSKECDSA256), nil},
		{"fail/rsa-1024", rsaKey(t, 1024), ErrKeyRSATooShort},
		{"fail/certificate", someCert, ErrKeyIsCertificate},
		{"fail/user-ca", a.PublicKey(KindUser), ErrKeyIsCA},
		{"fail/session-ca", a.PublicKey(KindSession), ErrKeyIsCA},
		{"fail/host-ca", a.PublicKey(KindHost), ErrKeyIsCA},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := okUserRequest(t)
			req.PublicKey = tc.key
			cert, err := a.IssueUser(context.Background(), req)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("IssueUser: %v", err)
				}
				if err := checkCert(t, cert, a.PublicKey(KindUser), "root", testNow); err != nil {
					t.Errorf("round trip: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("IssueUser error = %v; want %v", err, tc.want)
			}
			if cert != nil {
				t.Error("a certificate was returned with the error")
			}
		})
	}
}

func TestIssueUserRefusals(t *testing.T) {
	a, l := testAuthority(t)
	tests := []struct {
		name   string
		mutate func(*UserRequest)
		want   string
	}{
		{"fail/no-principals", func(r *UserRequest) { r.Principals = nil }, "at least one principal"},
		{"fail/empty-principal", func(r *UserRequest) { r.Principals = []string{""} }, "principal is empty"},
		{"fail/wildcard", func(r *UserRequest) { r.Principals = []string{"*"} }, `character '*'`},
		{"fail/question-mark", func(r *UserRequest) { r.Principals = []string{"ro?t"} }, `character '?'`},
		{"fail/comma", func(r *UserRequest) { r.Principals = []string{"root,admin"} }, `character ','`},
		{"fail/space", func(r *UserRequest) { r.Principals = []string{"ro ot"} }, `character ' '`},
		{"fail/control", func(r *UserRequest) { r.Principals = []string{"root\n"} }, `character '\n'`},
		{"fail/at", func(r *UserRequest) { r.Principals = []string{"root@web1"} }, `character '@'`},
		{"fail/leading-dash", func(r *UserRequest) { r.Principals = []string{"-oProxyCommand"} }, `character '-'`},
		{"fail/too-long", func(r *UserRequest) { r.Principals = []string{strings.Repeat("a", 33)} }, "longer than 32"},
		{"fail/ttl-over-max", func(r *UserRequest) { r.TTL = 9 * time.Hour }, "exceeds the maximum"},
		{"fail/no-max", func(r *UserRequest) { r.MaxTTL = 0 }, "no maximum lifetime"},
		{"fail/zero-ttl", func(r *UserRequest) { r.TTL = 0 }, "not positive"},
		{"fail/negative-ttl", func(r *UserRequest) { r.TTL = -time.Hour }, "not positive"},
		{"fail/no-key-id", func(r *UserRequest) { r.KeyID = "" }, "key ID is empty"},
		{"fail/key-id-control", func(r *UserRequest) { r.KeyID = "alice\x1b[31m" }, "key ID"},
		{"fail/key-id-quote", func(r *UserRequest) { r.KeyID = `alice" serial=1` }, "key ID"},
		{"fail/unknown-permission", func(r *UserRequest) { r.Permissions = []Permission{"root-shell"} }, "unknown permission"},
		{"fail/force-command-newline", func(r *UserRequest) { r.ForceCommand = "ls\nrm -rf /" }, "control character"},
		{"fail/force-command-blank", func(r *UserRequest) { r.ForceCommand = "  " }, "blank"},
		{"fail/source-not-canonical", func(r *UserRequest) {
			r.SourceAddresses = []netip.Prefix{netip.MustParsePrefix("10.1.2.3/8")}
		}, "not a canonical"},
		{"fail/no-key", func(r *UserRequest) { r.PublicKey = nil }, "missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := okUserRequest(t)
			tc.mutate(&req)
			before := len(l.issued)
			cert, err := a.IssueUser(context.Background(), req)
			if err == nil {
				t.Fatalf("IssueUser issued %v; want error containing %q", cert.ValidPrincipals, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %q; want it to contain %q", err, tc.want)
			}
			if len(l.issued) != before {
				t.Error("a refused request was recorded as issued")
			}
		})
	}
}

func TestEachCASignsOnlyItsKind(t *testing.T) {
	a, _ := testAuthority(t)
	ctx := context.Background()
	user, err := a.IssueUser(ctx, okUserRequest(t))
	if err != nil {
		t.Fatal(err)
	}
	session, err := a.IssueSession(ctx, SessionRequest{PublicKey: userKey(t), Principal: "root", TTL: time.Minute, KeyID: "alice session:42"})
	if err != nil {
		t.Fatal(err)
	}
	host, err := a.IssueHost(ctx, HostRequest{PublicKey: userKey(t), Hostnames: []string{"web1", "web1.example.org"}, TTL: time.Hour, MaxTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		cert     *ssh.Certificate
		certType uint32
		kind     Kind
		name0    string
	}{
		{"ok/user", user, ssh.UserCert, KindUser, "root"},
		{"ok/session", session, ssh.UserCert, KindSession, "root"},
		{"ok/host", host, ssh.HostCert, KindHost, "web1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cert.CertType != tc.certType {
				t.Errorf("cert type = %d; want %d", tc.cert.CertType, tc.certType)
			}
			for _, k := range Kinds {
				err := checkCert(t, tc.cert, a.PublicKey(k), tc.name0, testNow)
				if k == tc.kind && err != nil {
					t.Errorf("does not verify against the %s CA: %v", k, err)
				}
				if k != tc.kind && err == nil {
					t.Errorf("verifies against the %s CA too", k)
				}
			}
		})
	}
	if _, err := a.IssueSession(ctx, SessionRequest{PublicKey: userKey(t), Principal: "root", TTL: time.Hour, KeyID: "x"}); err == nil {
		t.Error("a one-hour session certificate was issued; want at most five minutes")
	}
	if _, err := a.IssueHost(ctx, HostRequest{PublicKey: userKey(t), Hostnames: []string{"*.example.org"}, TTL: time.Hour, MaxTTL: time.Hour}); err == nil {
		t.Error("a wildcard host certificate was issued")
	}
	if _, err := a.IssueHost(ctx, HostRequest{PublicKey: userKey(t), TTL: time.Hour, MaxTTL: time.Hour}); err == nil {
		t.Error("a host certificate without names was issued")
	}
}

func TestNewRefusesSharedKeys(t *testing.T) {
	k := seededSigner(t, 1)
	if _, err := New(Keys{User: k, Session: seededSigner(t, 2), Host: k}, &memLedger{}); err == nil {
		t.Fatal("New accepted the same key for the user and host CAs")
	}
}

func TestLedgerFailureYieldsNoCertificate(t *testing.T) {
	a, l := testAuthority(t)
	l.failRec = errors.New("disk full")
	cert, err := a.IssueUser(context.Background(), okUserRequest(t))
	if err == nil || cert != nil {
		t.Fatalf("IssueUser = %v, %v; want an error and no certificate", cert, err)
	}
}

func TestSerialsUniqueUnderConcurrency(t *testing.T) {
	a, _ := testAuthority(t)
	const n = 64
	var wg sync.WaitGroup
	serials := make(chan uint64, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := a.IssueUser(context.Background(), okUserRequest(t))
			if err != nil {
				t.Error(err)
				return
			}
			serials <- c.Serial
		}()
	}
	wg.Wait()
	close(serials)
	seen := map[uint64]bool{}
	for s := range serials {
		if s == 0 || seen[s] {
			t.Fatalf("serial %d is zero or repeated", s)
		}
		seen[s] = true
	}
}

// TestSSHKeygenShowsCertificate checks every field of issued certificates
// as OpenSSH's ssh-keygen -L prints them, against golden files.
func TestSSHKeygenShowsCertificate(t *testing.T) {
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Fatal("ssh-keygen not found: install openssh-client")
	}
	a, _ := testAuthority(t)
	_, pfx := mustPrefix(t, "192.0.2.0/24")
	ctx := context.Background()
	full := okUserRequest(t)
	full.Permissions = []Permission{PermitPTY, PermitPortForwarding, PermitAgentForwarding, PermitX11Forwarding, PermitUserRC}
	full.SourceAddresses = []netip.Prefix{pfx}
	full.ForceCommand = "/usr/local/bin/db-readonly-shell"
	tests := []struct {
		name  string
		issue func() (*ssh.Certificate, error)
	}{
		{"user-minimal", func() (*ssh.Certificate, error) { return a.IssueUser(ctx, okUserRequest(t)) }},
		{"user-full", func() (*ssh.Certificate, error) { return a.IssueUser(ctx, full) }},
		{"session", func() (*ssh.Certificate, error) {
			return a.IssueSession(ctx, SessionRequest{PublicKey: userKey(t), Principal: "deploy", TTL: 2 * time.Minute,
				Permissions: []Permission{PermitPTY}, KeyID: "alice github:1234 session:7"})
		}},
		{"host", func() (*ssh.Certificate, error) {
			return a.IssueHost(ctx, HostRequest{PublicKey: userKey(t), Hostnames: []string{"web1", "10.0.1.11"}, TTL: 8760 * time.Hour, MaxTTL: 8760 * time.Hour})
		}},
	}
	dir := t.TempDir()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cert, err := tc.issue()
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, tc.name+"-cert.pub")
			if err := os.WriteFile(path, ssh.MarshalAuthorizedKey(cert), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(keygen, "-L", "-f", path)
			cmd.Env = append(os.Environ(), "TZ=UTC")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("ssh-keygen -L: %v\n%s", err, out)
			}
			got := strings.ReplaceAll(string(out), path, "CERT")
			golden := filepath.Join("testdata", "keygen", tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if got != string(want) {
				t.Errorf("ssh-keygen -L differs from %s:\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

func timeSeconds(s int64) time.Duration {
	if s > 1<<32 || s < -(1<<32) {
		return 0
	}
	return time.Duration(s) * time.Second
}
