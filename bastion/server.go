package bastion

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/cpu"
	"golang.org/x/time/rate"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/policy"
	"github.com/sallyport/sallyport/standing"
	"github.com/sallyport/sallyport/store"
)

// ErrServerClosed is returned by Serve and ListenAndServe after Shutdown or
// Close.
var ErrServerClosed = errors.New("bastion: server closed")

// Directory knows the latest organisation membership of GitHub users.
// The identity layer implements it; when membership changes it tells the
// server with Server.Reevaluate.
type Directory interface {
	// Identity returns the identity of the GitHub user with this numeric
	// ID as last known: login and teams in the policy's organisation.
	// false means the user is unknown or no longer a member.
	Identity(githubID int64) (policy.Identity, bool)
}

// Store is the part of the durable store the bastion uses. store.SQLite
// implements it.
type Store interface {
	// Certificates finds the record of a presented certificate by serial.
	Certificates(ctx context.Context, f store.CertificateFilter) ([]store.Certificate, error)
	// Revocations lists revoked serials and keys.
	Revocations(ctx context.Context) ([]store.Revocation, error)
	// Audit records an event durably before the bastion acts on it.
	Audit(ctx context.Context, e audit.Event) error
	// Standing says whether an identity is suspended and to whom its
	// login is pinned (standing.Check).
	standing.Store
}

// Defaults for the Server's limits and timeouts.
const (
	DefaultHandshakeTimeout  = 30 * time.Second
	DefaultIdleTimeout       = 30 * time.Minute
	DefaultDialTimeout       = 10 * time.Second
	DefaultKeepAliveInterval = 30 * time.Second
	DefaultKeepAliveCountMax = 3
	DefaultMaxConnections    = 1000
	// DefaultMaxStartups and DefaultMaxStartupsPerSource bound
	// connections that have not finished authentication: few enough that
	// idle ones cannot crowd out users, enough for bursts of logins.
	DefaultMaxStartups          = 128
	DefaultMaxStartupsPerSource = 32
	DefaultMaxChannelsPerConn   = 32
	DefaultMaxSessionsPerUser   = 64
	DefaultMaxForwardsPerUser   = 64
	// DefaultMaxConnectionsPerUser leaves room for ansible's many forks.
	DefaultMaxConnectionsPerUser = 128
	// DefaultMaxPendingTunnelsPerUser leaves room for a CI job or
	// ansible starting dozens of ssh -J at once (or multiplexing their
	// tunnels over one ControlMaster connection to the bastion); more
	// wait for their turn.
	DefaultMaxPendingTunnelsPerUser = 64
	DefaultSweepInterval            = 30 * time.Second
	DefaultHostCertTTL              = 24 * time.Hour
	// SessionCertTTL is the lifetime of the certificates the bastion mints
	// toward targets: long enough to authenticate, useless afterwards.
	SessionCertTTL = 2 * time.Minute
)

// Server is the bastion's SSH server. Set the required fields, then call
// Serve or ListenAndServe. A Server must not be copied or reconfigured after
// it started serving.
type Server struct {
	// Addr is the address ListenAndServe listens on, e.g. ":2222".
	// Required for ListenAndServe.
	Addr string

	// Authority mints the session certificates presented to targets and
	// the host certificates the bastion presents, and names the user CA
	// (the only CA whose certificates the bastion accepts) and the host CA
	// (the only CA it trusts for targets). Required.
	Authority *ca.Authority

	// HostKey is the bastion's host private key. The bastion presents it
	// only with a certificate from the host CA: for HostNames on direct
	// connections, and for the requested target name on ProxyJump
	// connections. Required; the server never makes up a key.
	HostKey ssh.Signer

	// HostNames are the names users reach the bastion by, such as
	// "bastion.example.org"; they become the principals of its host
	// certificate. Required.
	HostNames []string

	// Policy returns the policy currently in force. It is called for every
	// decision, so a reload takes effect at once; call Reevaluate after a
	// reload so live sessions are checked too. A nil policy denies
	// everything. Required.
	Policy func() *policy.Policy

	// Directory resolves a certificate holder to their latest teams.
	// Required.
	Directory Directory

	// Store holds issued certificates, revocations and the audit trail.
	// Required.
	Store Store

	// Recorder records every session channel. Required: without it no
	// session could be recorded, so none could be allowed.
	Recorder Recorder

	// Now is the clock for certificate validity and timeouts; nil means
	// time.Now.
	Now func() time.Time

	// Logger receives operational messages; nil means slog.Default().
	Logger *slog.Logger

	// Dial connects to targets; nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// HandshakeTimeout bounds key exchange and authentication, for users
	// and toward targets; zero means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// IdleTimeout ends a connection that moved no channel data either way
	// for this long, and cuts off a finished command's remaining output
	// when the client has taken none of it for this long; zero means
	// DefaultIdleTimeout, negative means never.
	IdleTimeout time.Duration
	// DialTimeout bounds the TCP connection to a target; zero means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// KeepAliveInterval is how often the bastion probes a quiet peer (user
	// or target); zero means DefaultKeepAliveInterval, negative never.
	KeepAliveInterval time.Duration
	// KeepAliveCountMax is how many unanswered probes end a connection;
	// zero means DefaultKeepAliveCountMax.
	KeepAliveCountMax int
	// MaxConnections bounds concurrent TCP connections from users; beyond
	// it new connections are closed at once. Zero means
	// DefaultMaxConnections.
	MaxConnections int
	// MaxStartups bounds concurrent connections in their handshake (not
	// yet authenticated), like OpenSSH's MaxStartups. As many more may
	// wait, before the bastion says anything, for a slot to free, at most
	// HandshakeTimeout; beyond that new connections are closed at once.
	// Waiting connections count against MaxConnections. Zero means
	// DefaultMaxStartups.
	MaxStartups int
	// MaxStartupsPerSource bounds the connections in their handshake from
	// one source, an IPv4 address or an IPv6 /64 (OpenSSH's
	// PerSourceMaxStartups), so that one client cannot hold every
	// MaxStartups slot; as many again from that source may wait for a
	// slot, and more are closed at once. Connections from non-IP
	// addresses are not counted per source. Zero means
	// DefaultMaxStartupsPerSource.
	MaxStartupsPerSource int
	// MaxChannelsPerConn bounds open channels (sessions, forwards,
	// ProxyJump tunnels) on one connection; zero means
	// DefaultMaxChannelsPerConn.
	MaxChannelsPerConn int
	// MaxSessionsPerUser bounds concurrent session channels per identity
	// across all connections; zero means DefaultMaxSessionsPerUser.
	MaxSessionsPerUser int
	// MaxForwardsPerUser bounds concurrent port forwards (ssh -L) per
	// identity across all connections; zero means
	// DefaultMaxForwardsPerUser. Every open session or forward may hold
	// up to 4 MiB of data a slow peer has not yet taken (x/crypto's 2 MiB
	// channel window each way), so these two limits bound what one
	// person can make the bastion hold.
	MaxForwardsPerUser int
	// MaxConnectionsPerUser bounds one identity's authenticated
	// connections, so that one member (or one stolen key) cannot hold
	// every MaxConnections slot; zero means DefaultMaxConnectionsPerUser.
	// An ssh -J counts once, for its jump connection: the login inside
	// a ProxyJump tunnel is not counted again, but must be the same
	// identity's, and an identity's logins through ProxyJump are bounded
	// by the same number apart.
	MaxConnectionsPerUser int
	// MaxPendingTunnelsPerUser bounds one identity's ProxyJump tunnels
	// whose inner login has not succeeded yet, across connections; a
	// tunnel beyond it waits for a slot to free, at most HandshakeTimeout,
	// and is then refused. Of those, at most
	// maxPreconnectsPerUser have a TCP connection to their target opened
	// ahead (see serveTunnel). Zero means
	// DefaultMaxPendingTunnelsPerUser.
	MaxPendingTunnelsPerUser int
	// SweepInterval is how often live sessions are re-authorised even
	// without a Reevaluate call; zero means DefaultSweepInterval. Values
	// over a minute are capped at a minute.
	SweepInterval time.Duration
	// HostCertTTL is the lifetime of the host certificates the bastion
	// mints for itself; they are renewed at half-life. Zero means
	// DefaultHostCertTTL.
	HostCertTTL time.Duration
	// Ciphers, if set, replaces the bastion's cipher preference. The
	// default offers only AES-GCM on machines with AES instructions (so
	// that OpenSSH clients, which prefer ChaCha20-Poly1305, pick the
	// faster cipher), and ChaCha20-Poly1305 first elsewhere.
	Ciphers []string

	initOnce sync.Once
	initErr  error
	hostCA   ssh.PublicKey
	userCA   ssh.PublicKey
	hosts    *hostCerts

	mu        sync.Mutex
	listeners map[*net.Listener]struct{}
	conns     map[*serverConn]struct{}
	closed    bool
	done      chan struct{} // closed by Shutdown/Close
	nconns    atomic.Int64
	sessions  map[string]int // open session channels per identity
	userConns map[string]int // authenticated connections per identity
	// innerConns are logins through ProxyJump per identity.
	innerConns map[string]int
	forwards   map[string]int // open port forwards per identity
	pending    map[string]int // ProxyJump tunnels not yet logged in, per identity
	preconns   map[string]int // of those, with a connection to the target opened ahead
	// pendingFree is closed, and cleared, when a pending slot frees;
	// tunnels waiting for one wait on it (see waitPendingTunnel).
	pendingFree chan struct{}
	// pendingWait, if set, replaces HandshakeTimeout as the longest a
	// tunnel waits for a pending slot; for tests.
	pendingWait time.Duration
	// tunnelRates pace the ProxyJump tunnels each identity opens (see
	// reserveTunnel).
	tunnelRates map[string]*rate.Limiter
	// audits keeps repeated audit events (refused logins, tunnels) from
	// flooding the trail; see auditLimiter.
	audits    *auditLimiter
	live      map[*targetConn]struct{}
	wake      chan string // Reevaluate requests
	sweeping  bool
	connGroup sync.WaitGroup

	startMu   sync.Mutex
	startups  int                // connections in their handshake
	sources   map[netip.Addr]int // of those, per source (see sourceOf)
	waiting   map[netip.Addr]int // connections waiting for a slot, per source
	nwaiting  int                // and in all
	startFree chan struct{}      // closed, and replaced, when a slot frees

	// Refusals at accept are logged at most once per acceptLogInterval
	// for each cause.
	fullLog, startupsLog, sourceLog refusalLog
}

func (s *Server) init() error {
	s.initOnce.Do(func() {
		var missing []string
		if s.Authority == nil {
			missing = append(missing, "Authority")
		}
		if s.HostKey == nil {
			missing = append(missing, "HostKey")
		}
		if len(s.HostNames) == 0 {
			missing = append(missing, "HostNames")
		}
		if s.Policy == nil {
			missing = append(missing, "Policy")
		}
		if s.Directory == nil {
			missing = append(missing, "Directory")
		}
		if s.Store == nil {
			missing = append(missing, "Store")
		}
		if s.Recorder == nil {
			missing = append(missing, "Recorder")
		}
		if len(missing) > 0 {
			s.initErr = fmt.Errorf("bastion: server not configured: missing %v", missing)
			return
		}
		if _, ok := s.HostKey.PublicKey().(*ssh.Certificate); ok {
			s.initErr = errors.New("bastion: HostKey must be a plain key; the server certifies it with the host CA itself")
			return
		}
		for _, n := range s.HostNames {
			if err := ca.ValidateHostname(n); err != nil {
				s.initErr = fmt.Errorf("bastion: HostNames: %w", err)
				return
			}
		}
		s.userCA = s.Authority.PublicKey(ca.KindUser)
		s.hostCA = s.Authority.PublicKey(ca.KindHost)
		if s.userCA == nil || s.hostCA == nil {
			s.initErr = errors.New("bastion: the authority lacks the user or host CA key")
			return
		}
		s.hosts = &hostCerts{srv: s, certs: map[string]*hostCert{}}
		s.listeners = map[*net.Listener]struct{}{}
		s.conns = map[*serverConn]struct{}{}
		s.sources = map[netip.Addr]int{}
		s.waiting = map[netip.Addr]int{}
		s.startFree = make(chan struct{})
		s.sessions = map[string]int{}
		s.userConns = map[string]int{}
		s.innerConns = map[string]int{}
		s.forwards = map[string]int{}
		s.pending = map[string]int{}
		s.preconns = map[string]int{}
		s.tunnelRates = map[string]*rate.Limiter{}
		s.audits = &auditLimiter{srv: s, keys: map[string]*auditKey{}}
		s.live = map[*targetConn]struct{}{}
		s.done = make(chan struct{})
		s.wake = make(chan string, 1)
		// Fail at start, not at the first user, if the host CA cannot
		// certify the bastion.
		if _, err := s.hosts.signer(context.Background(), s.HostNames); err != nil {
			s.initErr = fmt.Errorf("bastion: host certificate: %w", err)
		}
	})
	return s.initErr
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func durationOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func intOr(n, def int) int {
	if n <= 0 {
		return def
	}
	return n
}

func (s *Server) sweepInterval() time.Duration {
	return min(durationOr(s.SweepInterval, DefaultSweepInterval), time.Minute)
}

// ciphers is the cipher preference for both sides of the bastion.
func (s *Server) ciphers() []string {
	if len(s.Ciphers) > 0 {
		return s.Ciphers
	}
	if (cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ) || (cpu.ARM64.HasAES && cpu.ARM64.HasPMULL) {
		return []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM}
	}
	return []string{ssh.CipherChaCha20Poly1305, ssh.CipherAES128GCM, ssh.CipherAES256GCM}
}

// ListenAndServe listens on s.Addr and serves. It always returns a non-nil
// error; after Shutdown or Close, ErrServerClosed.
func (s *Server) ListenAndServe() error {
	if s.Addr == "" {
		return errors.New("bastion: no Addr to listen on")
	}
	if err := s.init(); err != nil {
		return err
	}
	if s.isClosed() {
		return ErrServerClosed
	}
	l, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("bastion: %w", err)
	}
	return s.Serve(l)
}

// Serve accepts connections on l until l fails or the server is shut down,
// and closes l. It always returns a non-nil error; after Shutdown or Close,
// ErrServerClosed.
func (s *Server) Serve(l net.Listener) error {
	if err := s.init(); err != nil {
		l.Close()
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[&l] = struct{}{}
	if !s.sweeping {
		s.sweeping = true
		go s.sweep()
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, &l)
		s.mu.Unlock()
		l.Close()
	}()
	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("bastion: accept: %w", err)
		}
		backoff = 0
		if n := s.nconns.Add(1); n > int64(intOr(s.MaxConnections, DefaultMaxConnections)) {
			s.nconns.Add(-1)
			s.refuseAtAccept(nc, &s.fullLog, "connection limit reached")
			continue
		}
		c := &serverConn{srv: s, nc: quickAck(nc)}
		if !s.track(c, true) {
			s.nconns.Add(-1)
			nc.Close()
			return ErrServerClosed
		}
		go func() {
			defer s.connGroup.Done()
			defer s.nconns.Add(-1)
			defer s.track(c, false)
			hs := durationOr(s.HandshakeTimeout, DefaultHandshakeTimeout)
			ctx, cancel := context.WithTimeout(context.Background(), hs)
			authenticated, rl, why := s.startup(ctx, nc.RemoteAddr())
			cancel()
			switch {
			case authenticated == nil && rl == nil: // shutting down
				nc.Close()
				return
			case authenticated == nil:
				s.refuseAtAccept(nc, rl, why)
				return
			}
			defer authenticated()
			c.authenticated = authenticated
			c.serve()
		}()
	}
}

// startup takes a handshake slot for a new connection from remote under
// MaxStartups and MaxStartupsPerSource, waiting for one to free until ctx
// ends. It returns the function to call once the connection has finished
// authentication (or ended), which may be called more than once; or nil,
// with the refusal's log and cause, when the connection is refused: its
// source already has as many connections waiting as it may have in their
// handshake, as many wait in all as may be in their handshake, or no slot
// freed in time (nil and no log when the server is closing).
func (s *Server) startup(ctx context.Context, remote net.Addr) (authenticated func(), rl *refusalLog, why string) {
	src, bySource := sourceOf(remote)
	limit, perSource := intOr(s.MaxStartups, DefaultMaxStartups), intOr(s.MaxStartupsPerSource, DefaultMaxStartupsPerSource)
	s.startMu.Lock()
	defer s.startMu.Unlock()
	waited := false
	for s.startups >= limit || bySource && s.sources[src] >= perSource {
		if !waited {
			if bySource && s.waiting[src] >= perSource {
				return nil, &s.sourceLog, "too many connections not yet authenticated from one source"
			}
			if s.nwaiting >= limit {
				return nil, &s.startupsLog, "too many connections not yet authenticated"
			}
			waited = true
			s.waiting[src]++
			s.nwaiting++
			defer func() {
				s.nwaiting--
				if s.waiting[src]--; s.waiting[src] <= 0 {
					delete(s.waiting, src)
				}
			}()
		}
		free := s.startFree
		s.startMu.Unlock()
		select {
		case <-free:
			s.startMu.Lock()
		case <-s.done:
			s.startMu.Lock()
			return nil, nil, ""
		case <-ctx.Done():
			s.startMu.Lock()
			if bySource && s.sources[src] >= perSource {
				return nil, &s.sourceLog, "too many connections not yet authenticated from one source"
			}
			return nil, &s.startupsLog, "too many connections not yet authenticated"
		}
	}
	s.startups++
	if bySource {
		s.sources[src]++
	}
	return sync.OnceFunc(func() {
		s.startMu.Lock()
		defer s.startMu.Unlock()
		s.startups--
		if bySource {
			if s.sources[src]--; s.sources[src] <= 0 {
				delete(s.sources, src)
			}
		}
		close(s.startFree)
		s.startFree = make(chan struct{})
	}), nil, ""
}

// sourceOf is the source a remote address is counted under for
// MaxStartupsPerSource: an IPv4 address (IPv4-mapped IPv6 included) or an
// IPv6 /64, since one IPv6 client usually holds a whole /64. ok is false
// for an address that is not IP.
func sourceOf(remote net.Addr) (src netip.Addr, ok bool) {
	a := remoteAddr(remote)
	switch {
	case !a.IsValid():
		return netip.Addr{}, false
	case a.Is4():
		return a, true
	}
	return netip.PrefixFrom(a.WithZone(""), 64).Masked().Addr(), true
}

// acceptLogInterval is the least time between two log lines about
// connections refused at accept for the same cause, so that a flood of
// connections does not flood the log too.
const acceptLogInterval = 10 * time.Second

// refusalLog rate-limits the log lines about one cause of refusals.
type refusalLog struct {
	mu      sync.Mutex
	last    time.Time
	refused int // since the last line
}

// refuseAtAccept closes a connection refused by a limit, logging the
// refusal unless a line about the same cause was logged within
// acceptLogInterval; the next line then says how many were refused.
func (s *Server) refuseAtAccept(nc net.Conn, l *refusalLog, why string) {
	remote := nc.RemoteAddr().String()
	nc.Close()
	now := time.Now()
	l.mu.Lock()
	l.refused++
	n := l.refused
	if !l.last.IsZero() && now.Sub(l.last) < acceptLogInterval {
		l.mu.Unlock()
		return
	}
	l.last, l.refused = now, 0
	l.mu.Unlock()
	s.logger().Warn("bastion: "+why+"; closing new connections", "refused", n, "remote", remote)
}

func (s *Server) track(c *serverConn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closed {
			return false
		}
		s.conns[c] = struct{}{}
		s.connGroup.Add(1)
		return true
	}
	delete(s.conns, c)
	return true
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// closeListeners marks the server closed and closes its listeners.
func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if s.done != nil {
		close(s.done)
	}
	for l := range s.listeners {
		(*l).Close()
	}
}

// Shutdown stops accepting connections and waits for open connections to
// end. If ctx ends first, the remaining connections are closed, with a
// message to each session, and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.init(); err != nil {
		return err
	}
	s.closeListeners()
	finished := make(chan struct{})
	go func() { s.connGroup.Wait(); close(finished) }()
	select {
	case <-finished:
		s.audits.close()
		return nil
	case <-ctx.Done():
		s.closeConns("the bastion is shutting down")
		<-finished
		s.audits.close()
		return ctx.Err()
	}
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	if err := s.init(); err != nil {
		return err
	}
	s.closeListeners()
	s.closeConns("the bastion is shutting down")
	s.connGroup.Wait()
	s.audits.close()
	return nil
}

func (s *Server) closeConns(reason string) {
	s.mu.Lock()
	conns := make([]*serverConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	// Each may wait up to a second for its sessions' output: in parallel,
	// shutdown takes seconds, not one per connection.
	forEachBounded(conns, sweepConcurrency, func(c *serverConn) { c.close(reason) })
}

// audit records e, filling in the time. Failures are logged and returned.
func (s *Server) audit(ctx context.Context, e audit.Event) error {
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	if e.Actor == "" {
		e.Actor = "unknown"
	}
	if err := s.Store.Audit(ctx, e); err != nil {
		s.logger().Error("bastion: audit failed", "type", e.Type, "err", err)
		return fmt.Errorf("bastion: audit %s: %w", e.Type, err)
	}
	return nil
}
