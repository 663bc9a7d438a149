package bastion

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/policy"
	"github.com/sallyport/sallyport/standing"
	"github.com/sallyport/sallyport/store"
	"github.com/sallyport/sallyport/trust"
)

// Prefixes of the store identities the bastion accepts; see the package
// documentation.
const (
	githubPrefix     = "github:"
	breakGlassPrefix = "breakglass:"
)

// breakGlassBackdate is how far before its issuance a break-glass
// certificate may start: the CA backdates user certificates for clock
// skew (five minutes by default).
const breakGlassBackdate = 15 * time.Minute

// breakGlass is what a break-glass certificate allows: its one principal
// on the one host its key ID names.
type breakGlass struct {
	id        string // the request ID, 32 hexadecimal digits
	host      string
	principal string
	by        string // "github:ID" of the admin who signed first
}

// resolve turns the store's identity of info's certificate into the
// identity to decide for, as of now, and sets info.who and info.glass.
// It runs at login, for every new channel and in every re-check of live
// sessions, so that a suspension refuses new logins and ends live
// sessions at the next check.
//
//   - "github:ID": the GitHub user as the directory knows them now,
//     refused while suspended; a login pinned to another GitHub user is
//     left out, so that the policy's `users:` entries naming it do not
//     apply (package standing).
//   - "github-actions:...": the CI claims it encodes
//     (policy.ParseCIIdentity), refused while its repository's
//     workloads are suspended; no directory is asked, CI has no teams.
//   - "breakglass:ID": the certificate's own key ID names its host; no
//     directory is asked, GitHub is assumed down. Refused once the admin
//     who signed its request is suspended.
//
// Anything else, including CI identities in the old colon-separated form,
// is refused.
func (s *Server) resolve(info *authInfo) error {
	identity := info.identity
	info.who, info.glass = policy.Identity{}, nil
	var who policy.Identity
	switch {
	case strings.HasPrefix(identity, githubPrefix):
		id, err := strconv.ParseInt(identity[len(githubPrefix):], 10, 64)
		if err != nil || id <= 0 {
			return deny("the certificate's identity %q is not a GitHub user ID", identity)
		}
		var ok bool
		if who, ok = s.Directory.Identity(id); !ok {
			return deny("GitHub user %d is not a current member of the organisation", id)
		}
		who.ID = id
		who.CI = nil
	case strings.HasPrefix(identity, policy.CIIdentityPrefix):
		claims, err := policy.ParseCIIdentity(identity)
		if err != nil {
			return deny("certificate serial %d has a CI identity in an old or invalid form (%v); request a new CI certificate", info.cert.Serial, err)
		}
		who = policy.Identity{CI: &claims}
	case strings.HasPrefix(identity, breakGlassPrefix):
		g, err := parseBreakGlass(identity, info.cert)
		if err != nil {
			return err
		}
		info.glass = g
		// An admin suspended since signing loses what they signed.
		if _, err := s.standing(g.by, policy.Identity{}); err != nil {
			var u *unavailable
			if errors.As(err, &u) {
				return err
			}
			return deny("this break-glass certificate's request was signed by %s, who is suspended: %v", g.by, err)
		}
		return nil
	default:
		return deny("certificates of %q identities are not accepted by the bastion", identityKind(identity))
	}
	r, err := s.standing(identity, who)
	if err != nil {
		// Without the store, who as the directory or the CI claims
		// describe them is the most they could be granted (see
		// reauthorise).
		info.who = who
		return err
	}
	if r.Unpinned != "" {
		if err := s.unpinnedDenies(info, who, r); err != nil {
			return err
		}
		// Said once per connection or tunnel (whose terms are not
		// decided yet), not at every re-check of a live one.
		level := slog.LevelDebug
		if info.terms.address == "" {
			level = slog.LevelWarn
		}
		s.logger().Log(context.Background(), level, "bastion: login pinned to another GitHub user; deciding without it",
			"identity", identity, "target", info.login+"@"+info.host, "reason", r.Unpinned)
	}
	info.who = r.Identity
	return nil
}

// unavailable is a refusal because the store could not be read: a login or
// a new channel is refused, but a live connection is not ended for it
// (see reauthorise), as for a revocation list that cannot be read.
type unavailable struct{ denial }

// standing checks who, of the store's identity, with standing.Check: a
// suspended identity is denied with who suspended it, when and why. A
// store that cannot be read denies with an *unavailable.
func (s *Server) standing(identity string, who policy.Identity) (standing.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	r, err := standing.Check(ctx, s.Store, identity, who, standing.SourceBastion)
	var se *store.SuspendedError
	switch {
	case errors.As(err, &se):
		return standing.Result{}, deny("%s", se.Error())
	case err != nil:
		s.logger().Error("bastion: cannot read the standing of an identity; refused", "identity", identity, "err", err)
		return standing.Result{}, &unavailable{denial{fmt.Sprintf("the bastion could not check whether %s is suspended; try again later", identity)}}
	}
	return r, nil
}

// unpinnedDenies explains a refusal that only the pin causes: who
// without their login (r.Identity) is granted none of the certificate's
// principals on info.host, so that the request is refused whatever login
// it is for, while who with it would be granted the login asked for
// (info.login, or for a ProxyJump tunnel, whose inner login is not known
// yet, any principal). It never refuses what decide or decideTunnel would
// allow; it only gives their refusal its plain reason. It returns nil for
// a ProxyJump carrier, which names no host.
func (s *Server) unpinnedDenies(info *authInfo, who policy.Identity, r standing.Result) error {
	p := s.Policy()
	if p == nil || info.host == "" {
		return nil
	}
	narrow := p.Grant(r.Identity)
	for _, l := range info.cert.ValidPrincipals {
		if narrow.Allows(l, info.host).Allow {
			return nil
		}
	}
	logins := info.cert.ValidPrincipals
	if slices.Contains(logins, info.login) {
		logins = []string{info.login}
	}
	full := p.Grant(who)
	for _, l := range logins {
		if full.Allows(l, info.host).Allow {
			return deny("%s@%s denied: %s", l, info.host, r.Unpinned)
		}
	}
	return nil
}

func identityKind(identity string) string {
	k, _, _ := strings.Cut(identity, ":")
	if len(k) > 16 {
		k = k[:16]
	}
	return k
}

// parseBreakGlass checks that cert has exactly the shape trust.BreakGlass
// issues for store identity "breakglass:ID": key ID
// "breakglass:ID host=HOST by=github:N serial=SERIAL", one principal,
// permit-pty at most, and a validity window of at most
// trust.MaxBreakGlassTTL (plus backdating). Anything else is refused.
func parseBreakGlass(identity string, cert *ssh.Certificate) (*breakGlass, error) {
	bad := func(why string) error {
		return deny("break-glass certificate serial %d refused: %s", cert.Serial, why)
	}
	id := identity[len(breakGlassPrefix):]
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		return nil, bad("its request ID is not 32 lower-case hexadecimal digits")
	}
	f := strings.Split(cert.KeyId, " ")
	if len(f) != 4 || f[0] != identity {
		return nil, bad("its key ID is not \"breakglass:ID host=HOST by=github:N serial=S\" for this request")
	}
	host, ok := strings.CutPrefix(f[1], "host=")
	if !ok || ca.ValidateHostname(host) != nil {
		return nil, bad("its key ID names no valid host")
	}
	by, ok := strings.CutPrefix(f[2], "by=github:")
	if n, err := strconv.ParseInt(by, 10, 64); !ok || err != nil || n <= 0 || strconv.FormatInt(n, 10) != by {
		return nil, bad("its key ID names no signing admin")
	}
	if f[3] != "serial="+strconv.FormatUint(cert.Serial, 10) {
		return nil, bad("its key ID names another serial")
	}
	if len(cert.ValidPrincipals) != 1 {
		return nil, bad("it must list exactly one principal")
	}
	for ext := range cert.Extensions {
		if ext != "permit-pty" {
			return nil, bad(fmt.Sprintf("it carries %q; break-glass allows a terminal only", ext))
		}
	}
	if cert.ValidBefore == ssh.CertTimeInfinity || cert.ValidBefore < cert.ValidAfter ||
		cert.ValidBefore-cert.ValidAfter > uint64((trust.MaxBreakGlassTTL+breakGlassBackdate)/time.Second) {
		return nil, bad(fmt.Sprintf("it is valid for longer than %s", trust.MaxBreakGlassTTL))
	}
	return &breakGlass{id: id, host: host, principal: cert.ValidPrincipals[0], by: "github:" + by}, nil
}

// decideBreakGlass decides a break-glass certificate without asking the
// policy's roles: its one principal on its one host, which must exist in
// p (p gives the address), with a terminal only, input recorded. It is
// also called for live sessions, which end when the certificate expires.
func (s *Server) decideBreakGlass(p *policy.Policy, info *authInfo) (terms, error) {
	g := info.glass
	if info.login != g.principal || info.host != g.host {
		return terms{}, deny("%s@%s denied: break-glass certificate serial %d is valid only for %s@%s", info.login, info.host, info.cert.Serial, g.principal, g.host)
	}
	h, ok := p.Host(g.host)
	if !ok {
		return terms{}, deny("%s@%s denied: no host named %q in the policy", info.login, info.host, g.host)
	}
	if now := s.now().Unix(); now < 0 || uint64(now) >= info.cert.ValidBefore {
		return terms{}, deny("break-glass certificate serial %d has expired", info.cert.Serial)
	}
	return terms{
		perms:        policy.PTY & certPermissions(info.cert),
		forceCommand: info.cert.CriticalOptions[optForceCommand],
		recordInput:  true,
		address:      h.Address,
		roles:        []string{"breakglass"},
	}, nil
}

// auditBreakGlass records an accepted break-glass login, durably, and
// logs it as a warning.
func (s *Server) auditBreakGlass(ctx context.Context, info *authInfo, remote net.Addr) error {
	g := info.glass
	target := info.login
	if info.host != "" {
		target += "@" + info.host
	}
	s.logger().Warn("bastion: BREAK-GLASS login", "identity", info.identity, "target", target,
		"host", g.host, "signed_by", g.by, "serial", info.cert.Serial, "remote", remote.String())
	f := certFields(info.cert, remote)
	f["breakglass"] = "true"
	f["request_id"] = g.id
	f["signed_by"] = g.by
	f["host"] = g.host
	return s.audit(ctx, audit.Event{
		Type:    audit.TypeLogin,
		Actor:   info.identity,
		Subject: target,
		Outcome: audit.OutcomeOK,
		Reason:  "break-glass certificate accepted without GitHub",
		Fields:  f,
	})
}

// isBreakGlass reports whether info is about a break-glass certificate,
// also before its shape was checked.
func (info *authInfo) isBreakGlass() bool {
	return info.glass != nil || strings.HasPrefix(info.identity, breakGlassPrefix)
}

// sessionKeyID is the key ID of the session certificate minted for info
// on connection conn: who in words, then " session=CONN". Characters a key
// ID may not carry (CI identities are URL-encoded) are replaced.
func sessionKeyID(info *authInfo, conn string) string {
	var who string
	switch {
	case info.who.CI != nil:
		c := info.who.CI
		who = "ci " + c.Repository + " " + c.Ref
		if c.Environment != "" {
			who += " env=" + c.Environment
		}
	case info.glass != nil:
		who = info.identity + " by=" + info.glass.by
	default:
		who = keyIDUser(info) + " " + info.identity
	}
	suffix := " session=" + conn
	b := []byte(who)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(" ._:@+=/-", c) >= 0) {
			b[i] = '_'
		}
	}
	if n := ca.MaxKeyIDLen - len(suffix); len(b) > n {
		b = b[:n]
	}
	return strings.TrimSpace(string(b)) + suffix
}
