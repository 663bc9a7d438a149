package ca

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// The flag has its own name because other test files of package ca may
// register -update for their golden files.
var updateKRL = flag.Bool("update-krl", false, "rewrite testdata/krl golden files")

// krlTestTime is a fixed generated date for reproducible lists.
var krlTestTime = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// krlTestSigner returns an Ed25519 signer derived from seed, so golden lists
// stay byte-for-byte stable.
func krlTestSigner(t *testing.T, seed byte) ssh.Signer {
	t.Helper()
	s, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
	if err != nil {
		t.Fatalf("new signer: %v", err)
	}
	return s
}

// krlTestCert signs a user certificate for key.
func krlTestCert(t *testing.T, ca ssh.Signer, key ssh.PublicKey, serial uint64, keyID string) *ssh.Certificate {
	t.Helper()
	cert := &ssh.Certificate{
		Key:             key,
		Serial:          serial,
		CertType:        ssh.UserCert,
		KeyId:           keyID,
		ValidPrincipals: []string{"alice"},
		ValidBefore:     ssh.CertTimeInfinity,
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatalf("sign certificate: %v", err)
	}
	return cert
}

// krlWriteFile writes data to name in dir and returns its path.
func krlWriteFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatalf("write %s: %v", name, err)
	}
	return p
}

// krlSSHKeygen returns the path of ssh-keygen. The tests fail rather than
// skip without it: CI installs it, and the KRL tests are worthless untested.
func krlSSHKeygen(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Fatalf("ssh-keygen is required for the KRL tests: %v", err)
	}
	return p
}

// krlQuery writes key to dir with the comment "krl-test" and asks
// `ssh-keygen -Q` whether the KRL in krlPath revokes it. ssh-keygen prints
// "PATH (COMMENT): REVOKED" and exits 1, or "PATH (COMMENT): ok" and exits 0
// (a key without a comment gets its path as comment); anything else fails
// the test.
func krlQuery(t *testing.T, keygen, krlPath, dir string, key ssh.PublicKey) (revoked bool) {
	t.Helper()
	f, err := os.CreateTemp(dir, "*.pub")
	if err != nil {
		t.Fatal(err)
	}
	keyPath := f.Name()
	line := append(bytes.TrimSuffix(ssh.MarshalAuthorizedKey(key), []byte("\n")), " krl-test\n"...)
	if _, err := f.Write(line); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(keygen, "-Q", "-f", krlPath, keyPath)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	code := 0
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		code = exitErr.ExitCode()
	} else if err != nil {
		t.Fatalf("run ssh-keygen -Q: %v", err)
	}
	out := strings.TrimSpace(stdout.String())
	switch {
	case code == 0 && out == keyPath+" (krl-test): ok":
		return false
	case code == 1 && out == keyPath+" (krl-test): REVOKED":
		return true
	}
	t.Fatalf("ssh-keygen -Q -f %s %s: exit %d, stdout %q, stderr %q", krlPath, keyPath, code, out, stderr.String())
	return false
}

func TestKRLSSHKeygen(t *testing.T) {
	keygen := krlSSHKeygen(t)
	dir := t.TempDir()

	caA := krlTestSigner(t, 1)         // listed CA
	caB := krlTestSigner(t, 2)         // CA not listed
	caRevoked := krlTestSigner(t, 3)   // CA key revoked as a plain key
	user := krlTestSigner(t, 4)        // user key not listed
	userRevoked := krlTestSigner(t, 5) // user key revoked as a plain key

	full := &KRL{
		Version:     42,
		GeneratedAt: krlTestTime,
		Comment:     "sallyport test",
		Certificates: []KRLCertificates{
			{
				CA:      caA.PublicKey(),
				Serials: []uint64{1000, 5, 7, 6, 1, 1 << 40, 5, math.MaxUint64},
				KeyIDs:  []string{"mallory"},
			},
			{KeyIDs: []string{"eve"}}, // any CA
			{CA: caA.PublicKey(), Serials: krlSerialRange(100, 199)},
		},
		Keys: []ssh.PublicKey{userRevoked.PublicKey(), caRevoked.PublicKey()},
	}
	fullBytes, err := full.Marshal()
	if err != nil {
		t.Fatalf("marshal full KRL: %v", err)
	}
	fullPath := krlWriteFile(t, dir, "full.krl", fullBytes)

	empty := &KRL{Version: 1, GeneratedAt: krlTestTime}
	emptyBytes, err := empty.Marshal()
	if err != nil {
		t.Fatalf("marshal empty KRL: %v", err)
	}
	emptyPath := krlWriteFile(t, dir, "empty.krl", emptyBytes)

	certA := func(serial uint64, keyID string) ssh.PublicKey {
		return krlTestCert(t, caA, user.PublicKey(), serial, keyID)
	}
	tests := []struct {
		name string
		krl  string
		key  ssh.PublicKey
	}{
		{"fail/serial-1", fullPath, certA(1, "alice")},
		{"fail/serial-5", fullPath, certA(5, "alice")},
		{"fail/serial-6", fullPath, certA(6, "alice")},
		{"fail/serial-7", fullPath, certA(7, "alice")},
		{"fail/serial-1000", fullPath, certA(1000, "alice")},
		{"fail/serial-2^40", fullPath, certA(1<<40, "alice")},
		{"fail/serial-max", fullPath, certA(math.MaxUint64, "alice")},
		{"fail/serial-range-start", fullPath, certA(100, "alice")},
		{"fail/serial-range-middle", fullPath, certA(150, "alice")},
		{"fail/serial-range-end", fullPath, certA(199, "alice")},
		{"ok/serial-0", fullPath, certA(0, "alice")},
		{"ok/serial-2", fullPath, certA(2, "alice")},
		{"ok/serial-4", fullPath, certA(4, "alice")},
		{"ok/serial-8", fullPath, certA(8, "alice")},
		{"ok/serial-99", fullPath, certA(99, "alice")},
		{"ok/serial-200", fullPath, certA(200, "alice")},
		{"ok/serial-999", fullPath, certA(999, "alice")},
		{"ok/serial-1001", fullPath, certA(1001, "alice")},
		{"ok/serial-2^40-1", fullPath, certA(1<<40-1, "alice")},
		{"ok/serial-2^40+1", fullPath, certA(1<<40+1, "alice")},
		{"ok/serial-max-1", fullPath, certA(math.MaxUint64-1, "alice")},
		{"fail/key-id", fullPath, certA(2, "mallory")},
		{"fail/key-id-serial-0", fullPath, certA(0, "mallory")},
		{"ok/key-id-prefix", fullPath, certA(2, "mallor")},
		{"ok/key-id-other-ca", fullPath, krlTestCert(t, caB, user.PublicKey(), 2, "mallory")},
		{"fail/key-id-any-ca", fullPath, krlTestCert(t, caB, user.PublicKey(), 2, "eve")},
		{"ok/other-ca-same-serial", fullPath, krlTestCert(t, caB, user.PublicKey(), 5, "alice")},
		{"ok/plain-key", fullPath, user.PublicKey()},
		{"fail/plain-key", fullPath, userRevoked.PublicKey()},
		{"fail/cert-for-revoked-key", fullPath, krlTestCert(t, caA, userRevoked.PublicKey(), 2, "alice")},
		{"fail/cert-for-revoked-key-other-ca", fullPath, krlTestCert(t, caB, userRevoked.PublicKey(), 2, "alice")},
		{"fail/cert-from-revoked-ca", fullPath, krlTestCert(t, caRevoked, user.PublicKey(), 2, "alice")},
		{"ok/empty-serial-5", emptyPath, certA(5, "mallory")},
		{"ok/empty-plain-key", emptyPath, userRevoked.PublicKey()},
		{"ok/empty-cert-from-revoked-ca", emptyPath, krlTestCert(t, caRevoked, userRevoked.PublicKey(), 5, "eve")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := krlQuery(t, keygen, tt.krl, dir, tt.key)
			want := strings.HasPrefix(tt.name, "fail/")
			if got != want {
				t.Errorf("ssh-keygen -Q says revoked = %v; want %v", got, want)
			}
		})
	}
}

// TestKRLSSHKeygenList checks that `ssh-keygen -Q -l` reads back the header
// and every revocation, with runs of serials as ranges.
func TestKRLSSHKeygenList(t *testing.T) {
	keygen := krlSSHKeygen(t)
	dir := t.TempDir()
	ca := krlTestSigner(t, 1)
	revoked := krlTestSigner(t, 5)

	k := &KRL{
		Version:     7,
		GeneratedAt: krlTestTime,
		Comment:     "weekly list",
		Certificates: []KRLCertificates{
			{CA: ca.PublicKey(), Serials: append([]uint64{1, 5, 6, 7, 1000, 1 << 40, 3}, krlSerialRange(100, 199)...), KeyIDs: []string{"mallory", "bob"}},
			{KeyIDs: []string{"eve"}},
		},
		Keys: []ssh.PublicKey{revoked.PublicKey()},
	}
	b, err := k.Marshal()
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	p := krlWriteFile(t, dir, "list.krl", b)
	out, err := exec.Command(keygen, "-Q", "-l", "-f", p).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -Q -l: %v\n%s", err, out)
	}
	lines := strings.Split(string(out), "\n")
	for _, want := range []string{
		"# KRL version 7",
		"# Comment: weekly list",
		"# CA key ssh-ed25519 " + ssh.FingerprintSHA256(ca.PublicKey()),
		"serial: 1",
		"serial: 3",
		"serial: 5-7",
		"serial: 100-199",
		"serial: 1000",
		"serial: 1099511627776",
		"id: bob",
		"id: mallory",
		"# Wildcard CA",
		"id: eve",
		"hash: " + ssh.FingerprintSHA256(revoked.PublicKey()) + " # ssh-ed25519",
	} {
		found := false
		for _, l := range lines {
			if l == want {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("ssh-keygen -Q -l output lacks line %q; got:\n%s", want, out)
		}
	}
}

// TestKRLGolden pins the bytes of a list, so any change to the encoding shows
// in review. Run with -update-krl to rewrite testdata/krl.
func TestKRLGolden(t *testing.T) {
	k := &KRL{
		Version:     3,
		GeneratedAt: krlTestTime,
		Comment:     "golden",
		Certificates: []KRLCertificates{
			{CA: krlTestSigner(t, 1).PublicKey(), Serials: []uint64{9, 1, 2, 3, 4, 7}, KeyIDs: []string{"mallory"}},
			{KeyIDs: []string{"eve"}},
		},
		Keys: []ssh.PublicKey{krlTestSigner(t, 5).PublicKey()},
	}
	got, err := k.Marshal()
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	golden := filepath.Join("testdata", "krl", "golden.krl")
	if *updateKRL {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden file (run with -update-krl to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Marshal = %x; want %x", got, want)
	}
}

func TestKRLMarshalHeader(t *testing.T) {
	k := &KRL{Version: 0x0102030405060708, GeneratedAt: time.Unix(1700000000, 999), Comment: "hi"}
	got, err := k.Marshal()
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	want := []byte("SSHKRL\n\x00")
	want = binary.BigEndian.AppendUint32(want, 1)
	want = binary.BigEndian.AppendUint64(want, 0x0102030405060708)
	want = binary.BigEndian.AppendUint64(want, 1700000000)
	want = binary.BigEndian.AppendUint64(want, 0)
	want = append(want, 0, 0, 0, 0)           // reserved
	want = append(want, 0, 0, 0, 2, 'h', 'i') // comment
	if !bytes.Equal(got, want) {
		t.Errorf("Marshal = %x; want %x", got, want)
	}
}

func TestKRLMarshal(t *testing.T) {
	ca := krlTestSigner(t, 1)
	user := krlTestSigner(t, 4)
	cert := krlTestCert(t, ca, user.PublicKey(), 1, "alice")
	emptyKRL := func() *KRL { return &KRL{GeneratedAt: krlTestTime} }
	emptyBytes, err := emptyKRL().Marshal()
	if err != nil {
		t.Fatalf("marshal empty: %v", err)
	}

	tests := []struct {
		name string
		krl  *KRL
		want []byte // nil: only check that Marshal succeeds
	}{
		{"ok/empty", emptyKRL(), emptyBytes},
		{"ok/epoch", &KRL{GeneratedAt: time.Unix(0, 0)}, nil},
		{"ok/empty-entries-dropped", &KRL{GeneratedAt: krlTestTime, Certificates: []KRLCertificates{{CA: ca.PublicKey()}, {}}}, emptyBytes},
		{"ok/max-serial", &KRL{GeneratedAt: krlTestTime, Certificates: []KRLCertificates{{Serials: []uint64{math.MaxUint64 - 1, math.MaxUint64}}}}, nil},
		{"fail/serial-zero", &KRL{GeneratedAt: krlTestTime, Certificates: []KRLCertificates{{CA: ca.PublicKey(), Serials: []uint64{1, 0, 2}}}}, nil},
		{"fail/serial-zero-any-ca", &KRL{GeneratedAt: krlTestTime, Certificates: []KRLCertificates{{Serials: []uint64{0}}}}, nil},
		{"fail/key-id-nul", &KRL{GeneratedAt: krlTestTime, Certificates: []KRLCertificates{{KeyIDs: []string{"a\x00b"}}}}, nil},
		{"fail/comment-nul", &KRL{GeneratedAt: krlTestTime, Comment: "a\x00"}, nil},
		{"fail/zero-generated-at", &KRL{}, nil},
		{"fail/before-1970", &KRL{GeneratedAt: time.Unix(-1, 0)}, nil},
		{"fail/nil-key", &KRL{GeneratedAt: krlTestTime, Keys: []ssh.PublicKey{nil}}, nil},
		{"fail/certificate-as-key", &KRL{GeneratedAt: krlTestTime, Keys: []ssh.PublicKey{cert}}, nil},
		{"fail/certificate-as-ca", &KRL{GeneratedAt: krlTestTime, Certificates: []KRLCertificates{{CA: cert, Serials: []uint64{1}}}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.krl.Marshal()
			if strings.HasPrefix(tt.name, "fail/") {
				if !errors.Is(err, ErrInvalidKRL) {
					t.Fatalf("Marshal error = %v; want %v", err, ErrInvalidKRL)
				}
				return
			}
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if tt.want != nil && !bytes.Equal(got, tt.want) {
				t.Errorf("Marshal = %x; want %x", got, tt.want)
			}
		})
	}
}

// TestKRLMarshalCanonical checks that order, repeats and split entries for
// one CA do not change the bytes.
func TestKRLMarshalCanonical(t *testing.T) {
	caA := krlTestSigner(t, 1).PublicKey()
	caB := krlTestSigner(t, 2).PublicKey()
	k1 := krlTestSigner(t, 4).PublicKey()
	k2 := krlTestSigner(t, 5).PublicKey()
	a := &KRL{
		GeneratedAt: krlTestTime,
		Certificates: []KRLCertificates{
			{CA: caA, Serials: []uint64{1, 2, 3, 10}, KeyIDs: []string{"x", "y"}},
			{CA: caB, Serials: []uint64{5}},
		},
		Keys: []ssh.PublicKey{k1, k2},
	}
	b := &KRL{
		GeneratedAt: krlTestTime,
		Certificates: []KRLCertificates{
			{CA: caA, Serials: []uint64{10, 3}, KeyIDs: []string{"y"}},
			{CA: caB, Serials: []uint64{5, 5}},
			{CA: caA, Serials: []uint64{2, 1, 3}, KeyIDs: []string{"x", "y"}},
		},
		Keys: []ssh.PublicKey{k2, k1, k2},
	}
	ab, err := a.Marshal()
	if err != nil {
		t.Fatalf("marshal a: %v", err)
	}
	bb, err := b.Marshal()
	if err != nil {
		t.Fatalf("marshal b: %v", err)
	}
	if !bytes.Equal(ab, bb) {
		t.Errorf("Marshal of reordered list = %x; want %x", bb, ab)
	}
}

// krlSerialRange returns the serials lo through hi.
func krlSerialRange(lo, hi uint64) []uint64 {
	var s []uint64
	for i := lo; i <= hi; i++ {
		s = append(s, i)
	}
	return s
}
