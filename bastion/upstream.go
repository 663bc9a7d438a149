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
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/policy"
)

// hostCertAlgorithms are the host key algorithms of host certificates,
// which the bastion accepts from every target. A plain host key is
// accepted only when the policy pins it for the host (see
// hostKeyAlgorithms); otherwise it could only be trusted on first use.
var hostCertAlgorithms = []string{
	ssh.CertAlgoED25519v01,
	ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
	ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01,
}

// hostKeyAlgorithms are the host key algorithms offered to a target with
// the given pinned keys: the certificate algorithms first, so that a
// target with a host certificate presents it, then the plain algorithms
// of the pinned keys in policy order (rsa-sha2-512 and rsa-sha2-256 for an
// RSA key, never SHA-1 ssh-rsa).
func hostKeyAlgorithms(pins []policy.HostKey) []string {
	if len(pins) == 0 {
		return hostCertAlgorithms
	}
	algs := slices.Clone(hostCertAlgorithms)
	add := func(names ...string) {
		for _, n := range names {
			if !slices.Contains(algs, n) {
				algs = append(algs, n)
			}
		}
	}
	for _, k := range pins {
		switch k.Type() {
		case policy.HostKeyED25519, policy.HostKeyECDSA256, policy.HostKeyECDSA384, policy.HostKeyECDSA521:
			add(k.Type())
		case policy.HostKeyRSA:
			add(ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256)
		}
	}
	return algs
}

// errTargetHostKey marks a target whose host key is neither certified by
// the host CA for its name nor pinned for it in the policy.
var errTargetHostKey = errors.New("host key not trusted")

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

// dialCause says in a few words, without the address, why a connection to
// a target failed, for the user's message; "" when it is not clear.
func dialCause(err error) string {
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr):
		return " (its address in the policy does not resolve)"
	case errors.Is(err, syscall.ECONNREFUSED):
		return " (connection refused: is its sshd running?)"
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return " (no answer in time)"
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		return " (no route to it)"
	}
	return ""
}

// dialTarget connects to the target of t as t's login, with a fresh
// ephemeral key and a session certificate minted for this connection. The
// certificate is minted while the TCP connection and the key exchange (with
// the check of the target's host certificate) run; authentication waits
// for it. It also returns the network connection under the client.
func (s *Server) dialTarget(ctx context.Context, t *targetConn, tm terms) (*ssh.Client, net.Conn, error) {
	d := s.startDial(ctx, t.info.host, tm.address, t.info.login, t.pre)
	creds, err := s.sessionCreds(ctx, t, tm)
	if err != nil {
		d.abort()
		return nil, nil, err
	}
	d.creds <- creds
	<-d.done
	return d.client, d.nc, d.err
}

// upstreamCreds are what authenticates the bastion to a target.
type upstreamCreds struct {
	signer ssh.Signer
}

// sessionCreds creates an ephemeral key and mints the session certificate
// for t's login on the target.
func (s *Server) sessionCreds(ctx context.Context, t *targetConn, tm terms) (upstreamCreds, error) {
	info := t.info
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return upstreamCreds{}, &targetError{"the bastion could not create a session key", err}
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return upstreamCreds{}, fmt.Errorf("session key: %w", err)
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
		return upstreamCreds{}, &targetError{"the bastion could not mint a session certificate", err}
	}
	certSigner, err := ssh.NewCertSigner(cert, signer)
	if err != nil {
		return upstreamCreds{}, fmt.Errorf("session certificate: %w", err)
	}
	return upstreamCreds{signer: certSigner}, nil
}

// upstreamDial is a connection to a target being set up: the TCP
// connection and the key exchange (with the host certificate check) run
// at once; authentication waits for the credentials sent on creds. abort
// abandons it before it authenticates.
type upstreamDial struct {
	creds  chan upstreamCreds // buffered; receives at most once
	cancel context.CancelFunc
	done   chan struct{} // closed when client or err is set
	client *ssh.Client
	nc     net.Conn // under client
	err    error
}

// errDialAbandoned ends a connection to a target that is no longer wanted.
var errDialAbandoned = errors.New("connection to the target abandoned")

// startDial starts connecting to host at addr as login, on pre if it goes
// there.
func (s *Server) startDial(ctx context.Context, host, addr, login string, pre *preConn) *upstreamDial {
	ctx, cancel := context.WithCancel(ctx)
	d := &upstreamDial{creds: make(chan upstreamCreds, 1), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		defer cancel()
		d.client, d.nc, d.err = s.dialUpstream(ctx, host, addr, login, pre, d.creds)
	}()
	return d
}

// abort abandons d and waits for it to end.
func (d *upstreamDial) abort() {
	d.cancel()
	<-d.done
	if d.client != nil {
		d.client.Close()
	}
}

// dialUpstream connects to host at addr and, once the key exchange
// accepted its host certificate, waits for creds to authenticate as login.
// It returns the client and the network connection under it.
func (s *Server) dialUpstream(ctx context.Context, host, addr, login string, pre *preConn, creds <-chan upstreamCreds) (*ssh.Client, net.Conn, error) {
	// Read while the connection and the key exchange run, for the host
	// key check.
	revs := make(chan revocationList, 1)
	go func() {
		rctx, cancel := context.WithTimeout(ctx, storeTimeout)
		defer cancel()
		list, err := s.Store.Revocations(rctx)
		revs <- revocationList{newRevocationSet(list), err}
	}()
	dctx, cancel := context.WithTimeout(ctx, durationOr(s.DialTimeout, DefaultDialTimeout))
	nc, ok, err := pre.take(dctx, addr)
	if !ok {
		nc, err = s.dial(dctx, addr)
	}
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, errDialAbandoned
		}
		return nil, nil, &targetError{fmt.Sprintf("cannot reach %s%s", host, dialCause(err)), err}
	}
	hs := durationOr(s.HandshakeTimeout, DefaultHandshakeTimeout)
	_ = nc.SetDeadline(time.Now().Add(hs))
	pins := s.pinnedHostKeys(host, addr)
	var (
		checked error
		signer  ssh.Signer
		authed  bool        // the credentials arrived; only the key exchange goroutine uses it
		keyOK   atomic.Bool // the target's host key was trusted
	)
	cfg := &ssh.ClientConfig{
		Auth: []ssh.AuthMethod{ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
			return []ssh.Signer{signer}, nil
		})},
		User:              login,
		HostKeyAlgorithms: hostKeyAlgorithms(pins),
		ClientVersion:     "SSH-2.0-Sallyport",
	}
	cfg.Ciphers = s.ciphers()
	// The host key callback runs for every key exchange, the first one
	// before authentication starts: it waits there for the credentials,
	// and sets the key that authentication then uses.
	var rl *revocationList
	cfg.HostKeyCallback = func(_ string, _ net.Addr, key ssh.PublicKey) error {
		if rl == nil {
			select {
			case r := <-revs:
				rl = &r
			case <-ctx.Done():
				checked = errDialAbandoned
				return checked
			}
		}
		if checked = s.checkTargetHostKey(host, addr, pins, key); checked == nil {
			checked = s.checkTargetRevoked(host, key, *rl)
		}
		if checked != nil || authed {
			return checked
		}
		keyOK.Store(true)
		select {
		case c := <-creds:
			signer, authed = c.signer, true
			_ = nc.SetDeadline(time.Now().Add(hs))
			return nil
		case <-ctx.Done():
			checked = errDialAbandoned
			return checked
		}
	}
	c, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	if err != nil {
		nc.Close()
		switch {
		case checked != nil:
			return nil, nil, checked
		case ctx.Err() != nil:
			return nil, nil, errDialAbandoned
		case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
			return nil, nil, &targetError{fmt.Sprintf("%s did not complete the SSH handshake in time", host), err}
		case isHostKeyNegotiation(err) && len(pins) > 0:
			return nil, nil, &targetError{fmt.Sprintf("%s offered neither a host certificate nor a key of the types pinned for it (%s)", host, hostKeyList(pins)),
				fmt.Errorf("%w: %w", errTargetHostKey, err)}
		case isHostKeyNegotiation(err):
			// Only certificate algorithms were offered, so a target with
			// plain host keys only cannot agree on any.
			return nil, nil, &targetError{fmt.Sprintf("%s offered no host certificate (it has no certificate from the host CA, and the policy pins no host key for it)", host),
				fmt.Errorf("%w: %w", errTargetHostKey, err)}
		case keyOK.Load():
			// The target's host key was trusted, so what failed is the
			// bastion's authentication.
			return nil, nil, &targetError{fmt.Sprintf("%s refused the bastion's session certificate for %q (does its sshd trust the session CA, and is there an account %q?)", host, login, login), err}
		}
		return nil, nil, &targetError{fmt.Sprintf("SSH handshake with %s failed", host), err}
	}
	_ = nc.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nc, nil
}

// preConn is a TCP connection to a ProxyJump target, opened while the
// user authenticates on the inner connection (see tunnel.preconnect).
type preConn struct {
	addr    string
	cancel  context.CancelFunc
	done    chan struct{} // closed when nc or err is set
	nc      net.Conn
	err     error
	taken   atomic.Bool
	release func() // called once, when the connection is taken or discarded
}

// preConnect starts connecting to the policy host named host; nil if there
// is none. release is called once the connection is taken or discarded.
func (s *Server) preConnect(host string, release func()) *preConn {
	p := s.Policy()
	if p == nil {
		return nil
	}
	h, ok := p.Host(host)
	if !ok || h.Address == "" {
		return nil
	}
	addr := h.Address
	ctx, cancel := context.WithTimeout(context.Background(), durationOr(s.DialTimeout, DefaultDialTimeout))
	pc := &preConn{addr: addr, cancel: cancel, done: make(chan struct{}), release: release}
	go func() {
		defer close(pc.done)
		pc.nc, pc.err = s.dial(ctx, addr)
	}()
	return pc
}

// take returns the connection, or the error opening it, if it goes to
// addr; ok is false otherwise, and the caller dials itself.
func (p *preConn) take(ctx context.Context, addr string) (nc net.Conn, ok bool, err error) {
	if p == nil {
		return nil, false, nil
	}
	if p.addr != addr {
		p.discard()
		return nil, false, nil
	}
	if !p.taken.CompareAndSwap(false, true) {
		return nil, false, nil
	}
	defer p.release()
	select {
	case <-p.done:
		p.cancel()
		return p.nc, true, p.err
	case <-ctx.Done():
		p.cancel()
		<-p.done
		if p.nc != nil {
			p.nc.Close()
		}
		return nil, true, ctx.Err()
	}
}

// discard closes the connection unless it was taken.
func (p *preConn) discard() {
	if p == nil || !p.taken.CompareAndSwap(false, true) {
		return
	}
	p.cancel()
	go func() {
		<-p.done
		if p.nc != nil {
			p.nc.Close()
		}
		p.release()
	}()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (s *Server) dial(ctx context.Context, addr string) (net.Conn, error) {
	dial := s.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	nc, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return quickAck(nc), nil
}

// pinnedHostKeys returns the host keys the policy in force pins for host,
// provided its entry still names addr, the address being dialled (from the
// decision that allowed the connection). After a reload that moved the
// host, the keys pinned for its new address say nothing about the old
// one: nil then, and only a host certificate is accepted.
func (s *Server) pinnedHostKeys(host, addr string) []policy.HostKey {
	p := s.Policy()
	if p == nil {
		return nil
	}
	h, ok := p.Host(host)
	if !ok || h.Address != addr {
		return nil
	}
	return h.HostKeys
}

// checkTargetHostKey accepts a host certificate signed by the host CA
// itself, valid now, naming the policy host or the host part of its
// address; or a host key byte for byte equal to one of pins, the keys the
// policy pins for the host, presented plain or inside any certificate.
// Nothing is trusted on first use.
func (s *Server) checkTargetHostKey(host, addr string, pins []policy.HostKey, key ssh.PublicKey) error {
	cert, ok := key.(*ssh.Certificate)
	plain := key
	if ok {
		plain = cert.Key
	}
	// The key exchange proved the target holds the private half of plain.
	// A pinned key is trusted as itself, whatever certificate wraps it (a
	// target may still present one from an old CA, or an expired one).
	b := plain.Marshal()
	for _, k := range pins {
		if bytes.Equal(b, k.Marshal()) {
			return nil
		}
	}
	if !ok {
		if len(pins) == 0 {
			return fmt.Errorf("%s presented a plain host key; the bastion accepts only host certificates from the host CA: %w", host, errTargetHostKey)
		}
		return fmt.Errorf("%s presented host key %s %s and no host certificate, but the policy pins %s for it: %w",
			host, key.Type(), ssh.FingerprintSHA256(key), hostKeyList(pins), errTargetHostKey)
	}
	if _, ok := cert.SignatureKey.(*ssh.Certificate); ok || !bytes.Equal(cert.SignatureKey.Marshal(), s.hostCA.Marshal()) {
		if len(pins) > 0 {
			return fmt.Errorf("%s presented a host certificate not signed by the host CA, for key %s %s, but the policy pins %s for it: %w",
				host, plain.Type(), ssh.FingerprintSHA256(plain), hostKeyList(pins), errTargetHostKey)
		}
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

// revocationList is the store's revocations as read for one connection to
// a target, or the error reading them.
type revocationList struct {
	set revocationSet
	err error
}

// checkTargetRevoked refuses a target host key (trusted by
// checkTargetHostKey) that has been revoked: a host certificate from the
// host CA by its serial, and the key itself, plain or inside any
// certificate. A target is not trusted if the revocations cannot be read.
func (s *Server) checkTargetRevoked(host string, key ssh.PublicKey, rl revocationList) error {
	if rl.err != nil {
		return &targetError{fmt.Sprintf("the bastion could not check whether the host key of %s is revoked; try again later", host), rl.err}
	}
	cert, isCert := key.(*ssh.Certificate)
	plain := key
	if isCert {
		plain = cert.Key
	}
	if reason, ok := rl.set.keys[ssh.FingerprintSHA256(plain)]; ok {
		return fmt.Errorf("%s presented host key %s %s, which has been revoked%s: %w", host, plain.Type(), ssh.FingerprintSHA256(plain), because(reason), errTargetHostKey)
	}
	// Serials name certificates of this Sallyport's CAs only.
	if isCert && bytes.Equal(cert.SignatureKey.Marshal(), s.hostCA.Marshal()) {
		if reason, ok := rl.set.serials[cert.Serial]; ok {
			return fmt.Errorf("%s presented host certificate serial %d, which has been revoked%s: %w", host, cert.Serial, because(reason), errTargetHostKey)
		}
	}
	return nil
}

// hostKeyList names pinned keys for messages: type and fingerprint, e.g.
// "ssh-ed25519 SHA256:...", separated by " or ".
func hostKeyList(pins []policy.HostKey) string {
	names := make([]string, len(pins))
	for i, k := range pins {
		names[i] = k.String()
	}
	return strings.Join(names, " or ")
}

// isHostKeyNegotiation reports whether err is the failure to agree on a
// host key algorithm: the target has no key of a type the bastion offers.
func isHostKeyNegotiation(err error) bool {
	var ne *ssh.AlgorithmNegotiationError
	return errors.As(err, &ne) && ne.What == "host key"
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
