package ca

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

const dsaLine = "ssh-dss AAAAB3NzaC1kc3MAAACBAP1/U4EddRIpUt9KnC7s5Of2EbdSPO9EAMMeP4C2USZpRV1AIlH7WT2NWPq/xfW6MPbLm1Vs14E7gB00b/JmYLdrmVClpJ+f6AR7ECLCT7up1/63xhv4O1fnxqimFQ8E+4P208UewwI1VBNaFpEy9nXzrith1yrv8iIDGZ3RSAHHAAAAFQCXYFCPFSMLzLKSuYKi64QL8Fgc9QAAAIEA9+GghdabPd7LvKtcNrhXuXmUr7v6OuqC+VdMCz0HgmdRWVeOutRZT+ZxBxCBgLRJFnEj6EwoFhO3zwkyjMim4TwWeotUfI0o4KOuHiuzpnWRbqN/C/ohNWLx+2J6ASQ7zKTxvqhRkImog9/hWuWfBpKLZl6Ae1UlZAFMO/7PSSoAAACBAJ/VmJf8U4BCQ/Fzu3Jt9WvhP+Rxd+yVRgEg1fz4Xu8nWBnBDIe02BZsEd5UkNFS9EFVqBJ4Hzbn8Ni8TmXmp5hVDhMeRYP5JmW0fhfjPxP2NaC+H0KTfiEG5bnn5wwU1RfFUgNfFPMBZgM+IJ1cQ4EejxKgR51gp5ixEEt4rF0U user@old"

func TestParsePublicKey(t *testing.T) {
	ed := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(userKey(t))))
	a, _ := testAuthority(t)
	cert, err := a.IssueUser(t.Context(), okUserRequest(t))
	if err != nil {
		t.Fatal(err)
	}
	certLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert)))
	tests := []struct {
		name    string
		in      string
		wantErr string
		is      error
	}{
		{name: "ok/plain", in: ed + "\n"},
		{name: "ok/comment", in: ed + " alice@laptop\n"},
		{name: "ok/comment-lines", in: "# my key\n\n" + ed + "\n"},
		{name: "fail/empty", in: "", wantErr: "no key found"},
		{name: "fail/garbage", in: "hello world", wantErr: "public key"},
		{name: "fail/two-keys", in: ed + "\n" + ed + "\n", wantErr: "more than one key"},
		{name: "fail/options", in: `command="/bin/sh" ` + ed, wantErr: "options are not allowed"},
		{name: "fail/certificate", in: certLine, is: ErrKeyIsCertificate},
		{name: "fail/dsa", in: dsaLine, is: ErrKeyDSA},
		{name: "fail/too-long", in: strings.Repeat("a", 20000), wantErr: "too long"},
		{name: "fail/private-key", in: "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n", wantErr: "public key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pub, err := ParsePublicKey([]byte(tc.in))
			if tc.wantErr == "" && tc.is == nil {
				if err != nil {
					t.Fatalf("ParsePublicKey: %v", err)
				}
				if pub.Type() != ssh.KeyAlgoED25519 {
					t.Errorf("type = %s", pub.Type())
				}
				return
			}
			if err == nil {
				t.Fatalf("ParsePublicKey accepted %q", tc.in)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error = %v; want %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error = %q; want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestValidateHostname(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"web1", true}, {"web1.example.org", true}, {"10.0.0.1", true}, {"::1", true},
		{"", false}, {"*.example.org", false}, {"web_1", false}, {"-web", false}, {"a..b", false},
		{"web1 ", false}, {strings.Repeat("a", 64), false},
	} {
		if err := ValidateHostname(tc.in); (err == nil) != tc.ok {
			t.Errorf("ValidateHostname(%q) = %v; want ok=%v", tc.in, err, tc.ok)
		}
	}
}

func TestParseSourceAddress(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"10.0.0.0/8", "10.0.0.0/8"}, {"192.0.2.7", "192.0.2.7/32"}, {"2001:db8::/32", "2001:db8::/32"},
		{"10.0.0.1/8", ""}, {"nonsense", ""}, {"10.0.0.0/33", ""}, {"fe80::1%eth0", ""},
	} {
		p, err := ParseSourceAddress(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("ParseSourceAddress(%q) = %v; want error", tc.in, p)
			}
			continue
		}
		if err != nil || p.String() != tc.want {
			t.Errorf("ParseSourceAddress(%q) = %v, %v; want %s", tc.in, p, err, tc.want)
		}
	}
}

func TestParsePermissions(t *testing.T) {
	ps, err := ParsePermissions("pty, permit-port-forwarding,X11-forwarding")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(ps); got != 3 || ps[2] != PermitX11Forwarding {
		t.Errorf("ParsePermissions = %v", ps)
	}
	if _, err := ParsePermissions("pty,sudo"); err == nil {
		t.Error("ParsePermissions accepted sudo")
	}
	if ps, err := ParsePermissions(""); err != nil || len(ps) != 0 {
		t.Errorf("ParsePermissions(\"\") = %v, %v; want none", ps, err)
	}
}

// FuzzParsePublicKey checks that no input panics the parser and that every
// accepted key is a plain key that re-encodes to an equal key.
func FuzzParsePublicKey(f *testing.F) {
	f.Add([]byte(dsaLine))
	f.Add([]byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl comment"))
	f.Add([]byte("# comment\n\nssh-rsa AAAA"))
	f.Add([]byte(`from="*" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl`))
	f.Fuzz(func(t *testing.T, data []byte) {
		pub, err := ParsePublicKey(data)
		if err != nil {
			return
		}
		if _, ok := pub.(*ssh.Certificate); ok {
			t.Fatal("accepted a certificate")
		}
		again, err := ssh.ParsePublicKey(pub.Marshal())
		if err != nil {
			t.Fatalf("accepted key does not re-parse: %v", err)
		}
		if string(again.Marshal()) != string(pub.Marshal()) {
			t.Fatal("accepted key changes when re-encoded")
		}
	})
}

// FuzzUserRequest checks that request validation never panics and that an
// issued certificate always has principals that are valid user names and a
// key ID free of control characters.
func FuzzUserRequest(f *testing.F) {
	f.Add("root", "alice github:1", "", "pty", int64(3600))
	f.Add("*", "x\n", "ls\x00", "pty,sudo", int64(-1))
	f.Add("", "", "", "", int64(0))
	f.Fuzz(func(t *testing.T, principal, keyID, forceCommand, permit string, ttlSeconds int64) {
		a, _ := testAuthority(t)
		perms, err := ParsePermissions(permit)
		if err != nil {
			return
		}
		cert, err := a.IssueUser(t.Context(), UserRequest{
			PublicKey: userKey(t), Principals: []string{principal}, KeyID: keyID, ForceCommand: forceCommand,
			Permissions: perms, TTL: timeSeconds(ttlSeconds), MaxTTL: 24 * 3600 * 1e9,
		})
		if err != nil {
			return
		}
		if len(cert.ValidPrincipals) == 0 {
			t.Fatal("issued a certificate without principals")
		}
		for _, p := range cert.ValidPrincipals {
			if ValidatePrincipal(p) != nil {
				t.Fatalf("issued invalid principal %q", p)
			}
		}
		for _, r := range cert.KeyId {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("key ID %q has a control character", cert.KeyId)
			}
		}
		if cert.ValidBefore <= cert.ValidAfter {
			t.Fatal("empty validity window")
		}
	})
}
