package web

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/policy"
	"github.com/sallyport/sallyport/standing"
	"github.com/sallyport/sallyport/store"
)

// Access is what a grant lets an identity reach, as shown to people and
// returned with a certificate.
type Access struct {
	// Hosts lists each reachable host with the principals allowed there,
	// in policy order. Principals with different terms on the same host
	// (say root may forward ports, deploy may not) get a row each.
	Hosts []HostAccess `json:"hosts"`
	// Principals are the union over Hosts: the certificate's principals.
	Principals []string `json:"principals"`
	// TTL is the certificate lifetime the grant allows.
	TTL time.Duration `json:"-"`
	// Roles are the roles that apply.
	Roles []string `json:"roles"`
}

// HostAccess is one host and what may be done there.
type HostAccess struct {
	Host        string   `json:"host"`
	Principals  []string `json:"principals"`
	Permissions []string `json:"permissions"`
	// ForceCommand is set when the host runs only this command.
	ForceCommand string `json:"force_command,omitempty"`
}

// terms are the certificate fields derived from a grant; see the package
// documentation for why permissions are a union.
type terms struct {
	access  Access
	perms   policy.Permissions
	force   string
	sources []netip.Prefix
	// caPerms is perms for ca; accessJSON is access as JSON. Both are
	// computed once per cached grant and only read after.
	caPerms    []ca.Permission
	accessJSON []byte
}

// termsOf derives certificate terms from g. It returns false when the grant
// allows no principal@host at all.
func termsOf(g *policy.Grant, maxTTL time.Duration) (terms, bool) {
	var t terms
	principals := map[string]bool{}
	// Rows are keyed by host and terms, so that each principal is shown
	// with its own permissions and forced command.
	type rowKey struct {
		host  string
		perms policy.Permissions
		force string
	}
	byHost := map[rowKey]*HostAccess{}
	var hostOrder []rowKey
	forceSame, first := true, true
	restrictedAll := true
	var sources []netip.Prefix
	g.Each(func(d policy.Decision) bool {
		if !d.Allow {
			return true
		}
		principals[d.Principal] = true
		k := rowKey{d.Host, d.Permissions, d.ForceCommand}
		h := byHost[k]
		if h == nil {
			h = &HostAccess{Host: d.Host, Permissions: d.Permissions.Names(), ForceCommand: d.ForceCommand}
			byHost[k] = h
			hostOrder = append(hostOrder, k)
		}
		h.Principals = append(h.Principals, d.Principal)
		t.perms |= d.Permissions
		if first {
			t.force, first = d.ForceCommand, false
		} else if d.ForceCommand != t.force {
			forceSame = false
		}
		if d.SourceAddresses == nil {
			restrictedAll = false
		} else {
			sources = append(sources, d.SourceAddresses...)
		}
		return true
	})
	if len(principals) == 0 {
		return t, false
	}
	if !forceSame {
		t.force = ""
	}
	if restrictedAll {
		t.sources = mergePrefixes(sources)
	}
	// Hosts in the order they first appear, each host's rows together.
	hostRank := map[string]int{}
	for _, k := range hostOrder {
		if _, ok := hostRank[k.host]; !ok {
			hostRank[k.host] = len(hostRank)
		}
	}
	sort.SliceStable(hostOrder, func(i, j int) bool { return hostRank[hostOrder[i].host] < hostRank[hostOrder[j].host] })
	for _, k := range hostOrder {
		t.access.Hosts = append(t.access.Hosts, *byHost[k])
	}
	for p := range principals {
		t.access.Principals = append(t.access.Principals, p)
	}
	sort.Strings(t.access.Principals)
	for _, m := range g.Matches() {
		t.access.Roles = append(t.access.Roles, m.Name)
	}
	t.access.TTL = min(g.TTL(), maxTTL)
	t.caPerms = caPermissions(t.perms)
	t.accessJSON, _ = json.Marshal(t.access) // plain strings and slices: cannot fail
	return t, true
}

func mergePrefixes(ps []netip.Prefix) []netip.Prefix {
	seen := map[netip.Prefix]bool{}
	var out []netip.Prefix
	for _, p := range ps {
		p = p.Masked()
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return strings.Compare(a.String(), b.String()) })
	return out
}

func caPermissions(p policy.Permissions) []ca.Permission {
	var out []ca.Permission
	for _, n := range p.Names() {
		out = append(out, ca.Permission(n))
	}
	return out
}

// termsCache remembers the terms computed for an identity under one policy
// (evaluation is a pure function of both), so repeated requests skip the
// grant evaluation. A policy change empties it.
type termsCache struct {
	mu     sync.Mutex
	policy *policy.Policy
	m      map[string]termsEntry
}

type termsEntry struct {
	t  terms
	ok bool
}

const maxCachedTerms = 10_000

func (c *termsCache) get(p *policy.Policy, id policy.Identity, maxTTL time.Duration) (terms, bool) {
	var key string
	if id.CI != nil {
		key = fmt.Sprintf("ci\x00%+v\x00%d", *id.CI, maxTTL)
	} else {
		// Built by hand: this runs for every certificate.
		b := make([]byte, 0, 64)
		b = strconv.AppendInt(b, id.ID, 10)
		b = append(b, 0)
		b = append(b, id.Login...)
		b = append(b, 0)
		for i, team := range id.Teams {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, team...)
		}
		b = append(b, 0)
		b = strconv.AppendInt(b, int64(maxTTL), 10)
		key = string(b)
	}
	c.mu.Lock()
	if c.policy != p || len(c.m) >= maxCachedTerms {
		c.policy, c.m = p, map[string]termsEntry{}
	}
	e, hit := c.m[key]
	c.mu.Unlock()
	if hit {
		return e.t, e.ok
	}
	t, ok := termsOf(p.Grant(id), maxTTL)
	c.mu.Lock()
	if c.policy == p {
		c.m[key] = termsEntry{t, ok}
	}
	c.mu.Unlock()
	return t, ok
}

// CertificateResponse is the answer of the issuance endpoints.
type CertificateResponse struct {
	// Certificate in authorized_keys format, for the KEY-cert.pub file.
	Certificate string    `json:"certificate"`
	Serial      uint64    `json:"serial"`
	KeyID       string    `json:"key_id"`
	ValidAfter  time.Time `json:"valid_after"`
	ValidBefore time.Time `json:"valid_before"`
	Access

	accessJSON []byte // Access as JSON, when known
}

// certificateHead is the part of a CertificateResponse before its Access.
type certificateHead struct {
	Certificate string    `json:"certificate"`
	Serial      uint64    `json:"serial"`
	KeyID       string    `json:"key_id"`
	ValidAfter  time.Time `json:"valid_after"`
	ValidBefore time.Time `json:"valid_before"`
}

// writeCertificate writes resp as writeJSON would, reusing the JSON of its
// Access that was encoded once for its grant.
func writeCertificate(w http.ResponseWriter, resp *CertificateResponse) {
	if len(resp.accessJSON) < 2 {
		writeJSON(w, http.StatusOK, resp)
		return
	}
	b, err := json.Marshal(certificateHead{resp.Certificate, resp.Serial, resp.KeyID, resp.ValidAfter, resp.ValidBefore})
	if err != nil {
		writeJSON(w, http.StatusOK, resp)
		return
	}
	// {"certificate":...} and {"hosts":...} become {"certificate":...,"hosts":...}.
	b = b[:len(b)-1]
	if len(resp.accessJSON) > 2 {
		b = append(b, ',')
	}
	b = append(b, resp.accessJSON[1:]...)
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(b) //nolint:errcheck // the client went away
}

// refusal is a certificate request turned down, with the HTTP status, the
// metric label and the reason shown to the requester.
type refusal struct {
	status int
	label  string
	reason string
}

func (e *refusal) Error() string { return e.reason }

// issue evaluates the policy for who and signs pub. Every outcome is
// audited; on success the certificate was recorded before this returns.
func (s *Server) issue(ctx context.Context, who signedIn, pub ssh.PublicKey, kind string) (*CertificateResponse, error) {
	start := s.now()
	id := who.identity
	act := who.actor()
	refuse := func(status int, label, reason string) error {
		s.metrics.refuse(label)
		e := audit.Event{Type: audit.TypeRefuse, Actor: act, Subject: who.display(), Outcome: audit.OutcomeDenied, Reason: reason,
			Fields: map[string]string{"kind": kind}}
		if pub != nil {
			e.Fields["key_fingerprint"] = ssh.FingerprintSHA256(pub)
		}
		if err := s.o.Audit.Audit(ctx, e); err != nil {
			s.log.Error("audit refusal", "err", err)
			return &refusal{http.StatusInternalServerError, reasonError, "the refusal could not be recorded"}
		}
		return &refusal{status, label, reason}
	}
	if id.CI == nil && id.ID != 0 && s.o.Directory != nil {
		m, err := s.o.Directory.Lookup(id.ID)
		if err == nil {
			if !m.Member {
				return nil, refuse(http.StatusForbidden, reasonNotMember, fmt.Sprintf("%s is no longer a member of the organisation", id.Login))
			}
			id.Teams = m.Teams
			if m.Login != "" {
				id.Login = m.Login
			}
		}
	}
	// The policy decides for the identity as it stands: not at all when
	// suspended, and without its login when that is pinned to another
	// GitHub user. The key ID still names the login GitHub reports.
	st, err := standing.Check(ctx, s.o.Standing, act, id, standing.SourceIssuance)
	if err != nil {
		if errors.Is(err, store.ErrSuspended) {
			return nil, refuse(http.StatusForbidden, reasonSuspended, suspendedReason(err))
		}
		s.log.Error("issue certificate: standing", "identity", act, "err", err)
		s.metrics.refuse(reasonError)
		return nil, fmt.Errorf("issue certificate: %w", err)
	}
	p := s.o.Policy.Policy()
	maxTTL := p.Defaults.MaxTTL
	if id.CI != nil {
		maxTTL = min(maxTTL, s.o.MaxCITTL)
	}
	t, ok := s.terms.get(p, st.Identity, maxTTL)
	if !ok {
		whom := who.display()
		if id.CI != nil {
			whom = id.CI.String()
		}
		why := noGrantReason(p, st.Identity)
		if st.Unpinned != "" {
			why = st.Unpinned + " (and " + why + ")"
		}
		return nil, refuse(http.StatusForbidden, reasonNoGrant, fmt.Sprintf("the policy grants %s nothing: %s", whom, why))
	}
	if st.Unpinned != "" {
		s.auditUnpinned(ctx, who, id.Login, st.Unpinned, "issuance")
	}
	keyID, identity := keyIDOf(who, id), act
	cert, err := s.o.Issuer.IssueUser(ctx, ca.UserRequest{
		PublicKey:       pub,
		Principals:      t.access.Principals,
		TTL:             t.access.TTL,
		MaxTTL:          maxTTL,
		Permissions:     t.caPerms,
		SourceAddresses: t.sources,
		ForceCommand:    t.force,
		KeyID:           keyID,
		Identity:        identity,
	})
	if err != nil {
		switch {
		case errors.Is(err, store.ErrSuspended):
			// Suspended between the check above and the record.
			return nil, refuse(http.StatusForbidden, reasonSuspended, suspendedReason(err))
		case errors.Is(err, store.ErrRevoked):
			return nil, refuse(http.StatusForbidden, reasonRevoked, "this key is revoked; create a new key")
		case isKeyError(err):
			return nil, refuse(http.StatusBadRequest, reasonBadKey, strings.TrimPrefix(err.Error(), "ca: user certificate: "))
		}
		s.log.Error("issue certificate", "identity", identity, "err", err)
		s.metrics.refuse(reasonError)
		return nil, fmt.Errorf("issue certificate: %w", err)
	}
	s.metrics.issue(kind, s.now().Sub(start))
	return &CertificateResponse{
		// What ssh.MarshalAuthorizedKey writes, without its newline and
		// with fewer copies.
		Certificate: cert.Type() + " " + base64.StdEncoding.EncodeToString(cert.Marshal()),
		Serial:      cert.Serial,
		KeyID:       cert.KeyId,
		ValidAfter:  time.Unix(int64(cert.ValidAfter), 0).UTC(),
		ValidBefore: time.Unix(int64(cert.ValidBefore), 0).UTC(),
		Access:      t.access,
		accessJSON:  t.accessJSON,
	}, nil
}

func isKeyError(err error) bool {
	for _, k := range []error{ca.ErrKeyIsCertificate, ca.ErrKeyIsCA, ca.ErrKeyDSA, ca.ErrKeyRSATooShort, ca.ErrKeyUnsupported} {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}

func noGrantReason(p *policy.Policy, id policy.Identity) string {
	g := p.Grant(id)
	if len(g.Matches()) == 0 {
		if id.CI != nil {
			return "no role names this repository, ref and environment"
		}
		if len(id.Teams) == 0 {
			return "no role names you, and you are in no team of the organisation"
		}
		return fmt.Sprintf("no role names you or your teams (%s)", strings.Join(id.Teams, ", "))
	}
	return "the roles that apply grant no principal on any host"
}

// keyIDOf names the person in the certificate: login and numeric ID for
// GitHub users ("alice github:1234"), user name, provider and subject for
// OIDC, repository and ref for CI. id is who's identity as of now (a
// renamed login shows its new name). Characters a key ID may not carry are
// replaced.
func keyIDOf(who signedIn, id policy.Identity) string {
	var s string
	switch {
	case id.CI != nil:
		s = "ci " + id.CI.Repository + " " + id.CI.Ref
		if id.CI.Environment != "" {
			s += " env=" + id.CI.Environment
		}
	case who.oidcKey != "":
		_, subject, _ := strings.Cut(who.oidcKey, "#")
		s = strings.TrimSpace(who.oidcUser + " " + who.provider + ":" + subject)
	default:
		s = id.Login + " github:" + strconv.FormatInt(id.ID, 10)
	}
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(" ._:@+=/-", c) >= 0) {
			b[i] = '_'
		}
	}
	if len(b) > ca.MaxKeyIDLen {
		b = b[:ca.MaxKeyIDLen]
	}
	return strings.TrimSpace(string(b))
}

// ciIdentity is the store identity of a CI workload: the canonical,
// round-trippable encoding the bastion decodes to decide by policy.
func ciIdentity(c *policy.CIClaims) string { return c.IdentityString() }

// CertificateRequest is the body of the issuance endpoints.
type CertificateRequest struct {
	// PublicKey in authorized_keys format ("ssh-ed25519 AAAA... comment").
	PublicKey string `json:"public_key"`
}

// apiCertificate issues a certificate to a signed-in person: a CLI bearer
// token, or a browser session with its CSRF token in X-CSRF-Token.
func (s *Server) apiCertificate(w http.ResponseWriter, r *http.Request) {
	var who signedIn
	if auth := r.Header.Get("Authorization"); auth != "" {
		token, ok := strings.CutPrefix(auth, "Bearer ")
		sess, found := s.sessions.lookup(strings.TrimSpace(token), "cli")
		if !ok || !found {
			s.metrics.refuse(reasonUnauthenticated)
			writeError(w, http.StatusUnauthorized, "unauthenticated", "the token is unknown or expired; run sallyport login again")
			return
		}
		who = sess.user
	} else {
		sess, _, ok := s.browserSession(r)
		if !ok {
			s.metrics.refuse(reasonUnauthenticated)
			writeError(w, http.StatusUnauthorized, "unauthenticated", "sign in first")
			return
		}
		if !constantEqual(r.Header.Get("X-CSRF-Token"), sess.csrf) {
			writeError(w, http.StatusForbidden, "csrf", "missing or wrong X-CSRF-Token")
			return
		}
		who = sess.user
	}
	s.serveIssue(w, r, who, "user")
}

// apiCICertificate issues a certificate to a GitHub Actions job presenting
// its OIDC token as the bearer token.
func (s *Server) apiCICertificate(w http.ResponseWriter, r *http.Request) {
	if s.o.CI == nil {
		writeError(w, http.StatusNotFound, "not_configured", "GitHub Actions certificates are not configured on this server")
		return
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || strings.TrimSpace(token) == "" {
		s.metrics.refuse(reasonUnauthenticated)
		writeError(w, http.StatusUnauthorized, "unauthenticated", "send the Actions OIDC token as Authorization: Bearer")
		return
	}
	claims, err := s.o.CI.Verify(r.Context(), strings.TrimSpace(token))
	if err != nil {
		s.metrics.refuse(reasonBadToken)
		e := audit.Event{Type: audit.TypeRefuse, Actor: "anonymous@" + s.client(r).String(), Outcome: audit.OutcomeDenied,
			Reason: truncate(err.Error(), 500), Fields: map[string]string{"kind": "ci"}}
		if aerr := s.o.Audit.Audit(r.Context(), e); aerr != nil {
			s.log.Error("audit refusal", "err", aerr)
		}
		writeError(w, http.StatusUnauthorized, "invalid_token", "the token was refused: "+truncate(err.Error(), 300))
		return
	}
	ci := claims.CI()
	if err := ci.Validate(); err != nil {
		// The bastion would refuse such an identity; say so now.
		s.metrics.refuse(reasonBadToken)
		writeError(w, http.StatusUnauthorized, "invalid_token", "the token's claims cannot name a CI workload: "+truncate(err.Error(), 300))
		return
	}
	s.serveIssue(w, r, signedIn{identity: policy.Identity{CI: &ci}}, "ci")
}

func (s *Server) serveIssue(w http.ResponseWriter, r *http.Request, who signedIn, kind string) {
	if !s.issueRL.allow(s.client(r)) {
		s.metrics.refuse(reasonRateLimited)
		writeError(w, http.StatusTooManyRequests, "rate_limited", "too many certificate requests; wait a minute")
		return
	}
	var req CertificateRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	pub, err := ca.ParsePublicKey([]byte(req.PublicKey))
	if err != nil {
		s.metrics.refuse(reasonBadKey)
		writeError(w, http.StatusBadRequest, "bad_key", err.Error())
		return
	}
	resp, err := s.issue(r.Context(), who, pub, kind)
	var ref *refusal
	switch {
	case errors.As(err, &ref):
		writeError(w, ref.status, ref.label, ref.reason)
	case err != nil:
		writeError(w, http.StatusInternalServerError, "error", "the certificate could not be issued; try again")
	default:
		writeCertificate(w, resp)
	}
}

// certificateForm is the page's "paste a key" form: the answer is the
// certificate as a file download.
func (s *Server) certificateForm(w http.ResponseWriter, r *http.Request) {
	sess, _, ok := s.browserSession(r)
	if !ok {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if !constantEqual(r.PostFormValue("csrf"), sess.csrf) {
		s.pages.error(w, http.StatusForbidden, "Refused", "The form was not sent from this site's page. Reload the page and try again.")
		return
	}
	if !s.issueRL.allow(s.client(r)) {
		s.metrics.refuse(reasonRateLimited)
		s.pages.error(w, http.StatusTooManyRequests, "Too many requests", "Too many certificate requests from your address. Wait a minute.")
		return
	}
	who := sess.user
	pub, err := ca.ParsePublicKey([]byte(r.PostFormValue("public_key")))
	if err != nil {
		s.metrics.refuse(reasonBadKey)
		s.renderHome(w, r, sess, http.StatusBadRequest, "That is not a public key Sallyport accepts: "+err.Error())
		return
	}
	resp, err := s.issue(r.Context(), who, pub, "user")
	var ref *refusal
	switch {
	case errors.As(err, &ref):
		s.renderHome(w, r, sess, ref.status, ref.reason)
		return
	case err != nil:
		s.pages.error(w, http.StatusInternalServerError, "Not issued", "The certificate could not be issued. Try again.")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="id-cert.pub"`)
	fmt.Fprintln(w, resp.Certificate)
}

// SSHConfig is the answer of /api/v1/ssh-config: what a user pastes into
// ~/.ssh/config and ~/.ssh/known_hosts.
type SSHConfig struct {
	Bastion    string   `json:"bastion"`
	Hosts      []string `json:"hosts"`
	Config     string   `json:"ssh_config"`
	KnownHosts string   `json:"known_hosts"`
}

func (s *Server) sshConfig(identityFile string) SSHConfig {
	p := s.o.Policy.Policy()
	var hosts []string
	for _, h := range p.Hosts {
		hosts = append(hosts, h.Name)
	}
	host, port, err := net.SplitHostPort(s.o.Bastion)
	if err != nil {
		host, port = s.o.Bastion, "22"
	}
	if !identityFileRE.MatchString(identityFile) {
		identityFile = "~/.ssh/sallyport"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Sallyport: every host of the policy through the bastion\n")
	fmt.Fprintf(&b, "Host %s\n    ProxyJump %s\n    IdentityFile %s\n    CertificateFile %s-cert.pub\n", strings.Join(hosts, " "), s.o.Bastion, identityFile, identityFile)
	fmt.Fprintf(&b, "Host %s\n    Port %s\n    IdentityFile %s\n    CertificateFile %s-cert.pub\n", host, port, identityFile, identityFile)
	c := SSHConfig{Bastion: s.o.Bastion, Hosts: hosts, Config: b.String()}
	if s.o.HostCA != nil {
		names := append([]string{host}, hosts...)
		if port != "22" {
			names[0] = "[" + host + "]:" + port
		}
		c.KnownHosts = "@cert-authority " + strings.Join(names, ",") + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.o.HostCA))) + " sallyport-host-ca\n"
	}
	return c
}

func (s *Server) apiSSHConfig(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.sshConfig(r.URL.Query().Get("identity_file")))
}
