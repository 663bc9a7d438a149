package bastion

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/policy"
)

// hostCertAlgorithms are the host key algorithms the bastion accepts from
// targets: certificates only, since a plain host key could only be
// trusted on first use.
var hostCertAlgorithms = []string{
	ssh.CertAlgoED25519v01,
	ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
	ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01,
}

// errTargetHostKey marks a target whose host key is not certified by the
// host CA for its name.
var errTargetHostKey = errors.New("host key not certified")

// targetError is a failure to reach a target: Msg is shown to the user,
// Err (with addresses and library detail) only logged.
type targetError struct {
	Msg string
	Err error
}

func (e *targetError) Error() string {
	if e.Err == nil {
		return e.Msg
	}
	return e.Msg + ": " + e.Err.Error()
}

func (e *targetError) Unwrap() error { return e.Err }

// dialTarget connects to the target of t as t's login, with a fresh
// ephemeral key and a session certificate minted for this connection.
func (s *Server) dialTarget(ctx context.Context, t *targetConn, tm terms) (*ssh.Client, error) {
	info := t.info
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, &targetError{"the bastion could not create a session key", err}
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("session key: %w", err)
	}
	cert, err := s.Authority.IssueSession(ctx, ca.SessionRequest{
		PublicKey:    signer.PublicKey(),
		Principal:    info.login,
		TTL:          SessionCertTTL,
		Permissions:  caPermissions(tm.perms),
		ForceCommand: tm.forceCommand,
		KeyID:        sessionKeyID(info, t.id),
		Identity:     info.identity,
	})
	if err != nil {
		return nil, &targetError{"the bastion could not mint a session certificate", err}
	}
	certSigner, err := ssh.NewCertSigner(cert, signer)
	if err != nil {
		return nil, fmt.Errorf("session certificate: %w", err)
	}
	addr := tm.address
	var checked error
	cfg := &ssh.ClientConfig{
		User:              info.login,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(certSigner)},
		HostKeyAlgorithms: hostCertAlgorithms,
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			checked = s.checkTargetHostKey(info.host, addr, key)
			return checked
		},
		ClientVersion: "SSH-2.0-Sallyport",
	}
	cfg.Ciphers = s.ciphers()
	dctx, cancel := context.WithTimeout(ctx, durationOr(s.DialTimeout, DefaultDialTimeout))
	nc, err := s.dial(dctx, addr)
	cancel()
	if err != nil {
		return nil, &targetError{fmt.Sprintf("cannot reach %s", info.host), err}
	}
	_ = nc.SetDeadline(time.Now().Add(durationOr(s.HandshakeTimeout, DefaultHandshakeTimeout)))
	c, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	if err != nil {
		nc.Close()
		switch {
		case checked != nil:
			return nil, checked
		case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
			return nil, &targetError{fmt.Sprintf("%s did not complete the SSH handshake in time", info.host), err}
		}
		return nil, &targetError{fmt.Sprintf("%s refused the bastion's session certificate or offered no host certificate from the host CA", info.host), err}
	}
	_ = nc.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (s *Server) dial(ctx context.Context, addr string) (net.Conn, error) {
	if s.Dial != nil {
		return s.Dial(ctx, "tcp", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// checkTargetHostKey accepts only a host certificate signed by the host CA
// itself, valid now, naming the policy host or the host part of its
// address.
func (s *Server) checkTargetHostKey(host, addr string, key ssh.PublicKey) error {
	cert, ok := key.(*ssh.Certificate)
	if !ok {
		return fmt.Errorf("%s presented a plain host key; the bastion accepts only host certificates from the host CA: %w", host, errTargetHostKey)
	}
	if _, ok := cert.SignatureKey.(*ssh.Certificate); ok || !bytes.Equal(cert.SignatureKey.Marshal(), s.hostCA.Marshal()) {
		return fmt.Errorf("%s presented a host certificate not signed by the host CA: %w", host, errTargetHostKey)
	}
	if cert.CertType != ssh.HostCert {
		return fmt.Errorf("%s presented a user certificate as its host key: %w", host, errTargetHostKey)
	}
	if err := verifyCertSignature(cert); err != nil {
		return fmt.Errorf("%s presented a host certificate whose signature does not verify: %w", host, errTargetHostKey)
	}
	now := s.now().Unix()
	if now < 0 || uint64(now) < cert.ValidAfter || (cert.ValidBefore != ssh.CertTimeInfinity && uint64(now) >= cert.ValidBefore) {
		return fmt.Errorf("%s presented a host certificate outside its validity period: %w", host, errTargetHostKey)
	}
	names := []string{host}
	if h, _, err := net.SplitHostPort(addr); err == nil {
		names = append(names, h)
	}
	for _, n := range names {
		if slices.Contains(cert.ValidPrincipals, n) {
			return nil
		}
	}
	return fmt.Errorf("%s presented a host certificate for other names: %w", host, errTargetHostKey)
}

// caPermissions converts policy permissions to certificate permissions.
func caPermissions(p policy.Permissions) []ca.Permission {
	var out []ca.Permission
	for _, name := range p.Names() {
		out = append(out, ca.Permission(name))
	}
	return out
}

// keyIDUser is the user part of a session certificate's key ID: the GitHub
// login when known.
func keyIDUser(info *authInfo) string {
	if info.who.Login != "" && ca.ValidateKeyID(info.who.Login) == nil {
		return info.who.Login
	}
	return "user"
}
