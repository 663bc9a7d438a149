// Package gpgtest runs the real GnuPG in throwaway home folders for tests:
// keys are made, certified, revoked and used for signing with the gpg
// command line exactly as an admin would.
package gpgtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Home is one GNUPGHOME folder.
type Home struct {
	t   testing.TB
	Dir string
}

// New creates a GNUPGHOME under /tmp (gpg-agent's socket path must stay
// short) and removes it, after stopping its agent, when the test ends.
func New(t testing.TB) *Home {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Fatalf("gpg is required for this test: %v", err)
	}
	dir, err := os.MkdirTemp("/tmp", "gh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	h := &Home{t: t, Dir: dir}
	t.Cleanup(func() {
		cmd := exec.Command("gpgconf", "--kill", "all")
		cmd.Env = h.env()
		_ = cmd.Run()
		os.RemoveAll(dir)
	})
	return h
}

func (h *Home) env() []string {
	return append(os.Environ(), "GNUPGHOME="+h.Dir, "LC_ALL=C", "TZ=UTC")
}

// Try runs gpg non-interactively with an empty passphrase and returns its
// standard output.
func (h *Home) Try(args ...string) ([]byte, error) {
	base := []string{"--batch", "--yes", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", "", "--no-auto-check-trustdb", "--trust-model", "always"}
	cmd := exec.Command("gpg", append(base, args...)...)
	cmd.Env = h.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &Error{Args: args, Err: err, Stderr: stderr.String()}
	}
	return stdout.Bytes(), nil
}

// Error is a failed gpg run.
type Error struct {
	Args   []string
	Err    error
	Stderr string
}

func (e *Error) Error() string {
	return "gpg " + strings.Join(e.Args, " ") + ": " + e.Err.Error() + "\n" + e.Stderr
}

// Run is Try, failing the test on error.
func (h *Home) Run(args ...string) []byte {
	h.t.Helper()
	out, err := h.Try(args...)
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

// RunStdin runs gpg with stdin as input.
func (h *Home) RunStdin(stdin []byte, args ...string) []byte {
	h.t.Helper()
	base := []string{"--batch", "--yes", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", "", "--no-auto-check-trustdb", "--trust-model", "always"}
	cmd := exec.Command("gpg", append(base, args...)...)
	cmd.Env = h.env()
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		h.t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// GenKey makes an Ed25519 primary key (sign, certify) with a Curve25519
// encryption subkey for uid, expiring after expire ("1d", "never", ...),
// and returns its fingerprint. extra options go before the command, e.g.
// "--faked-system-time", "20200101T000000!".
func (h *Home) GenKey(uid, expire string, extra ...string) string {
	h.t.Helper()
	h.Run(append(extra, "--quick-gen-key", uid, "ed25519", "sign,cert", expire)...)
	fpr := h.Fingerprint(uid)
	h.Run(append(extra, "--quick-add-key", fpr, "cv25519", "encr", expire)...)
	return fpr
}

// GenRSAKey makes an RSA-2048 key for uid, for tests that need a signature
// hash Ed25519 cannot use.
func (h *Home) GenRSAKey(uid, expire string) string {
	h.t.Helper()
	h.Run("--quick-gen-key", uid, "rsa2048", "default", expire)
	return h.Fingerprint(uid)
}

// Fingerprint returns the fingerprint of the one key matching uid exactly.
func (h *Home) Fingerprint(uid string) string {
	h.t.Helper()
	out := h.Run("--with-colons", "--list-keys", "="+uid)
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, ":")
		if len(f) > 9 && f[0] == "fpr" {
			return f[9]
		}
	}
	h.t.Fatalf("no key for %q:\n%s", uid, out)
	return ""
}

// Certify makes signer certify the user IDs (all if none) of target.
// extra options, such as "--cert-digest-algo", "SHA1", go before the
// command.
func (h *Home) Certify(signer, target string, extra ...string) {
	h.t.Helper()
	h.Run(append(append([]string{"--default-key", signer}, extra...), "--quick-sign-key", target)...)
}

// RevokeCertification revokes signer's certification of target.
func (h *Home) RevokeCertification(target, signer string) {
	h.t.Helper()
	h.Run("--quick-revoke-sig", target, signer)
}

// RevokeKey imports the revocation certificate gpg stored when fpr was
// made, revoking the key.
func (h *Home) RevokeKey(fpr string) {
	h.t.Helper()
	rev, err := os.ReadFile(filepath.Join(h.Dir, "openpgp-revocs.d", fpr+".rev"))
	if err != nil {
		h.t.Fatal(err)
	}
	// gpg prefixes the armor line with ':' so that it is not imported by
	// accident.
	rev = bytes.Replace(rev, []byte(":-----BEGIN PGP PUBLIC KEY BLOCK-----"), []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----"), 1)
	h.RunStdin(rev, "--import")
}

// Export returns the armored public keys of fprs with all certifications,
// as `gpg --export --armor` writes them.
func (h *Home) Export(fprs ...string) []byte {
	h.t.Helper()
	return h.Run(append([]string{"--export", "--armor"}, fprs...)...)
}

// ExportSecret returns the armored secret key of fpr.
func (h *Home) ExportSecret(fpr string) []byte {
	h.t.Helper()
	return h.Run("--export-secret-keys", "--armor", fpr)
}

// Import imports armored keys exported from another home.
func (h *Home) Import(keys []byte) {
	h.t.Helper()
	h.RunStdin(keys, "--import")
}

// WriteFile writes data to name inside a fresh test folder and returns its
// path.
func WriteFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// DetachSign signs file with signer (binary, armored) and returns the
// signature. extra options go before the command.
func (h *Home) DetachSign(signer, file string, extra ...string) []byte {
	h.t.Helper()
	return h.Run(append(append([]string{"--local-user", signer, "--armor", "--output", "-"}, extra...), "--detach-sign", file)...)
}

// ClearSign clear-signs file with signer and returns the signed text.
func (h *Home) ClearSign(signer, file string, extra ...string) []byte {
	h.t.Helper()
	return h.Run(append(append([]string{"--local-user", signer, "--output", "-"}, extra...), "--clearsign", file)...)
}
