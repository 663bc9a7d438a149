package bastion

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/time/rate"

	"github.com/sallyport/sallyport/audit"
)

// serverConn is one TCP connection from a user.
type serverConn struct {
	srv *Server
	nc  net.Conn
	// authenticated releases the connection's MaxStartups slots; called
	// when authentication is over, successful or not.
	authenticated func()

	active   atomic.Int64 // unix nanoseconds of the last channel data
	channels atomic.Int64 // open channels, across ProxyJump tunnels too

	// refusals budgets the audited refusals on the connection, across
	// ProxyJump tunnels; see auditDeny.
	refusals  *rate.Limiter
	overspent atomic.Bool // the connection was closed for refusals

	mu      sync.Mutex
	closed  bool
	targets map[*targetConn]struct{}
}

func (c *serverConn) touch() { c.active.Store(time.Now().UnixNano()) }

// serve runs the connection: handshake, then either a target connection
// (login@host in the user name) or a ProxyJump carrier.
func (c *serverConn) serve() {
	s := c.srv
	defer c.nc.Close()
	c.touch()
	c.refusals = rate.NewLimiter(rate.Every(refusalRefill), maxRefusals)
	// One deadline for the host certificate and the handshake: a
	// connection holds its startup slot at most HandshakeTimeout.
	deadline := time.Now().Add(durationOr(s.HandshakeTimeout, DefaultHandshakeTimeout))
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	signer, err := s.hosts.signer(ctx, s.HostNames)
	cancel()
	if err != nil {
		s.logger().Error("bastion: no host certificate", "err", err)
		return
	}
	_ = c.nc.SetDeadline(deadline)
	sc, chans, reqs, err := ssh.NewServerConn(c.nc, s.serverConfig(c, signer, nil, &handshake{}))
	c.authenticated()
	if err != nil {
		s.logger().Debug("bastion: handshake failed", "remote", c.nc.RemoteAddr().String(), "err", err)
		return
	}
	_ = c.nc.SetDeadline(time.Time{})
	defer sc.Close()
	info := sc.Permissions.ExtraData[authKey{}].(*authInfo)
	if !s.addUserConn(info.identity) {
		s.refuseConn(sc, chans, reqs, info, deadline, fmt.Sprintf("too many connections for %s (at most %d)",
			info.identity, intOr(s.MaxConnectionsPerUser, DefaultMaxConnectionsPerUser)))
		return
	}
	defer s.removeUserConn(info.identity)
	stop := c.watch(sc)
	defer stop()
	if info.host != "" {
		s.serveTarget(c, sc, chans, reqs, info, nil)
		return
	}
	go s.refuseGlobal(reqs, info, sc.RemoteAddr())
	s.serveCarrier(c, sc, chans, info)
}

// refuseConn refuses an authenticated connection: it is audited as a
// refused login, and the first channel the client opens is refused with
// reason, which stock ssh shows in one line; then the connection is
// closed, at the latest at deadline (a channel-less client waits no
// longer than a handshake).
func (s *Server) refuseConn(sc *ssh.ServerConn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, info *authInfo, deadline time.Time, reason string) {
	s.logger().Info("bastion: connection refused", "identity", info.identity, "remote", sc.RemoteAddr().String(), "reason", reason)
	_ = s.auditLoginRefusal(context.Background(), info, sc.RemoteAddr(), reason)
	go ssh.DiscardRequests(reqs)
	timer := time.AfterFunc(time.Until(deadline), func() { sc.Close() })
	defer timer.Stop()
	if nc, ok := <-chans; ok {
		_ = nc.Reject(ssh.ResourceShortage, reason)
	}
	sc.Close()
	for nc := range chans {
		_ = nc.Reject(ssh.ResourceShortage, reason)
	}
}

// close ends the connection, telling every session why.
func (c *serverConn) close(reason string) {
	c.mu.Lock()
	c.closed = true
	var ts []*targetConn
	for t := range c.targets {
		ts = append(ts, t)
	}
	c.mu.Unlock()
	forEachBounded(ts, endConcurrency, func(t *targetConn) { t.end(reason) })
	c.nc.Close()
}

func (c *serverConn) addTarget(t *targetConn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	if c.targets == nil {
		c.targets = map[*targetConn]struct{}{}
	}
	c.targets[t] = struct{}{}
	return true
}

func (c *serverConn) removeTarget(t *targetConn) {
	c.mu.Lock()
	delete(c.targets, t)
	c.mu.Unlock()
}

// openChannel counts a channel against MaxChannelsPerConn; release undoes
// it.
func (c *serverConn) openChannel() bool {
	if c.channels.Add(1) > int64(intOr(c.srv.MaxChannelsPerConn, DefaultMaxChannelsPerConn)) {
		c.channels.Add(-1)
		return false
	}
	return true
}

func (c *serverConn) releaseChannel() { c.channels.Add(-1) }

// The audited refusals on one connection are budgeted, so that a client
// cannot make the bastion write durable audit events without bound: each
// spends one of maxRefusals tokens, which come back one per
// refusalRefill. A connection out of tokens is closed (see auditDeny).
const (
	maxRefusals   = 16
	refusalRefill = time.Minute
)

// watch sends keepalives to the user and ends the connection when it has
// been idle for IdleTimeout or stops answering keepalives.
func (c *serverConn) watch(conn ssh.Conn) (stop func()) {
	s := c.srv
	done := make(chan struct{})
	interval := durationOr(s.KeepAliveInterval, DefaultKeepAliveInterval)
	idle := durationOr(s.IdleTimeout, DefaultIdleTimeout)
	tick := time.Minute
	if interval > 0 {
		tick = min(tick, interval)
	}
	if idle > 0 {
		tick = min(tick, max(idle/4, 10*time.Millisecond))
	}
	go func() {
		t := time.NewTicker(tick)
		defer t.Stop()
		missed := 0
		lastProbe := time.Now()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			if idle > 0 && time.Since(time.Unix(0, c.active.Load())) > idle {
				c.close(fmt.Sprintf("idle for more than %s", idle))
				return
			}
			if interval <= 0 || time.Since(lastProbe) < interval {
				continue
			}
			lastProbe = time.Now()
			if keepalive(conn, interval) {
				missed = 0
			} else if missed++; missed >= intOr(s.KeepAliveCountMax, DefaultKeepAliveCountMax) {
				s.logger().Info("bastion: user stopped answering keepalives", "remote", conn.RemoteAddr().String())
				c.close("no answer to keepalives")
				return
			}
		}
	}()
	return func() { close(done) }
}

// keepalive sends one keepalive request and reports whether an answer came
// within timeout. Any answer counts, as for OpenSSH.
func keepalive(conn ssh.Conn, timeout time.Duration) bool {
	res := make(chan error, 1)
	go func() {
		_, _, err := conn.SendRequest("keepalive@openssh.com", true, nil)
		res <- err
	}()
	select {
	case err := <-res:
		return err == nil
	case <-time.After(timeout):
		return false
	}
}

// refuseGlobal answers global requests on a user connection: keepalives
// get the usual negative answer, remote forwarding is refused and audited.
func (s *Server) refuseGlobal(reqs <-chan *ssh.Request, info *authInfo, remote net.Addr) {
	for r := range reqs {
		switch r.Type {
		case "tcpip-forward", "streamlocal-forward@openssh.com":
			what := "remote port forwarding (ssh -R)"
			if r.Type != "tcpip-forward" {
				what = "remote Unix socket forwarding"
			}
			_ = s.auditDeny(context.Background(), info, remote, what+" is not supported by the bastion")
		}
		if r.WantReply {
			_ = r.Reply(false, nil)
		}
	}
}

// directTCPIP is the payload of a direct-tcpip channel open (RFC 4254 7.2).
type directTCPIP struct {
	Host       string
	Port       uint32
	OriginHost string
	OriginPort uint32
}

// serveCarrier serves a connection that names no target: its only use is
// ProxyJump tunnels (direct-tcpip) to policy hosts, each answered by the
// bastion's own SSH server. Each tunnel is decided on a goroutine of its
// own (see openTunnel), which may wait for its turn, so that the
// connection keeps taking new channels, and its other tunnels keep
// moving data, meanwhile. A tunnel counts against MaxChannelsPerConn from
// its request on, which bounds the tunnels waiting on one connection.
func (s *Server) serveCarrier(c *serverConn, sc *ssh.ServerConn, chans <-chan ssh.NewChannel, info *authInfo) {
	var wg sync.WaitGroup
	// done ends the waits of tunnels not yet answered once the
	// connection is gone.
	done := make(chan struct{})
	defer wg.Wait()
	defer close(done)
	for nc := range chans {
		switch nc.ChannelType() {
		case "direct-tcpip":
		case "session":
			_ = nc.Reject(ssh.Prohibited, "this connection names no target: use 'ssh -J BASTION LOGIN@HOST' or 'ssh -p PORT LOGIN@HOST@BASTION'")
			continue
		default:
			s.refuseChannel(nc, info, sc.RemoteAddr())
			continue
		}
		var d directTCPIP
		if err := ssh.Unmarshal(nc.ExtraData(), &d); err != nil {
			_ = nc.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
			continue
		}
		host, err := ParseHost(d.Host)
		if err != nil {
			_ = nc.Reject(ssh.Prohibited, err.Error())
			continue
		}
		if !c.openChannel() {
			_ = nc.Reject(ssh.ResourceShortage, "too many channels on this connection")
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.releaseChannel()
			s.openTunnel(c, sc, nc, info, host, d.Port, done)
		}()
	}
}

// openTunnel decides a ProxyJump tunnel to host:port requested on the
// carrier connection c, authenticated as info, and serves it if allowed.
// It is paced (reserveTunnel) before anything costs a store read, and
// waits for one of the identity's MaxPendingTunnelsPerUser slots at most
// HandshakeTimeout (pendingWait in tests); done ends the waits.
func (s *Server) openTunnel(c *serverConn, sc *ssh.ServerConn, nc ssh.NewChannel, info *authInfo, host string, port uint32, done <-chan struct{}) {
	tinfo := &authInfo{cert: info.cert, identity: info.identity, login: info.login, host: host, conn: c}
	if wait, ok := s.reserveTunnel(info.identity); !ok {
		s.refuseTunnel(nc, tinfo, sc.RemoteAddr(), fmt.Sprintf("too many ProxyJump tunnels opened by %s (at most %d a second); try again shortly", info.identity, tunnelRate))
		return
	} else if wait > 0 && !sleep(wait, done, s.done) {
		_ = nc.Reject(ssh.ConnectionFailed, "the connection is closing")
		return
	}
	var allowedBy string // the login that allowed the tunnel
	var byCert bool      // one of the carrier certificate's logins
	decide := func() string {
		reason := s.checkJump(host, port)
		if reason == "" && info.glass != nil && host != info.glass.host {
			reason = fmt.Sprintf("this break-glass certificate is valid only for host %s", info.glass.host)
		}
		if reason == "" {
			// Only a tunnel the carrier's person could use makes the
			// bastion dial the target (see serveTunnel).
			var err error
			allowedBy, byCert, err = s.decideTunnel(info, host, sc.RemoteAddr())
			reason = denialReason(err)
		}
		return reason
	}
	reason := decide()
	if reason == "" {
		waited, ok := s.waitPendingTunnel(info.identity, durationOr(s.pendingWait, durationOr(s.HandshakeTimeout, DefaultHandshakeTimeout)), done)
		switch {
		case !ok:
			s.refuseTunnel(nc, tinfo, sc.RemoteAddr(), fmt.Sprintf("too many ProxyJump tunnels not yet logged in for %s (at most %d)",
				info.identity, intOr(s.MaxPendingTunnelsPerUser, DefaultMaxPendingTunnelsPerUser)))
			return
		case waited:
			// Decided again: the wait may have been long enough for a
			// revocation or a policy change.
			if reason = decide(); reason != "" {
				s.removePendingTunnel(info.identity)
			}
		}
	}
	if reason != "" {
		_ = s.auditDeny(context.Background(), tinfo, sc.RemoteAddr(), reason)
		_ = nc.Reject(ssh.Prohibited, reason)
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		s.removePendingTunnel(info.identity)
		return
	}
	go ssh.DiscardRequests(reqs)
	// An authorised tunnel is activity, as a new direct connection
	// is; what passes through it then counts only as session and
	// forward data (see channelConn).
	c.touch()
	s.serveTunnel(c, sc, ch, &tunnel{srv: s, id: newID(), host: host, port: port, carrier: info, allowedBy: allowedBy, early: byCert})
}

// sleep waits d, or until done or stop is closed; it reports whether it
// waited d.
func sleep(d time.Duration, done, stop <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
	case <-stop:
	}
	return false
}

// refuseTunnel refuses a ProxyJump tunnel for a limit (too many opened,
// too many not logged in yet): audited within tunnelAuditBudget, but not
// charged to the connection, whose other tunnels may be in use.
func (s *Server) refuseTunnel(nc ssh.NewChannel, info *authInfo, remote net.Addr, reason string) {
	_ = s.audits.write(context.Background(), s.denyEvent(info, remote, reason),
		auditQuota{"tunnel-refused:" + info.identity, tunnelAuditBudget})
	_ = nc.Reject(ssh.ResourceShortage, reason)
}

// checkJump says why a ProxyJump tunnel to host:port is refused, or "".
func (s *Server) checkJump(host string, port uint32) string {
	p := s.Policy()
	if p == nil {
		return "no policy is loaded"
	}
	h, ok := p.Host(host)
	if !ok {
		return fmt.Sprintf("no host named %q in the policy", host)
	}
	if port == 22 {
		return ""
	}
	if _, ps, err := net.SplitHostPort(h.Address); err == nil && ps == strconv.FormatUint(uint64(port), 10) {
		return ""
	}
	return fmt.Sprintf("host %s is reached on port 22 through the bastion, not %d", host, port)
}

// refuseChannel rejects a channel type the bastion does not serve, with
// an audit record.
func (s *Server) refuseChannel(nc ssh.NewChannel, info *authInfo, remote net.Addr) {
	var reason string
	switch nc.ChannelType() {
	case "direct-streamlocal@openssh.com":
		reason = "Unix socket forwarding is not supported by the bastion"
	case "tun@openssh.com":
		reason = "tunnel devices (ssh -w) are not supported by the bastion"
	case "x11":
		reason = "X11 forwarding is not supported by the bastion"
	default:
		reason = fmt.Sprintf("channel type %q is not supported by the bastion", nc.ChannelType())
		if len(reason) > 200 {
			reason = "unsupported channel type"
		}
	}
	_ = s.auditDeny(context.Background(), info, remote, reason)
	_ = nc.Reject(ssh.Prohibited, reason)
}

// tunnel is a ProxyJump tunnel: a direct-tcpip channel on a carrier
// connection to a policy host, answered by the bastion's own SSH server.
// Until its inner connection has logged in it is pending, counted against
// MaxPendingTunnelsPerUser.
type tunnel struct {
	srv     *Server
	id      string
	host    string
	port    uint32
	carrier *authInfo // what authenticated the carrier connection
	// allowedBy is the login the tunnel was allowed for; early, that it
	// is one of the carrier certificate's, so that the target may be
	// dialled before the inner login succeeds. A tunnel allowed for
	// another login of the same person (the carrier logged in with an
	// older certificate) dials nothing before the inner login does.
	allowedBy string
	early     bool

	once sync.Once
	pre  *preConn // set by preconnect, on the inner handshake's goroutine
}

// preconnect opens the TCP connection to the target ahead, once, so that
// the target's SSH server starts up while the inner connection finishes
// authenticating. It runs when the inner client offers the carrier's own
// certificate: a client that merely opens tunnels, or does not log in as
// the carrier, makes the bastion dial nothing before a login succeeds.
// Each identity has at most maxPreconnectsPerUser such connections; beyond
// that the target is dialled after the login, as for a direct connection.
func (t *tunnel) preconnect() {
	if !t.early {
		return
	}
	t.once.Do(func() {
		identity := t.carrier.identity
		if !t.srv.addPreconnect(identity) {
			return
		}
		t.pre = t.srv.preConnect(t.host, func() { t.srv.removePreconnect(identity) })
		if t.pre == nil {
			t.srv.removePreconnect(identity)
		}
	})
}

// serveTunnel answers a ProxyJump tunnel, which holds one of the
// identity's pending slots, with the bastion's own SSH server, presenting
// a host certificate for its host, and serves the inner connection, which
// must be the carrier identity's, as a target connection. The inner login
// is not counted against MaxConnectionsPerUser: the carrier is, and its
// tunnels are bounded by MaxChannelsPerConn.
func (s *Server) serveTunnel(c *serverConn, outer *ssh.ServerConn, ch ssh.Channel, tun *tunnel) {
	defer ch.Close()
	identity := tun.carrier.identity
	released := false
	release := func() {
		if !released {
			released = true
			s.removePendingTunnel(identity)
		}
	}
	defer release()
	// "ssh -W", which ProxyJump runs, has turned Nagle's algorithm off.
	peerNoDelay(c.nc)
	// Audited while the inner connection authenticates, not before: the
	// tunnel grants nothing by itself, and its login is audited anyway.
	audited := make(chan struct{})
	go func() {
		defer close(audited)
		how := "one of its certificate's logins"
		if !tun.early {
			how = "a login its person is granted there, not in its certificate"
		}
		s.auditTunnel(tun, outer.RemoteAddr(), audit.OutcomeOK, fmt.Sprintf("ProxyJump tunnel to %s opened, for %s", tun.host, how),
			map[string]string{"allowed_login": tun.allowedBy})
	}()
	defer func() { <-audited }()
	defer func() { tun.pre.discard() }()
	hs := durationOr(s.HandshakeTimeout, DefaultHandshakeTimeout)
	var timedOut atomic.Bool
	timer := time.AfterFunc(hs, func() { timedOut.Store(true); ch.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), hs)
	signer, err := s.hosts.signer(ctx, []string{tun.host})
	cancel()
	if err != nil {
		timer.Stop()
		s.logger().Error("bastion: ProxyJump host certificate", "host", tun.host, "err", err)
		return
	}
	conn := &channelConn{Channel: ch, local: outer.LocalAddr(), remote: outer.RemoteAddr()}
	h := &handshake{}
	sc, chans, reqs, err := ssh.NewServerConn(conn, s.serverConfig(c, signer, tun, h))
	if !timer.Stop() && err == nil {
		err = errors.New("handshake timed out")
		sc.Close()
	}
	release()
	if err != nil {
		s.logger().Debug("bastion: ProxyJump handshake failed", "host", tun.host, "err", err)
		// A refused login was audited as such, naming the carrier.
		if len(h.refusedKeys) == 0 {
			why := "the client closed it"
			if timedOut.Load() {
				why = fmt.Sprintf("no login within %s", hs)
			}
			s.auditTunnel(tun, outer.RemoteAddr(), audit.OutcomeError, fmt.Sprintf("ProxyJump tunnel to %s closed before a login succeeded: %s", tun.host, why),
				map[string]string{"error": err.Error()})
		}
		return
	}
	defer sc.Close()
	info := sc.Permissions.ExtraData[authKey{}].(*authInfo)
	// Logins through ProxyJump are bounded per person apart from the
	// connections they come through, so that neither halves the other.
	if !s.addInnerConn(info.identity) {
		s.refuseConn(sc, chans, reqs, info, time.Now().Add(hs), fmt.Sprintf("too many logins through ProxyJump for %s (at most %d)",
			info.identity, intOr(s.MaxConnectionsPerUser, DefaultMaxConnectionsPerUser)))
		return
	}
	defer s.removeInnerConn(info.identity)
	s.serveTarget(c, sc, chans, reqs, info, tun.pre)
}

// auditTunnel audits an event of tun (opened, or closed before its inner
// login) under the carrier's identity, within tunnelAuditBudget for the
// identity and outcome, so that a loop of tunnels cannot flood the trail.
func (s *Server) auditTunnel(tun *tunnel, remote net.Addr, outcome, reason string, extra map[string]string) {
	c := tun.carrier
	f := certFields(c.cert, remote)
	f["kind"] = "proxyjump"
	f["tunnel"] = tun.id
	f["host"] = tun.host
	f["destination"] = net.JoinHostPort(tun.host, strconv.FormatUint(uint64(tun.port), 10))
	for k, v := range extra {
		f[k] = v
	}
	if c.glass != nil {
		f["breakglass"] = "true"
	}
	_ = s.audits.write(context.Background(), audit.Event{
		Type: audit.TypePortForward, Actor: c.identity, Subject: tun.host,
		Outcome: outcome, Reason: reason, Fields: f,
	}, auditQuota{"tunnel-" + outcome + ":" + c.identity, tunnelAuditBudget})
}

// channelConn makes a channel usable as the net.Conn under an SSH
// connection. Deadlines are not supported; the caller bounds the handshake
// by closing the channel. Reading it does not count as activity for
// IdleTimeout: the inner connection's keepalives and other SSH messages
// would keep an idle session alive. The inner connection's session and
// forward data count, as on a direct connection.
type channelConn struct {
	ssh.Channel
	local, remote net.Addr
}

func (c *channelConn) LocalAddr() net.Addr                { return c.local }
func (c *channelConn) RemoteAddr() net.Addr               { return c.remote }
func (c *channelConn) SetDeadline(t time.Time) error      { return nil }
func (c *channelConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *channelConn) SetWriteDeadline(t time.Time) error { return nil }
