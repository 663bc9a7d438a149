package policy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	// Test only: the package itself must not import x/crypto/ssh (see
	// TestDependencies), so its own parser is checked against it.
	"golang.org/x/crypto/ssh"
)

// dsaKey is an ssh-keygen -t dsa public key; Go can no longer make one.
const dsaKey = "ssh-dss AAAAB3NzaC1kc3MAAACBAK2PS7EZi2V/FAbFvFLGrDa0MeEqDE0JJvwL/Rsmqe0t5AqR78XrPLn3xuwxXLT9/IDe4q/Q3w7mY4ICxbFaJFZcpzKSgrC0XsO1lJgyzaRPjUsLuwD6ZO3xdQaNskYPUhV0tOzYFUZI2H+snGFdeJzwovB0dr7eqQgX1yuw8mqvAAAAFQDUltp5BSV/65CQZVXRyICmluJkqwAAAIAxPk7+A6DnzqcA/UaoGP2XonTKJWQTbCfxehJLJgz04YcwQd6Lza8D4FiOoh8qVxi67WktSwXuE4w3coZYCQSMpSaumcJuwmzh+eXB6GWHXkd0v4vZ5EjcXyXN+TNVjNvQfwUFqO3pET/xor9BV5sa/RFVcTH870H24VN9QMqEFAAAAIBeE3zxkmePcfM8gM/d0oTSu/pCNfbmx1Op2YbS+kFtcsxsk50N1oV7lNFqERxpOq3wgEzXkn8mR3Gr7E9O6J4rozzILNzV/pDAmmv77LXAF+qT8xiRETfaqjRCnkBe+mWNjIP7WDx5hfQGTsolnh5HLDyKoO/tf3TacXky5hWAzg== root@old"

// testKeys are public keys of every pinnable type and some that are not,
// made once per test binary.
type testKeys struct {
	ed, ed2, p256, p384, p521, rsa2048, rsa1024 ssh.PublicKey
}

var keysOnce = func() func(t testing.TB) *testKeys {
	var k *testKeys
	return func(t testing.TB) *testKeys {
		t.Helper()
		if k != nil {
			return k
		}
		pub := func(key any, err error) ssh.PublicKey {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
			p, err := ssh.NewPublicKey(key)
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		ec := func(c elliptic.Curve) ssh.PublicKey {
			k, err := ecdsa.GenerateKey(c, rand.Reader)
			return pub(&k.PublicKey, err)
		}
		rk := func(bits int) ssh.PublicKey {
			k, err := rsa.GenerateKey(rand.Reader, bits)
			return pub(&k.PublicKey, err)
		}
		edk := func() ssh.PublicKey {
			k, _, err := ed25519.GenerateKey(rand.Reader)
			return pub(k, err)
		}
		k = &testKeys{ed: edk(), ed2: edk(), p256: ec(elliptic.P256()), p384: ec(elliptic.P384()), p521: ec(elliptic.P521()), rsa2048: rk(2048), rsa1024: rk(1024)}
		return k
	}
}()

func authorizedKey(k ssh.PublicKey, comment string) string {
	s := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
	if comment != "" {
		s += " " + comment
	}
	return s
}

// wire builds SSH wire-format key data from strings and raw byte slices.
func wire(parts ...any) string {
	var b []byte
	for _, p := range parts {
		switch v := p.(type) {
		case string:
			b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		case []byte:
			b = append(b, v...)
		}
	}
	return base64.StdEncoding.EncodeToString(b)
}

func TestParseHostKey(t *testing.T) {
	k := keysOnce(t)
	hostCert := &ssh.Certificate{Key: k.ed, CertType: ssh.HostCert, ValidPrincipals: []string{"web1"}, ValidBefore: ssh.CertTimeInfinity}
	_, caKey, _ := ed25519.GenerateKey(rand.Reader)
	caSigner, err := ssh.NewSignerFromKey(caKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := hostCert.SignCert(rand.Reader, caSigner); err != nil {
		t.Fatal(err)
	}
	edData := k.ed.Marshal()[4+len(ssh.KeyAlgoED25519):] // string(key)
	p256Key := k.p256.(ssh.CryptoPublicKey).CryptoPublicKey().(*ecdsa.PublicKey)
	p256Point, err := p256Key.Bytes() // uncompressed, as in the wire format
	if err != nil {
		t.Fatal(err)
	}
	p256Compressed := append([]byte{2 | p256Point[64]&1}, p256Point[1:33]...)
	rsaKey := k.rsa2048.(ssh.CryptoPublicKey).CryptoPublicKey().(*rsa.PublicKey)
	tests := []struct {
		name string
		in   string
		want ssh.PublicKey // for ok cases
		bits int
		kind error // for fail cases
	}{
		{"ok/ed25519", authorizedKey(k.ed, "root@web1"), k.ed, 256, nil},
		{"ok/ed25519-no-comment", authorizedKey(k.ed, ""), k.ed, 256, nil},
		{"ok/comment-with-spaces", "  " + authorizedKey(k.ed, "web1  host key\t(2024)") + "\n", k.ed, 256, nil},
		{"ok/ecdsa-p256", authorizedKey(k.p256, ""), k.p256, 256, nil},
		{"ok/ecdsa-p384", authorizedKey(k.p384, ""), k.p384, 384, nil},
		{"ok/ecdsa-p521", authorizedKey(k.p521, ""), k.p521, 521, nil},
		{"ok/rsa-2048", authorizedKey(k.rsa2048, "x"), k.rsa2048, 2048, nil},

		{"fail/empty", "", nil, 0, errHostKeySyntax},
		{"fail/blank", " \t ", nil, 0, errHostKeySyntax},
		{"fail/type-only", "ssh-ed25519", nil, 0, errHostKeySyntax},
		{"fail/base64", "ssh-ed25519 AAAA!!!!", nil, 0, errHostKeySyntax},
		{"fail/unpadded-base64", "ssh-ed25519 " + strings.TrimRight(wire("ssh-ed25519", "0123456789abcdef0123456789abcde"), "="), nil, 0, errHostKeySyntax},
		{"fail/path", "/etc/ssh/ssh_host_ed25519_key.pub", nil, 0, errHostKeySyntax},
		{"fail/unknown-type", "ssh-ed448 " + wire("ssh-ed448", "x"), nil, 0, errHostKeySyntax},
		{"fail/known-hosts-line", "web1.example.org,10.0.1.11 " + authorizedKey(k.ed, ""), nil, 0, errHostKeySyntax},
		{"fail/authorized-keys-options", `from="10.0.0.0/8" ` + authorizedKey(k.ed, ""), nil, 0, errHostKeySyntax},
		{"fail/type-mismatch", "ssh-ed25519 " + strings.Fields(authorizedKey(k.p256, ""))[1], nil, 0, errHostKeySyntax},
		{"fail/signature-algorithm-name", "rsa-sha2-512 " + strings.Fields(authorizedKey(k.rsa2048, ""))[1], nil, 0, errHostKeySyntax},
		{"fail/no-name", "ssh-ed25519 AAAA", nil, 0, errHostKeySyntax},
		{"fail/ed25519-truncated", "ssh-ed25519 " + wire("ssh-ed25519", []byte{0, 0, 0, 32, 1, 2, 3}), nil, 0, errHostKeySyntax},
		{"fail/ed25519-31-bytes", "ssh-ed25519 " + wire("ssh-ed25519", string(make([]byte, 31))), nil, 0, errHostKeySyntax},
		{"fail/ed25519-trailing-data", "ssh-ed25519 " + wire([]byte(k.ed.Marshal()), "x"), nil, 0, errHostKeySyntax},
		{"fail/ed25519-short-key-field", "ssh-ed25519 " + wire("ssh-ed25519", []byte(edData[:10])), nil, 0, errHostKeySyntax},
		{"fail/ecdsa-wrong-curve", "ecdsa-sha2-nistp384 " + wire("ecdsa-sha2-nistp384", "nistp256", string(p256Point)), nil, 0, errHostKeySyntax},
		{"fail/ecdsa-point-off-curve", "ecdsa-sha2-nistp256 " + wire("ecdsa-sha2-nistp256", "nistp256", string(append(p256Point[:len(p256Point)-1:len(p256Point)-1], p256Point[len(p256Point)-1]^1))), nil, 0, errHostKeySyntax},
		{"fail/ecdsa-compressed-point", "ecdsa-sha2-nistp256 " + wire("ecdsa-sha2-nistp256", "nistp256", string(p256Compressed)), nil, 0, errHostKeySyntax},
		{"fail/rsa-leading-zero", "ssh-rsa " + wire("ssh-rsa", string([]byte{1, 0, 1}), string(append([]byte{0, 0}, rsaKey.N.Bytes()...))), nil, 0, errHostKeySyntax},
		{"fail/rsa-negative-modulus", "ssh-rsa " + wire("ssh-rsa", string([]byte{1, 0, 1}), string(rsaKey.N.Bytes())), nil, 0, errHostKeySyntax},
		{"fail/rsa-even-exponent", "ssh-rsa " + wire("ssh-rsa", string([]byte{4}), string(append([]byte{0}, rsaKey.N.Bytes()...))), nil, 0, errHostKeySyntax},
		{"fail/rsa-huge-exponent", "ssh-rsa " + wire("ssh-rsa", string([]byte{1, 0, 0, 1}), string(append([]byte{0}, rsaKey.N.Bytes()...))), nil, 0, errHostKeySyntax},
		{"fail/comment-control-character", authorizedKey(k.ed, "web1\x1b[31m"), nil, 0, errHostKeySyntax},
		{"fail/certificate", authorizedKey(hostCert, "web1"), nil, 0, errHostKeyCertificate},
		{"fail/certificate-type-only", "ssh-rsa-cert-v01@openssh.com", nil, 0, errHostKeyCertificate},
		{"fail/cert-authority-line", "@cert-authority * " + authorizedKey(caSigner.PublicKey(), ""), nil, 0, errHostKeyCertificate},
		{"fail/dsa", dsaKey, nil, 0, errHostKeyDSA},
		{"fail/rsa-1024", authorizedKey(k.rsa1024, ""), nil, 0, errHostKeyWeak},
		{"fail/rsa-over-16384", "ssh-rsa " + wire("ssh-rsa", string([]byte{1, 0, 1}), string(append([]byte{0x7f}, make([]byte, 2048)...))), nil, 0, errHostKeyUnsupported},
		{"fail/security-key", "sk-ssh-ed25519@openssh.com " + wire("sk-ssh-ed25519@openssh.com", string(edData[4:]), "ssh:"), nil, 0, errHostKeyUnsupported},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseHostKey(tc.in)
			if tc.want == nil {
				if !errors.Is(err, tc.kind) {
					t.Fatalf("got %v; want an error of kind %q", err, tc.kind)
				}
				if err.Error() == "" || strings.Contains(err.Error(), "\n") {
					t.Errorf("got message %q; want one line", err)
				}
				if !got.IsZero() {
					t.Errorf("got key %s with the error; want the zero HostKey", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Marshal(), tc.want.Marshal()) {
				t.Errorf("got key data %x; want %x", got.Marshal(), tc.want.Marshal())
			}
			if got.Type() != tc.want.Type() || got.Bits() != tc.bits {
				t.Errorf("got %s %d bits; want %s %d bits", got.Type(), got.Bits(), tc.want.Type(), tc.bits)
			}
			if got.Fingerprint() != ssh.FingerprintSHA256(tc.want) {
				t.Errorf("got fingerprint %s; want %s", got.Fingerprint(), ssh.FingerprintSHA256(tc.want))
			}
			if want := tc.want.Type() + " " + ssh.FingerprintSHA256(tc.want); got.String() != want {
				t.Errorf("got String %q; want %q", got.String(), want)
			}
			again, err := ParseHostKey(got.AuthorizedKey())
			if err != nil || !again.Equal(got) || again.Comment() != got.Comment() {
				t.Errorf("AuthorizedKey %q does not parse back: %v", got.AuthorizedKey(), err)
			}
			pk, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(got.AuthorizedKey()))
			if err != nil || !bytes.Equal(pk.Marshal(), got.Marshal()) || comment != got.Comment() {
				t.Errorf("x/crypto reads %q as %v %q, %v", got.AuthorizedKey(), pk, comment, err)
			}
		})
	}
}

func TestHostKeyJSON(t *testing.T) {
	k, err := ParseHostKey(authorizedKey(keysOnce(t).ed, "root@web1"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(Host{Name: "web1", Address: "10.0.1.11:22", HostKeys: []HostKey{k}})
	if err != nil {
		t.Fatal(err)
	}
	var back Host
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.HostKeys) != 1 || !back.HostKeys[0].Equal(k) || back.HostKeys[0].Comment() != "root@web1" {
		t.Errorf("got %+v from %s; want the key back", back, b)
	}
	if err := json.Unmarshal([]byte(`{"host_keys":["`+dsaKey+`"]}`), &back); !errors.Is(err, errHostKeyDSA) {
		t.Errorf("got %v; want the DSA key refused", err)
	}
}

// hostKeyPolicy is a policy with hosts web1 and web2 carrying the given
// host_keys lines (none when nil).
func hostKeyPolicy(web1, web2 []string) string {
	host := func(name string, keys []string) string {
		s := fmt.Sprintf("  - name: %s\n    address: 10.0.1.1:22\n", name)
		if keys != nil && len(keys) == 0 {
			s += "    host_keys: []\n"
		} else if keys != nil {
			s += "    host_keys:\n"
			for _, k := range keys {
				s += fmt.Sprintf("      - %q\n", k)
			}
		}
		return s
	}
	return "version: 1\ngithub: {org: example-oss}\ndefaults: {ttl: 8h, max_ttl: 24h}\nhosts:\n" +
		host("web1", web1) + host("web2", web2) +
		"roles:\n  - name: ops\n    members: {teams: [infra]}\n    principals: [root]\n    hosts: [\"*\"]\n"
}

func TestPolicyHostKeys(t *testing.T) {
	k := keysOnce(t)
	ed, ed2, rsaKey := authorizedKey(k.ed, "root@web1"), authorizedKey(k.ed2, ""), authorizedKey(k.rsa2048, "")
	tests := []struct {
		name       string
		web1, web2 []string
		want       string // substring of the error; empty for success
	}{
		{"ok/none", nil, nil, ""},
		{"ok/two-keys", []string{ed, rsaKey}, nil, ""},
		{"ok/same-key-two-hosts", []string{ed}, []string{ed}, ""},
		{"fail/empty-list", []string{}, nil, `policy.yaml:7:16: host "web1": host_keys is empty`},
		{"fail/duplicate", []string{ed, rsaKey, authorizedKey(k.ed, "other comment")}, nil, `policy.yaml:10:9: host "web1": host key ssh-ed25519 ` + ssh.FingerprintSHA256(k.ed) + ` is pinned twice (first at policy.yaml:8:9)`},
		{"fail/duplicate-second-host", []string{ed}, []string{ed2, ed2}, `policy.yaml:13:9: host "web2": host key ssh-ed25519 ` + ssh.FingerprintSHA256(k.ed2) + ` is pinned twice (first at policy.yaml:12:9)`},
		{"fail/dsa", []string{dsaKey}, nil, `policy.yaml:8:9: host "web1": host key is DSA (ssh-dss)`},
		{"fail/rsa-1024", nil, []string{authorizedKey(k.rsa1024, "")}, `policy.yaml:10:9: host "web2": RSA host key has 1024 bits`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse("policy.yaml", []byte(hostKeyPolicy(tc.web1, tc.web2)))
			if tc.want != "" {
				var ve *ValidationError
				if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got error %v; want *ValidationError containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Warnings) != 0 {
				t.Errorf("got warnings %v; want none", p.Warnings)
			}
			for _, c := range []struct {
				host string
				keys []string
			}{{"web1", tc.web1}, {"web2", tc.web2}} {
				h, ok := p.Host(c.host)
				if !ok {
					t.Fatalf("Host(%q) not found", c.host)
				}
				if len(h.HostKeys) != len(c.keys) {
					t.Fatalf("%s: got %d keys; want %d", c.host, len(h.HostKeys), len(c.keys))
				}
				for i, s := range c.keys {
					want, err := ParseHostKey(s)
					if err != nil {
						t.Fatal(err)
					}
					if !h.HostKeys[i].Equal(want) {
						t.Errorf("%s: key %d is %s; want %s", c.host, i, h.HostKeys[i], want)
					}
				}
			}
			if d := Compare(p, p, nil); !d.Empty() {
				t.Errorf("policy differs from itself: %+v", d)
			}
		})
	}
}

func TestValidateZeroHostKey(t *testing.T) {
	p := mustParse(t, "policy.yaml", hostKeyPolicy(nil, nil))
	p.Hosts[0].HostKeys = []HostKey{{}}
	err := p.Validate()
	if err == nil || !strings.Contains(err.Error(), `policy.yaml:5:5: host "web1": empty host key`) {
		t.Fatalf("got %v; want the zero host key refused", err)
	}
	if _, ok := p.Host("web1"); ok {
		t.Error("Host found a host in a policy that failed Validate")
	}
}

func TestPolicyHost(t *testing.T) {
	p := mustParse(t, "policy.yaml", hostKeyPolicy(nil, nil))
	if h, ok := p.Host("web2"); !ok || h.Name != "web2" || h.Address != "10.0.1.1:22" {
		t.Errorf("got %+v %t; want web2", h, ok)
	}
	if _, ok := p.Host("web3"); ok {
		t.Error("found web3; want no such host")
	}
	if _, ok := (&Policy{Hosts: []Host{{Name: "web1"}}}).Host("web1"); ok {
		t.Error("found a host in a policy never validated")
	}
}

func TestDiffHostKeys(t *testing.T) {
	k := keysOnce(t)
	ed, rsaKey, p256 := authorizedKey(k.ed, "a"), authorizedKey(k.rsa2048, "b"), authorizedKey(k.p256, "")
	tests := []struct {
		name     string
		old, new []string // web1's keys
		want     string   // the host line of the text diff; empty for no change
	}{
		{"ok/unchanged", []string{ed, rsaKey}, []string{ed, rsaKey}, ""},
		{"ok/reordered-and-recommented", []string{ed, rsaKey}, []string{authorizedKey(k.rsa2048, "new"), authorizedKey(k.ed, "")}, ""},
		{"ok/pinned", nil, []string{ed}, "changed web1: pinned host keys: added ssh-ed25519 " + ssh.FingerprintSHA256(k.ed)},
		{"ok/unpinned", []string{ed, rsaKey}, nil, "changed web1: pinned host keys: removed " + andList(sortedStrings("ssh-ed25519 "+ssh.FingerprintSHA256(k.ed), "ssh-rsa "+ssh.FingerprintSHA256(k.rsa2048)))},
		{"ok/replaced", []string{ed, rsaKey}, []string{ed, p256}, "changed web1: pinned host keys: added ecdsa-sha2-nistp256 " + ssh.FingerprintSHA256(k.p256) + ", removed ssh-rsa " + ssh.FingerprintSHA256(k.rsa2048)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			old := mustParse(t, "old.yaml", hostKeyPolicy(tc.old, nil))
			new := mustParse(t, "new.yaml", hostKeyPolicy(tc.new, nil))
			d := Compare(old, new, nil)
			if tc.want == "" {
				if !d.Empty() {
					t.Fatalf("got %+v; want no change", d)
				}
				return
			}
			var text, md, js bytes.Buffer
			if err := d.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			if err := d.WriteMarkdown(&md); err != nil {
				t.Fatal(err)
			}
			if err := d.WriteJSON(&js); err != nil {
				t.Fatal(err)
			}
			if got := text.String(); !strings.Contains(got, "\n  "+tc.want+"\n") {
				t.Errorf("text diff:\n%s\nwant line %q", got, tc.want)
			}
			detail := strings.TrimPrefix(tc.want, "changed web1: ")
			if got := md.String(); !strings.Contains(got, "- changed `web1`: "+detail+"\n") {
				t.Errorf("markdown diff:\n%s\nwant %q", got, detail)
			}
			if got := js.String(); !strings.Contains(got, fmt.Sprintf("%q", detail)) || !strings.Contains(got, `"changed": true`) {
				t.Errorf("JSON diff:\n%s\nwant detail %q", got, detail)
			}
		})
	}
}

func sortedStrings(s ...string) []string {
	if s[0] > s[1] {
		s[0], s[1] = s[1], s[0]
	}
	return s
}

// FuzzParseHostKey checks that what ParseHostKey accepts, OpenSSH's wire
// format as golang.org/x/crypto/ssh reads it agrees with byte for byte (the
// bastion compares keys that way), and that it reads back its own output.
func FuzzParseHostKey(f *testing.F) {
	k := keysOnce(f)
	for _, s := range []string{
		authorizedKey(k.ed, "root@web1"), authorizedKey(k.p256, ""), authorizedKey(k.p521, "x y"),
		authorizedKey(k.rsa2048, ""), authorizedKey(k.rsa1024, ""), dsaKey,
		"web1 " + authorizedKey(k.ed, ""), "ssh-ed25519 AAAA", "ssh-ed25519-cert-v01@openssh.com AAAA", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		hk, err := ParseHostKey(s)
		if err != nil {
			if !errors.Is(err, errHostKeySyntax) && !errors.Is(err, errHostKeyCertificate) && !errors.Is(err, errHostKeyDSA) &&
				!errors.Is(err, errHostKeyWeak) && !errors.Is(err, errHostKeyUnsupported) {
				t.Fatalf("error %v has no kind", err)
			}
			return
		}
		pk, err := ssh.ParsePublicKey(hk.Marshal())
		if err != nil {
			t.Fatalf("accepted %q, which x/crypto refuses: %v", s, err)
		}
		if !bytes.Equal(pk.Marshal(), hk.Marshal()) || pk.Type() != hk.Type() || ssh.FingerprintSHA256(pk) != hk.Fingerprint() {
			t.Fatalf("accepted %q, which x/crypto reads as another key", s)
		}
		if _, ok := pk.(*ssh.Certificate); ok {
			t.Fatalf("accepted certificate %q", s)
		}
		back, err := ParseHostKey(hk.AuthorizedKey())
		if err != nil || !back.Equal(hk) || back.Comment() != hk.Comment() {
			t.Fatalf("AuthorizedKey %q does not read back: %v", hk.AuthorizedKey(), err)
		}
	})
}

// FuzzHostKeyData checks the other direction: key data that x/crypto
// reads, in its canonical encoding, of a pinnable type and size, is
// accepted.
func FuzzHostKeyData(f *testing.F) {
	k := keysOnce(f)
	for _, pk := range []ssh.PublicKey{k.ed, k.p256, k.p384, k.p521, k.rsa2048, k.rsa1024} {
		f.Add(pk.Marshal())
	}
	f.Fuzz(func(t *testing.T, blob []byte) {
		pk, xerr := ssh.ParsePublicKey(blob)
		r := wireReader(blob)
		name, ok := r.string()
		if !ok {
			return
		}
		hk, err := ParseHostKey(string(name) + " " + base64.StdEncoding.EncodeToString(blob))
		if err == nil && (xerr != nil || !bytes.Equal(pk.Marshal(), blob)) {
			t.Fatalf("accepted %x, which x/crypto refuses or reads differently: %v", blob, xerr)
		}
		if xerr != nil || !bytes.Equal(pk.Marshal(), blob) {
			return
		}
		pinnable := false
		switch pk.Type() {
		case ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521:
			pinnable = true
		case ssh.KeyAlgoRSA:
			n := pk.(ssh.CryptoPublicKey).CryptoPublicKey().(*rsa.PublicKey).N
			pinnable = n.Sign() > 0 && n.BitLen() >= MinRSAHostKeyBits
		}
		if pinnable && err != nil {
			t.Fatalf("refused %s key %x that x/crypto reads: %v", pk.Type(), blob, err)
		}
		if err == nil && !pinnable {
			t.Fatalf("accepted %s key %x", pk.Type(), blob)
		}
		if err == nil && !bytes.Equal(hk.Marshal(), blob) {
			t.Fatalf("got key data %x; want %x", hk.Marshal(), blob)
		}
	})
}
