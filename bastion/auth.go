package bastion

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/policy"
	"github.com/sallyport/sallyport/store"
)

// authKey is the Permissions.ExtraData key under which the bastion carries
// what it learnt about the certificate that authenticated a connection.
type authKey struct{}

// authInfo is what authentication established about a connection. It
// travels only inside the *ssh.Permissions of the key being checked.
type authInfo struct {
	cert  *ssh.Certificate
	login string
	host  string // "" on a ProxyJump carrier connection

	// Set after proof of possession.
	identity string          // the store's identity, e.g. "github:1234"
	who      policy.Identity // latest known identity; CI claims for CI
	glass    *breakGlass     // set for a break-glass certificate
	terms    terms           // what the policy allows; target connections only

	// The user connection the key came on (the carrier's, for a
	// ProxyJump inner connection), whose budget of audited refusals its
	// refusals spend (see auditDeny).
	conn *serverConn
	// carrier is what authenticated the ProxyJump connection an inner
	// connection came through; nil on a connection from the network.
	// The inner connection must be the same identity's.
	carrier *authInfo
}

// fields are the audit fields naming the certificate of info and, for a
// ProxyJump inner connection, the serial of the jump connection's
// certificate ("carrier_serial").
func (info *authInfo) fields(remote net.Addr) map[string]string {
	f := certFields(info.cert, remote)
	info.addCarrier(f)
	return f
}

// addCarrier adds the serial of the certificate of the ProxyJump
// connection info came through to the audit fields f, as
// "carrier_serial"; nothing on a connection from the network.
func (info *authInfo) addCarrier(f map[string]string) {
	if info.carrier != nil {
		f["carrier_serial"] = strconv.FormatUint(info.carrier.cert.Serial, 10)
	}
}

// terms are the conditions of access to one login@host, from the policy
// decision narrowed by the certificate.
type terms struct {
	perms        policy.Permissions
	forceCommand string
	recordInput  bool
	address      string
	roles        []string
}

// denial is a refusal with a reason fit to show the user.
type denial struct{ reason string }

func (d *denial) Error() string { return d.reason }

func deny(format string, args ...any) error { return &denial{reason: fmt.Sprintf(format, args...)} }

// Critical options the bastion understands; any other refuses the
// certificate, as OpenSSH does.
const (
	optForceCommand  = "force-command"
	optSourceAddress = "source-address"
)

// userAuthAlgorithms are the signature algorithms the bastion accepts for
// user authentication, certificates included (x/crypto names them by the
// algorithm of the key inside): every key type the CA certifies, but not
// ssh-rsa, RSA with SHA-1, which x/crypto still accepts by default and
// OpenSSH refuses since 8.8.
var userAuthAlgorithms = []string{
	ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519,
	ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoSKECDSA256,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}

// handshake is the authentication of one incoming connection: a user's,
// or the inner connection of a ProxyJump tunnel. Its callbacks run one at
// a time, on the connection's handshake goroutine.
type handshake struct {
	// refusedKeys are the keys the client proved it holds that were
	// refused on this connection (by their wire encoding). A key offered
	// again is refused quietly: the decision cannot change within the
	// handshake, and the user has been told why. A key not refused yet is
	// decided as usual, so that a valid certificate the agent holds
	// behind an expired or revoked one still logs in; MaxAuthTries bounds
	// the attempts.
	refusedKeys map[string]struct{}
}

// refuse remembers that key, proven, was refused; see refusedKeys.
func (h *handshake) refuse(key ssh.PublicKey) {
	if h.refusedKeys == nil {
		h.refusedKeys = map[string]struct{}{}
	}
	h.refusedKeys[string(key.Marshal())] = struct{}{}
}

// refusedBefore reports whether key was refused on this connection already.
func (h *handshake) refusedBefore(key ssh.PublicKey) bool {
	_, ok := h.refusedKeys[string(key.Marshal())]
	return ok
}

// errRefusedBefore refuses a key offered again after it was refused on the
// same connection.
var errRefusedBefore = errors.New("this certificate was refused on this connection already")

// serverConfig returns the configuration for one incoming connection on
// the user connection c, presenting signer. tun is the ProxyJump tunnel
// the connection comes through, or nil for a connection from the network.
func (s *Server) serverConfig(c *serverConn, signer ssh.Signer, tun *tunnel, h *handshake) *ssh.ServerConfig {
	cfg := &ssh.ServerConfig{
		MaxAuthTries:            6,
		ServerVersion:           "SSH-2.0-Sallyport",
		PublicKeyAuthAlgorithms: userAuthAlgorithms,
		PublicKeyCallback: func(conn ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			return s.offeredKey(c, conn, key, tun)
		},
		VerifiedPublicKeyCallback: func(conn ssh.ConnMetadata, key ssh.PublicKey, perms *ssh.Permissions, _ string) (*ssh.Permissions, error) {
			if h.refusedBefore(key) {
				// Quietly: no store read, no audit.
				return nil, errRefusedBefore
			}
			return s.provenKey(h, conn, key, perms)
		},
	}
	cfg.Ciphers = s.ciphers()
	cfg.AddHostKey(signer)
	return cfg
}

// banner wraps err so that x/crypto shows the user its one-line reason.
func banner(err error) error {
	return &ssh.BannerError{Err: err, Message: "sallyport: " + err.Error() + "\r\n"}
}

// offeredKey checks a key the client offers. It may run for keys the client
// never proves it holds, so it keeps no state and writes nothing: it only
// checks what the certificate alone shows (issuer, type, signature) and
// returns what it found inside the Permissions for this very key. On a
// ProxyJump inner connection, the carrier's own certificate offered there
// starts the connection to the target (see tunnel.preconnect): nothing is
// sent on it unless the login is authorised.
func (s *Server) offeredKey(c *serverConn, conn ssh.ConnMetadata, key ssh.PublicKey, tun *tunnel) (*ssh.Permissions, error) {
	login, host, err := ParseUser(conn.User())
	if err != nil {
		return nil, banner(err)
	}
	var carrier *authInfo
	if tun != nil {
		if host != "" {
			return nil, banner(fmt.Errorf("%w: through ProxyJump, log in as LOGIN, not %q", ErrBadUser, conn.User()))
		}
		host, carrier = tun.host, tun.carrier
	}
	cert, ok := key.(*ssh.Certificate)
	if !ok {
		// Agents usually offer plain keys before certificates; refusing
		// quietly lets the client go on to its certificate.
		return nil, errors.New("only certificates from the Sallyport user CA are accepted")
	}
	if err := s.checkIssuer(cert); err != nil {
		return nil, banner(err)
	}
	if tun != nil && bytes.Equal(cert.Marshal(), carrier.cert.Marshal()) {
		tun.preconnect()
	}
	return &ssh.Permissions{ExtraData: map[any]any{
		authKey{}: &authInfo{cert: cert, login: login, host: host, conn: c, carrier: carrier},
	}}, nil
}

// checkIssuer verifies that cert is a user certificate signed by the user
// CA itself.
func (s *Server) checkIssuer(cert *ssh.Certificate) error {
	if _, ok := cert.SignatureKey.(*ssh.Certificate); ok {
		return errors.New("certificate refused: it is signed by a certificate, not by a CA key")
	}
	if !bytes.Equal(cert.SignatureKey.Marshal(), s.userCA.Marshal()) {
		return fmt.Errorf("certificate refused: it is signed by %s %s, not by the Sallyport user CA (sign in again with 'sallyport login')",
			cert.SignatureKey.Type(), ssh.FingerprintSHA256(cert.SignatureKey))
	}
	if cert.CertType != ssh.UserCert {
		return errors.New("certificate refused: it is a host certificate, not a user certificate")
	}
	if err := verifyCertSignature(cert); err != nil {
		return errors.New("certificate refused: its signature does not verify")
	}
	return nil
}

// verifyCertSignature checks cert's signature by its SignatureKey.
func verifyCertSignature(cert *ssh.Certificate) error {
	if cert.Signature == nil {
		return errors.New("unsigned")
	}
	c := *cert
	c.Signature = nil
	b := c.Marshal()
	// Marshal ends with the signature as a string: an empty one is four
	// zero bytes, which are not signed.
	return cert.SignatureKey.Verify(b[:len(b)-4], cert.Signature)
}

// provenKey runs once the client proved it holds key, with the Permissions
// offeredKey returned for that key. Refusals from here on are audited
// (see auditLoginRefusal), and the key is not decided again on the
// connection (see handshake); the client may go on to its next key.
func (s *Server) provenKey(h *handshake, conn ssh.ConnMetadata, key ssh.PublicKey, perms *ssh.Permissions) (*ssh.Permissions, error) {
	info, _ := perms.ExtraData[authKey{}].(*authInfo)
	if info == nil || !bytes.Equal(info.cert.Marshal(), key.Marshal()) {
		return nil, errors.New("bastion: internal error: verified key does not match its permissions")
	}
	ctx, cancel := context.WithTimeout(context.Background(), durationOr(s.HandshakeTimeout, DefaultHandshakeTimeout))
	defer cancel()
	if err := s.admit(ctx, info, conn.RemoteAddr()); err != nil {
		var d *denial
		if !errors.As(err, &d) {
			s.logger().Error("bastion: authentication failed", "err", err, "remote", conn.RemoteAddr().String())
			return nil, banner(errors.New("the bastion could not check your certificate; try again later"))
		}
		_ = s.auditLoginRefusal(ctx, info, conn.RemoteAddr(), d.reason)
		h.refuse(key)
		return nil, banner(err)
	}
	if info.glass != nil {
		if err := s.auditBreakGlass(ctx, info, conn.RemoteAddr()); err != nil {
			s.logger().Error("bastion: cannot audit a break-glass login; refused", "err", err, "remote", conn.RemoteAddr().String())
			return nil, banner(errors.New("the bastion could not write its audit log; try again later"))
		}
	}
	out := &ssh.Permissions{ExtraData: map[any]any{authKey{}: info}}
	if src, ok := info.cert.CriticalOptions[optSourceAddress]; ok {
		// Checked by admit already; x/crypto checks it again.
		out.CriticalOptions = map[string]string{optSourceAddress: src}
	}
	return out, nil
}

// admit checks a proven certificate against the clock, the store and the
// policy, and fills in info. Refusals are *denial errors.
func (s *Server) admit(ctx context.Context, info *authInfo, remote net.Addr) error {
	cert := info.cert
	login := info.login
	if info.host == "" {
		login = ""
	}
	if err := s.checkCert(cert, login, remote); err != nil {
		// Best effort, so that the refusal is audited under its owner.
		if identity, lerr := s.recordedIdentity(ctx, cert); lerr == nil {
			info.identity = identity
		}
		return err
	}
	identity, err := s.recordedIdentity(ctx, cert)
	if err != nil {
		return err
	}
	info.identity = identity
	if c := info.carrier; c != nil && identity != c.identity {
		// The carrier was authorised for its own identity only: its
		// tunnel is not a way in for another certificate holder.
		return deny("certificate serial %d is %s's, but the ProxyJump connection it came through is %s's (serial %d): log in through a jump connection of your own",
			cert.Serial, identity, c.identity, c.cert.Serial)
	}
	if reason, err := s.revoked(ctx, cert); err != nil {
		return err
	} else if reason != "" {
		return deny("%s", reason)
	}
	if err := s.resolve(info); err != nil {
		return err
	}
	if info.host == "" {
		return nil // a ProxyJump carrier: each tunnel is decided on its own
	}
	t, err := s.decide(info, remote)
	if err != nil {
		return err
	}
	info.terms = t
	return nil
}

// recordedIdentity returns the identity the store recorded for cert,
// which must be the very certificate the store holds under its serial.
func (s *Server) recordedIdentity(ctx context.Context, cert *ssh.Certificate) (string, error) {
	recs, err := s.Store.Certificates(ctx, store.CertificateFilter{Serial: cert.Serial, Limit: 2})
	if err != nil {
		return "", fmt.Errorf("look up certificate %d: %w", cert.Serial, err)
	}
	if len(recs) != 1 || recs[0].Type != store.CertTypeUser ||
		recs[0].AuthorizedKey != string(bytes.TrimSpace(ssh.MarshalAuthorizedKey(cert))) {
		return "", deny("certificate serial %d was not issued by this Sallyport", cert.Serial)
	}
	return recs[0].Identity, nil
}

// checkCert checks what the certificate itself says: validity window,
// principals (including login, unless it is ""), critical options and
// source address.
func (s *Server) checkCert(cert *ssh.Certificate, login string, remote net.Addr) error {
	now := s.now().Unix()
	if now < 0 || uint64(now) < cert.ValidAfter {
		return deny("certificate serial %d is not valid yet", cert.Serial)
	}
	if cert.ValidBefore != ssh.CertTimeInfinity && uint64(now) >= cert.ValidBefore {
		return deny("certificate serial %d has expired; sign in again with 'sallyport login'", cert.Serial)
	}
	if len(cert.ValidPrincipals) == 0 {
		return deny("certificate serial %d lists no principals", cert.Serial)
	}
	// A ProxyJump carrier's user name is whatever the client's jump
	// host spec says; the login is checked on the inner connection.
	if login != "" && !slices.Contains(cert.ValidPrincipals, login) {
		return deny("certificate serial %d is not valid for login %q (it allows %s)", cert.Serial, login, strings.Join(cert.ValidPrincipals, ", "))
	}
	for opt := range cert.CriticalOptions {
		if opt != optForceCommand && opt != optSourceAddress {
			return deny("certificate serial %d carries the unknown critical option %q", cert.Serial, opt)
		}
	}
	if src, ok := cert.CriticalOptions[optSourceAddress]; ok {
		addr := remoteAddr(remote)
		allowed := false
		for _, f := range strings.Split(src, ",") {
			if p, err := parsePrefix(f); err == nil && addr.IsValid() && p.Contains(addr) {
				allowed = true
				break
			}
		}
		if !allowed {
			return deny("certificate serial %d may not be used from %s", cert.Serial, addr)
		}
	}
	return nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func remoteAddr(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// revoked reports why cert is revoked, or "" if it is not.
func (s *Server) revoked(ctx context.Context, cert *ssh.Certificate) (string, error) {
	revs, err := s.Store.Revocations(ctx)
	if err != nil {
		return "", fmt.Errorf("list revocations: %w", err)
	}
	return newRevocationSet(revs).check(cert), nil
}

// revocationSet answers revocation questions for many certificates from
// one listing.
type revocationSet struct {
	serials map[uint64]string
	keys    map[string]string
}

func newRevocationSet(revs []store.Revocation) revocationSet {
	rs := revocationSet{serials: map[uint64]string{}, keys: map[string]string{}}
	for _, r := range revs {
		if r.Serial != 0 {
			rs.serials[r.Serial] = r.Reason
		}
		if r.Key != nil {
			rs.keys[ssh.FingerprintSHA256(r.Key)] = r.Reason
		}
	}
	return rs
}

func (rs revocationSet) check(cert *ssh.Certificate) string {
	if reason, ok := rs.serials[cert.Serial]; ok {
		return fmt.Sprintf("certificate serial %d has been revoked%s", cert.Serial, because(reason))
	}
	if reason, ok := rs.keys[ssh.FingerprintSHA256(cert.Key)]; ok {
		return fmt.Sprintf("the key of certificate serial %d has been revoked%s", cert.Serial, because(reason))
	}
	return ""
}

func because(reason string) string {
	if reason == "" {
		return ""
	}
	return fmt.Sprintf(" (%q)", reason)
}

// decide asks the current policy whether info's identity may log in as
// info.login on info.host from remote, and on what terms.
func (s *Server) decide(info *authInfo, remote net.Addr) (terms, error) {
	p := s.Policy()
	if p == nil {
		return terms{}, deny("no policy is loaded")
	}
	if info.glass != nil {
		return s.decideBreakGlass(p, info)
	}
	d := p.Grant(info.who).Allows(info.login, info.host)
	if !d.Allow {
		return terms{}, deny("%s@%s denied: %s", info.login, info.host, d.Reason)
	}
	if addr := remoteAddr(remote); !d.AllowsSource(addr) {
		return terms{}, deny("%s@%s denied: connections from %s are not allowed for it", info.login, info.host, addr)
	}
	t := terms{
		perms:        d.Permissions & certPermissions(info.cert),
		forceCommand: d.ForceCommand,
		recordInput:  d.RecordInput,
		address:      d.Address,
		roles:        d.Roles,
	}
	if fc := info.cert.CriticalOptions[optForceCommand]; fc != "" {
		if t.forceCommand != "" && t.forceCommand != fc {
			return terms{}, deny("%s@%s denied: the certificate and the policy force different commands", info.login, info.host)
		}
		t.forceCommand = fc
	}
	return t, nil
}

// decideTunnel decides whether the ProxyJump carrier authenticated as
// carrier may open a tunnel to host: its certificate must still be valid
// and a login decide allows on host, for the identity as the directory
// knows it now, must exist: one of the certificate's principals or, for a
// carrier that logged in with an older certificate of the same person
// (an agent offers its oldest first), any login the person is granted
// there, which the inner login then needs a newer certificate for. Only
// such a tunnel makes the bastion dial the target; the inner connection
// is then decided for its own login as usual. It returns the login that
// allowed the tunnel and whether it is one of the certificate's: only
// then may the target be dialled before the inner login succeeds (see
// tunnel.preconnect). Refusals are *denial errors.
func (s *Server) decideTunnel(carrier *authInfo, host string, remote net.Addr) (login string, byCert bool, err error) {
	info := *carrier
	info.host = host
	if err := s.checkCert(info.cert, "", remote); err != nil {
		return "", false, err
	}
	// Revoked since the carrier logged in: the inner login would be
	// refused too, but the target must not even be dialled.
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	why, err := s.revoked(ctx, info.cert)
	cancel()
	switch {
	case err != nil:
		s.logger().Error("bastion: ProxyJump tunnel", "err", err)
		return "", false, err
	case why != "":
		return "", false, deny("%s", why)
	}
	if err := s.resolve(&info); err != nil {
		return "", false, err
	}
	var first error
	for _, login := range info.cert.ValidPrincipals {
		info.login = login
		_, err := s.decide(&info, remote)
		if err == nil {
			return login, true, nil
		}
		if first == nil {
			first = err
		}
	}
	if p := s.Policy(); p != nil && info.glass == nil {
		for _, login := range p.Grant(info.who).Principals() {
			if slices.Contains(info.cert.ValidPrincipals, login) {
				continue
			}
			info.login = login
			if _, err := s.decide(&info, remote); err == nil {
				return login, false, nil
			}
		}
	}
	// The login asked for on the inner connection is not known yet: name
	// the certificate's logins, all of which were tried.
	logins, more := info.cert.ValidPrincipals, ""
	if len(logins) > 5 {
		logins, more = logins[:5], fmt.Sprintf(" and %d more", len(logins)-5)
	}
	return "", false, deny("ProxyJump to %s refused: none of the logins of certificate serial %d (%s%s), nor any other of its person's, is granted there (%v)",
		host, info.cert.Serial, strings.Join(logins, ", "), more, denialReason(first))
}

// denialReason is the reason of a refusal from admit, decide or
// decideTunnel, fit to show the user; "" for nil.
func denialReason(err error) string {
	var d *denial
	switch {
	case err == nil:
		return ""
	case errors.As(err, &d):
		return d.reason
	}
	return "the bastion could not decide this request"
}

// certPermissions reads the permit-* extensions of cert.
func certPermissions(cert *ssh.Certificate) policy.Permissions {
	var out policy.Permissions
	for bit := policy.Permissions(1); bit != 0 && bit <= policy.AllPermissions; bit <<= 1 {
		for ext := range bit.Extensions() {
			if _, ok := cert.Extensions[ext]; ok {
				out |= bit
			}
		}
	}
	return out
}

// errTooManyRefusals is returned by auditDeny for the refusals it does not
// audit, on a connection being closed for too many of them.
var errTooManyRefusals = errors.New("too many refused requests on the connection")

// spendRefusal charges one refusal to info's connection. The first one
// over the budget gets the reason to audit and close set: the caller
// audits it, then calls close, which ends the connection on another
// goroutine (callers may be in the middle of serving it). Past that, ok
// is false and nothing more is audited.
func (s *Server) spendRefusal(info *authInfo, remote net.Addr, reason string) (audited string, ok bool, close func()) {
	audited, ok, _, close = s.chargeRefusal(info, remote, reason)
	return audited, ok, close
}

// chargeRefusal is spendRefusal, also reporting whether this refusal is
// the one closing the connection.
func (s *Server) chargeRefusal(info *authInfo, remote net.Addr, reason string) (audited string, ok, closing bool, close func()) {
	c := info.conn
	if c == nil || c.refusals.Allow() {
		return reason, true, false, func() {}
	}
	if !c.overspent.CompareAndSwap(false, true) {
		return "", false, false, func() {}
	}
	s.logger().Info("bastion: closing a connection for too many refused requests", "identity", info.identity, "remote", remote)
	return fmt.Sprintf("connection closed: too many refused requests (the last: %s)", reason), true, true,
		func() { go c.close("too many refused requests") }
}

// auditDeny audits a refusal and charges it to the connection's refusal
// budget (maxRefusals, see spendRefusal): on a connection past it, the
// first refusal over is audited as the reason the connection is closed,
// and later ones are not audited.
func (s *Server) auditDeny(ctx context.Context, info *authInfo, remote net.Addr, reason string) error {
	reason, ok, closeConn := s.spendRefusal(info, remote, reason)
	if !ok {
		return errTooManyRefusals
	}
	defer closeConn()
	return s.auditDenial(ctx, info, remote, reason)
}

// auditLoginRefusal audits a refused login (or a connection refused right
// after it): charged to the connection's refusal budget like auditDeny,
// and, since a client can open connection after connection, also limited
// per proven key and per source across connections (loginKeyBudget,
// loginSourceBudget), the rest summed up in one event a minute.
func (s *Server) auditLoginRefusal(ctx context.Context, info *authInfo, remote net.Addr, reason string) error {
	reason, ok, closing, closeConn := s.chargeRefusal(info, remote, reason)
	if !ok {
		return errTooManyRefusals
	}
	defer closeConn()
	e := s.denyEvent(info, remote, reason)
	if closing {
		return s.audit(ctx, e)
	}
	quotas := []auditQuota{{"login-key:" + ssh.FingerprintSHA256(info.cert.Key), loginKeyBudget}}
	if src, ok := sourceOf(remote); ok {
		quotas = append(quotas, auditQuota{"login-source:" + src.String(), loginSourceBudget})
	}
	return s.audits.write(ctx, e, quotas...)
}

// auditDenial audits a refusal without charging it: for requests stock
// clients send on every session by configuration (ForwardAgent,
// ForwardX11), which a multiplexed connection repeats for each of its
// sessions. Callers audit those once per channel.
func (s *Server) auditDenial(ctx context.Context, info *authInfo, remote net.Addr, reason string) error {
	return s.audit(ctx, s.denyEvent(info, remote, reason))
}

// denyEvent is the audit event of a refusal of info's request.
func (s *Server) denyEvent(info *authInfo, remote net.Addr, reason string) audit.Event {
	target := info.login
	if info.host != "" {
		target += "@" + info.host
	}
	f := info.fields(remote)
	if info.isBreakGlass() {
		f["breakglass"] = "true"
		s.logger().Warn("bastion: break-glass certificate refused", "identity", info.identity, "target", target, "reason", reason)
	}
	return audit.Event{
		Type:    audit.TypeDeny,
		Actor:   actor(info),
		Subject: target,
		Outcome: audit.OutcomeDenied,
		Reason:  reason,
		Fields:  f,
	}
}

func actor(info *authInfo) string {
	if info.identity != "" {
		return info.identity
	}
	return "key:" + ssh.FingerprintSHA256(info.cert.Key)
}

func certFields(cert *ssh.Certificate, remote net.Addr) map[string]string {
	f := map[string]string{
		"serial":          strconv.FormatUint(cert.Serial, 10),
		"key_id":          cert.KeyId,
		"key_fingerprint": ssh.FingerprintSHA256(cert.Key),
	}
	if remote != nil {
		f["remote"] = remote.String()
	}
	return f
}
