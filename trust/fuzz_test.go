package trust

import (
	"bytes"
	"os"
	"testing"
	"time"
)

// FuzzParseFolder feeds arbitrary roots files and key files to the trust
// folder parser and the admin computation: they must never panic, and a
// folder that parses must compute.
func FuzzParseFolder(f *testing.F) {
	key, err := os.ReadFile("testdata/fuzz-key.asc")
	if err != nil {
		f.Fatal(err)
	}
	roots, err := os.ReadFile("testdata/fuzz-roots")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(roots, key)
	f.Add([]byte("0123456789ABCDEF0123456789ABCDEF01234567\n"), key[:len(key)/2])
	f.Add([]byte("# c\n0123 4567 89AB CDEF 0123 4567 89AB CDEF 0123 4567"), []byte{0x99, 0x00, 0x01})
	f.Add([]byte("89ABCDEF01234567"), []byte("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n-----END PGP PRIVATE KEY BLOCK-----\n"))
	f.Fuzz(func(t *testing.T, roots, key []byte) {
		folder, err := ParseFolder(roots, map[string][]byte{"k.asc": key, "k2.asc": key})
		if err != nil {
			return
		}
		a, err := ComputeAdmins(folder, Options{Now: time.Unix(1_800_000_000, 0)})
		if err != nil {
			t.Fatal(err)
		}
		_ = a.List()
		for _, b := range folder.keys {
			// Merged keys must survive a round trip through armor.
			arm, err := b.armored()
			if err != nil {
				t.Fatal(err)
			}
			again, err := parseKeyBlocks(arm)
			if err != nil || len(again) != 1 || !bytes.Equal(again[0].binary(), b.binary()) {
				t.Fatalf("armor round trip changed key %s: %v", b.fpr, err)
			}
		}
	})
}

// FuzzParseRequest checks that only canonical requests parse, and that
// they survive a round trip.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte("purpose: sallyport-breakglass-v1\nid: 0123456789abcdef0123456789abcdef\ncreated: 2026-01-02T03:04:05Z\nprincipal: root\nhost: web1\nttl: 30m0s\nreason: GitHub is down\nkey: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE\n"))
	f.Add([]byte("purpose: other\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		r, err := ParseRequest(text)
		if err != nil {
			return
		}
		if !bytes.Equal(r.Marshal(), text) {
			t.Fatalf("parsed a non-canonical request:\n%q\n%q", text, r.Marshal())
		}
		if r.TTL > MaxBreakGlassTTL || r.TTL <= 0 {
			t.Fatalf("ttl %s accepted", r.TTL)
		}
	})
}

// FuzzParseClearSigned feeds arbitrary documents to the clear-signed
// request parser and the break-glass check: no panics, and nothing
// without a valid admin signature is ever accepted.
func FuzzParseClearSigned(f *testing.F) {
	f.Add([]byte("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nhello\n- -dash\n-----BEGIN PGP SIGNATURE-----\n\niHUEARYIAB0WIQT9MoUDnaKa2OVCXzrxgxFCAXZFgwUCawdA9AAKCRDxgxFCAXZF\ng2ltAQCWNnVjcwDigjzShvaEGrUFAJCBmbPPkBYkJ5zlptYi1AD9EpajloRTHOAm\npNT5+wIqGx5hcSWE28EEgz/IDu6vgQs=\n=XSVE\n-----END PGP SIGNATURE-----\n"))
	f.Add([]byte("-----BEGIN PGP SIGNED MESSAGE-----\nComment: x\n\n"))
	empty := &Admins{byFpr: map[Fingerprint]*Admin{}, byKeyID: map[uint64][]*Admin{}, byGitHub: map[int64][]*Admin{}, others: map[uint64]Rejected{}, threshold: 1, now: time.Unix(1_800_000_000, 0)}
	f.Fuzz(func(t *testing.T, data []byte) {
		cs, err := ParseClearSigned(data)
		if err == nil && len(cs.sigs) == 0 {
			t.Fatal("clear-signed document without signatures parsed")
		}
		if _, err := empty.VerifyBreakGlass(data, BreakGlassOptions{}); err == nil {
			t.Fatal("request accepted without any admin")
		}
	})
}

// FuzzParseDetachedSignatures feeds arbitrary signature files to the
// detached signature parser and checker.
func FuzzParseDetachedSignatures(f *testing.F) {
	f.Add([]byte("-----BEGIN PGP SIGNATURE-----\n\niHUEARYIAB0WIQT9MoUDnaKa2OVCXzrxgxFCAXZFgwUCawdA9AAKCRDxgxFCAXZF\ng2ltAQCWNnVjcwDigjzShvaEGrUFAJCBmbPPkBYkJ5zlptYi1AD9EpajloRTHOAm\npNT5+wIqGx5hcSWE28EEgz/IDu6vgQs=\n=XSVE\n-----END PGP SIGNATURE-----\n"))
	f.Add([]byte{0x88, 0x00})
	empty := &Admins{byFpr: map[Fingerprint]*Admin{}, byKeyID: map[uint64][]*Admin{}, byGitHub: map[int64][]*Admin{}, others: map[uint64]Rejected{}, threshold: 1, now: time.Unix(1_800_000_000, 0)}
	f.Fuzz(func(t *testing.T, sig []byte) {
		v, err := empty.VerifyPolicy([]byte("data"), [][]byte{sig}, PolicyOptions{Required: 1})
		if err == nil || len(v.Valid) > 0 {
			t.Fatal("signature accepted without any admin")
		}
	})
}

// TestFuzzSeedIsAdmin makes sure the fuzz seed exercises the whole
// computation: its key is a root admin.
func TestFuzzSeedIsAdmin(t *testing.T) {
	key, _ := os.ReadFile("testdata/fuzz-key.asc")
	roots, _ := os.ReadFile("testdata/fuzz-roots")
	folder, err := ParseFolder(roots, map[string][]byte{"k.asc": key})
	if err != nil {
		t.Fatal(err)
	}
	a, err := ComputeAdmins(folder, Options{Now: time.Unix(1_800_000_000, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.List()) != 1 || !a.IsAdmin(1) {
		t.Fatalf("admins %+v, rejected %+v", a.List(), a.Rejected())
	}
	if _, err := a.Recipients(); err != nil {
		t.Fatal(err)
	}
}
