package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/store"
	"github.com/sallyport/sallyport/trust"
)

func TestBreakGlassCommands(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	runCLI(t, "ca", "init", "--data", data)
	w := newGPGWorld(t, filepath.Join(data, "trust"))
	key := newUserKey(t, w.dir)

	newRequest := func(t *testing.T) string {
		t.Helper()
		req := filepath.Join(t.TempDir(), "req.txt")
		_, stderr, err := tryCLI(t, "breakglass", "request", "--principal", "root", "--host", "web1",
			"--reason", "GitHub is down", "--key", key+".pub", "--ttl", "30m", "--out", req)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(stderr, "gpg --clearsign "+req) {
			t.Errorf("instructions lack the gpg command:\n%s", stderr)
		}
		return req
	}
	signed := func(t *testing.T, signer string) string {
		t.Helper()
		req := newRequest(t)
		return w.write(t, filepath.Base(filepath.Dir(req))+".asc", w.gpg.ClearSign(signer, req))
	}

	good := signed(t, w.admin)
	out, stderr, err := tryCLI(t, "ca", "breakglass", "--data", data, good)
	if err != nil {
		t.Fatalf("ca breakglass: %v\n%s", err, stderr)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	cert := pub.(*ssh.Certificate)
	if cert.ValidPrincipals[0] != "root" || !strings.HasPrefix(cert.KeyId, "breakglass:") || cert.ValidBefore-cert.ValidAfter > 3600+600 {
		t.Errorf("certificate principals %v key ID %q validity %ds", cert.ValidPrincipals, cert.KeyId, cert.ValidBefore-cert.ValidAfter)
	}
	if !strings.Contains(stderr, "BREAK-GLASS CERTIFICATE ISSUED") || !strings.Contains(stderr, "github:admin/3") {
		t.Errorf("no loud notice:\n%s", stderr)
	}

	tests := []struct {
		name string
		args []string
		err  error
		text string
	}{
		{"fail/replayed", []string{good}, store.ErrRequestUsed, "already used"},
		{"fail/non-admin", []string{signed(t, w.outsider)}, trust.ErrRefused, "not an admin"},
		{"fail/tampered", []string{w.write(t, "tampered.asc", []byte(strings.Replace(string(w.gpg.ClearSign(w.admin, newRequest(t))), "principal: root", "principal: toor", 1)))}, trust.ErrRefused, "bad signature"},
		{"fail/two-signers-required", []string{"--signers", "2", signed(t, w.admin)}, trust.ErrRefused, "2 required"},
		{"fail/unsigned", []string{newRequest(t)}, trust.ErrRefused, "does not start with"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := tryCLI(t, append([]string{"ca", "breakglass", "--data", data}, tc.args...)...)
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("err = %v; want %v containing %q", err, tc.err, tc.text)
			}
			if out != "" {
				t.Errorf("printed %q on refusal", out)
			}
		})
	}
	log, err := os.ReadFile(filepath.Join(data, auditFile))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), `"type":"breakglass"`); n != 1+len(tests) {
		t.Errorf("%d breakglass audit lines; want %d", n, 1+len(tests))
	}

	t.Run("fail/bad-request-flags", func(t *testing.T) {
		_, _, err := tryCLI(t, "breakglass", "request", "--principal", "root", "--host", "web1", "--reason", "x", "--key", key+".pub", "--ttl", "2h")
		if err == nil || !strings.Contains(err.Error(), "at most 1h") {
			t.Errorf("err = %v; want ttl refusal", err)
		}
	})
}

func TestSealUnseal(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	runCLI(t, "ca", "init", "--data", data)
	w := newGPGWorld(t, filepath.Join(data, "trust"))
	key := newUserKey(t, w.dir)
	before, err := os.ReadFile(filepath.Join(data, "user_ca"))
	if err != nil {
		t.Fatal(err)
	}

	out := runCLI(t, "ca", "seal", "--data", data)
	if !strings.Contains(out, "sealed the user CA key") || !strings.Contains(out, "github:root1/1") {
		t.Errorf("seal output:\n%s", out)
	}
	sealed, err := os.ReadFile(filepath.Join(data, "user_ca"))
	if err != nil {
		t.Fatal(err)
	}
	if !ca.IsSealed(sealed) || strings.Contains(string(sealed), "OPENSSH PRIVATE KEY") {
		t.Fatalf("user_ca is not sealed:\n%s", sealed)
	}
	if out := runCLI(t, "ca", "seal", "--data", data); !strings.Contains(out, "already sealed") {
		t.Errorf("second seal: %s", out)
	}
	// Every admin can read a sealed key with plain gpg.
	for _, fpr := range []string{w.root1, w.root2, w.admin} {
		t.Run("ok/gpg-decrypt-"+fpr[:8], func(t *testing.T) {
			other := newHomeWith(t, w, fpr)
			if got := other.RunStdin(sealed, "--decrypt"); string(got) != string(before) {
				t.Errorf("gpg --decrypt gave a different key")
			}
		})
	}
	if _, err := other(t, w).Try("--decrypt", filepath.Join(data, "user_ca")); err == nil {
		t.Errorf("the outsider decrypted a sealed key")
	}

	_, _, err = tryCLI(t, "ca", "breakglass", "--data", data, key+".pub")
	if !errors.Is(err, ca.ErrSealed) || !strings.Contains(err.Error(), "sallyport ca unseal") {
		t.Errorf("breakglass on a sealed CA: %v; want ErrSealed with the unseal command", err)
	}
	if _, _, err := tryCLI(t, "ca", "sign-user", "--data", data, "--principal", "root", "--key-id", "x", key+".pub"); err == nil {
		t.Errorf("sign-user with sealed keys succeeded")
	}
	if _, _, err := tryCLI(t, "ca", "unseal", "--data", data, "--key", w.secret(t, w.outsider)); err == nil {
		t.Errorf("unseal with the outsider's key succeeded")
	}
	if out := runCLI(t, "ca", "unseal", "--data", data, "--key", w.secret(t, w.admin)); !strings.Contains(out, "unsealed the host CA key") {
		t.Errorf("unseal output:\n%s", out)
	}
	after, err := os.ReadFile(filepath.Join(data, "user_ca"))
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Errorf("unsealed key differs from the original")
	}
	if fi, err := os.Stat(filepath.Join(data, "user_ca")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("unsealed key mode %v, %v", fi.Mode(), err)
	}
	signUser(t, data, key, "--principal", "root", "--key-id", "after-unseal")
}
