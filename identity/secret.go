package identity

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/oauth2"
)

// maxSecretFile bounds a secret or token file.
const maxSecretFile = 64 << 10

// ReadSecretFile reads a secret (client secret, webhook secret, API token)
// from a file, trimming surrounding white space. It refuses an empty file
// and a file that others may read or that anyone but its owner may write:
// mode 0600 or 0400 (0640/0440 are accepted for group-mounted secrets).
// Errors name the file, never its content.
func ReadSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("identity: secret file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("identity: secret file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("identity: secret file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o027 != 0 {
		return "", fmt.Errorf("identity: secret file %s has mode %04o: others must not read it and only its owner may write it (chmod 600 %s)", path, perm, path)
	}
	if fi.Size() > maxSecretFile {
		return "", fmt.Errorf("identity: secret file %s is larger than %d bytes", path, maxSecretFile)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", fmt.Errorf("identity: secret file: %w", err)
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("identity: secret file %s is larger than %d bytes", path, maxSecretFile)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("identity: secret file %s is empty", path)
	}
	if strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("identity: secret file %s has more than one line", path)
	}
	return s, nil
}

// FileTokenSource returns a token source that reads the token from path
// with ReadSecretFile each time it is asked, so a rotated token is picked
// up at the next Directory refresh without a restart.
func FileTokenSource(path string) oauth2.TokenSource {
	return fileTokenSource(path)
}

type fileTokenSource string

func (p fileTokenSource) Token() (*oauth2.Token, error) {
	s, err := ReadSecretFile(string(p))
	if err != nil {
		return nil, err
	}
	return &oauth2.Token{AccessToken: s, TokenType: "Bearer"}, nil
}

// StaticToken returns a token source for a fixed token (tests, or a token
// the caller read itself).
func StaticToken(token string) oauth2.TokenSource {
	if token == "" {
		return errTokenSource{}
	}
	return oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token, TokenType: "Bearer"})
}

type errTokenSource struct{}

func (errTokenSource) Token() (*oauth2.Token, error) { return nil, errors.New("identity: empty token") }
