package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func signatureFor(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func TestReadSecretFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		want    string
		errHas  string
	}{
		{"ok/0600", "s3cret\n", 0o600, "s3cret", ""},
		{"ok/0400-trimmed", "  s3cret  \r\n", 0o400, "s3cret", ""},
		{"ok/0640-group-read", "s3cret", 0o640, "s3cret", ""},
		{"fail/world-readable", "s3cret", 0o644, "", "mode 0644"},
		{"fail/group-writable", "s3cret", 0o660, "", "mode 0660"},
		{"fail/empty", "\n", 0o600, "", "empty"},
		{"fail/two-lines", "a\nb\n", 0o600, "", "more than one line"},
		{"fail/too-large", strings.Repeat("a", maxSecretFile+1), 0o600, "", "larger"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, "/", "-"))
			if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil {
				t.Fatal(err)
			}
			got, err := ReadSecretFile(p)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("got %q, %v; want error containing %q", got, err, tc.errHas)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error reveals the secret: %v", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := ReadSecretFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file: got nil error")
	}
	if _, err := ReadSecretFile(dir); err == nil {
		t.Error("directory: got nil error")
	}
}

func TestFileTokenSourceRereads(t *testing.T) {
	p := filepath.Join(t.TempDir(), "token")
	ts := FileTokenSource(p)
	for _, tok := range []string{"first", "rotated"} {
		if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := ts.Token()
		if err != nil || got.AccessToken != tok {
			t.Fatalf("got %v, %v; want %s", got, err, tok)
		}
	}
	if _, err := StaticToken("").Token(); err == nil {
		t.Error("empty static token: got nil error")
	}
}
