package bastion

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/policy"
	"github.com/sallyport/sallyport/recording"
)

// targetConn is an authenticated user connection bound to one login@host:
// either a direct connection naming the target in the user name, or the
// inner connection of a ProxyJump tunnel.
type targetConn struct {
	srv  *Server
	c    *serverConn
	conn *ssh.ServerConn
	info *authInfo
	id   string
	pre  *preConn // TCP connection to the target opened ahead, or nil

	upReady chan struct{} // closed when up or upErr is set
	up      *ssh.Client
	upNC    net.Conn // under up
	upErr   error

	mu         sync.Mutex
	terms      terms  // in force; open channels rely on no more than these
	decisions  uint64 // decisions begun (see reauthorise)
	termsFrom  uint64 // the decision terms come from
	sessions   map[*session]struct{}
	forwards   int // open port forwards
	ended      bool
	endReason  string
	agentAsked atomic.Bool
	expired    atomic.Bool // a channel was refused for the certificate's expiry
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// serveTarget serves a connection bound to info.login@info.host until
// either side ends it. pre, if not nil, is a TCP connection to the target
// opened ahead (see serveTunnel); the connection to the target uses it if
// it goes to the address the terms name.
func (s *Server) serveTarget(c *serverConn, sc *ssh.ServerConn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, info *authInfo, pre *preConn) {
	t := &targetConn{
		srv: s, c: c, conn: sc, info: info, id: newID(), pre: pre,
		upReady: make(chan struct{}), terms: info.terms,
		sessions: map[*session]struct{}{},
	}
	if !c.addTarget(t) || !s.addLive(t) {
		c.removeTarget(t)
		return
	}
	defer s.removeLive(t)
	defer c.removeTarget(t)
	go s.refuseGlobal(reqs, info, sc.RemoteAddr())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	userGone := make(chan struct{}) // closed when the user's connection has ended
	go func() {
		up, nc, err := s.dialTarget(ctx, t, info.terms)
		t.up, t.upNC, t.upErr = up, nc, err
		if err != nil {
			s.logger().Warn("bastion: cannot connect to target", "host", info.host, "err", err)
			// Audited before anyone is told, so that the record is
			// there even if the user then leaves at once.
			if !errors.Is(err, errDialAbandoned) && ctx.Err() == nil {
				_ = s.auditTargetFailure(t, sc.RemoteAddr(), err)
			}
			close(t.upReady)
			return
		}
		close(t.upReady)
		if info.terms.perms.Has(policy.AgentForwarding) {
			go t.serveAgentChannels(up.HandleChannelOpen(agentChannel))
		}
		stop := t.keepaliveUpstream(up)
		_ = up.Wait()
		stop()
		// The target went away: end the user's side too, once each
		// session has delivered the output the bastion still holds
		// (see session.drain). A client with nothing left open then
		// disconnects by itself; closing first would fail its goodbye,
		// and OpenSSH through ProxyJump would exit 255 for it.
		t.drainSessions()
		wait(userGone, closeGrace)
		sc.Close()
	}()
	defer func() {
		<-t.upReady
		if t.up != nil {
			t.up.Close()
		}
	}()

	var wg sync.WaitGroup
	defer wg.Wait()
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			s.openSession(ctx, t, nc, &wg)
		case "direct-tcpip":
			s.openForward(ctx, t, nc, &wg)
		default:
			s.refuseChannel(nc, info, sc.RemoteAddr())
		}
	}
	close(userGone)
	t.end("")
}

// auditTargetFailure records that the connection to t's target failed: a
// refusal when the target's host key is not trusted, an error otherwise.
// The reason is what the user is shown.
func (s *Server) auditTargetFailure(t *targetConn, remote net.Addr, err error) error {
	outcome := audit.OutcomeError
	if errors.Is(err, errTargetHostKey) {
		outcome = audit.OutcomeDenied
	}
	f := t.info.fields(remote)
	f["connection"] = t.id
	// The user is told the cause in a few words; the trail keeps the
	// detail (address, resolver or handshake error) for whoever fixes it.
	f["error"] = err.Error()
	return s.audit(context.Background(), audit.Event{
		Type:    audit.TypeDeny,
		Actor:   actor(t.info),
		Subject: t.info.login + "@" + t.info.host,
		Outcome: outcome,
		Reason:  userError(err),
		Fields:  f,
	})
}

// upstream waits for the connection to the target.
func (t *targetConn) upstream(ctx context.Context) (*ssh.Client, error) {
	select {
	case <-t.upReady:
		return t.up, t.upErr
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// currentTerms returns the terms in force for new channels.
func (t *targetConn) currentTerms() terms {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.terms
}

// end ends the connection. A non-empty reason is told to every session.
// Sessions are stopped concurrently, so that clients which stopped
// reading, each holding its stop up to a second, do not add up.
func (t *targetConn) end(reason string) {
	t.mu.Lock()
	if t.ended {
		t.mu.Unlock()
		return
	}
	t.ended = true
	t.endReason = reason
	var ss []*session
	for ss1 := range t.sessions {
		ss = append(ss, ss1)
	}
	t.mu.Unlock()
	forEachBounded(ss, endConcurrency, func(se *session) {
		se.stop(reason)
		// Let the client take the reason and close the channel first:
		// closing the connection under it can lose that last message (a
		// ProxyJump client's helper exits, and the client's next write
		// fails before it reads what is left).
		wait(se.userDone, time.Second)
	})
	t.conn.Close()
	// Close the target connection too: sshd acknowledges a channel close
	// only when the command exits, and nothing should wait for that.
	select {
	case <-t.upReady:
		if t.up != nil {
			t.up.Close()
		}
	default:
	}
}

// drainSessions waits, once the target's connection has ended, until the
// user has all the output of every session open on t, so that closing the
// user's connection loses none. A session's output is delivered, or its
// client cut off for not taking it (see session.drain); then the client
// still has to write out the last window of it, and acknowledges the
// close of the channel once it has (OpenSSH does): that is waited for,
// with no way to see progress, at most IdleTimeout.
func (t *targetConn) drainSessions() {
	t.mu.Lock()
	ss := make([]*session, 0, len(t.sessions))
	for se := range t.sessions {
		ss = append(ss, se)
	}
	t.mu.Unlock()
	idle := durationOr(t.srv.IdleTimeout, DefaultIdleTimeout)
	var wg sync.WaitGroup
	for _, se := range ss {
		wg.Go(func() {
			<-se.targetDone
			select {
			case <-se.gaveUp:
			case <-se.userDone:
			default:
				if idle < 0 {
					<-se.userDone
				} else {
					wait(se.userDone, idle)
				}
			}
		})
	}
	wg.Wait()
}

func (t *targetConn) isEnded() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ended
}

// reauthorise decides t again, and is the one decision for live
// connections: for each new channel and for every re-evaluation. It checks
// the certificate's revocation in revs (skipped when revs is nil: the list
// could not be read), the identity as the directory knows it now and the
// current policy; a new channel also needs the certificate to be still
// valid (admitChannel). The new terms become
// those in force; if they take away anything an open channel relies on
// (see narrowed), t may no longer be used either. It returns why t may no
// longer be used, or "".
//
// Decisions on one connection run concurrently (a new channel, the
// sweep) and read the policy and the directory as they stand at different
// moments. The terms of a decision are put in force only if no decision
// begun after it already has been: one that read the policy before a
// reload, but finishes after the re-evaluation that follows the reload,
// leaves that re-evaluation's terms in force. (Every change is followed by
// a re-evaluation begun after it, so the terms in force once it is done
// come from the change or something newer.)
//
// A store that cannot be read (suspensions and pins) leaves the terms in
// force and returns retry: the connection goes on, and the caller refuses
// only what it was asked for now (a new channel), as when revs is nil;
// unless the policy and the directory deny it even at the most it could
// be granted, which ends it as usual.
func (s *Server) reauthorise(t *targetConn, revs *revocationSet) (reason string, retry bool) {
	t.mu.Lock()
	t.decisions++
	decision := t.decisions
	t.mu.Unlock()
	info := *t.info
	remote := t.conn.RemoteAddr()
	if revs != nil {
		if reason := revs.check(info.cert); reason != "" {
			return reason, false
		}
	}
	if err := s.resolve(&info); err != nil {
		var u *unavailable
		if !errors.As(err, &u) {
			return err.Error(), false
		}
		if _, derr := s.decide(&info, remote); derr != nil {
			return derr.Error(), false
		}
		return err.Error(), true
	}
	tm, err := s.decide(&info, remote)
	if err != nil {
		return err.Error(), false
	}
	// The permissions minted into the session certificate cannot grow;
	// new terms may only narrow them.
	tm.perms &= t.info.terms.perms
	t.mu.Lock()
	defer t.mu.Unlock()
	if decision < t.termsFrom {
		// A newer decision has put its terms in force, and judged the
		// connection by them.
		return "", false
	}
	t.termsFrom = decision
	lost := t.narrowed(tm)
	// The target enforces the forced command minted into the session
	// certificate, whatever the bastion sends: once the policy's differs
	// (added, changed or removed), what the bastion audits and records
	// would not be what runs, so the connection cannot go on, even idle.
	if tm.forceCommand != t.info.terms.forceCommand {
		lost = append(lost, "the forced command changed")
	}
	// Likewise ~/.ssh/rc, which only the target can refuse to run.
	if t.info.terms.perms.Has(policy.UserRC) && !tm.perms.Has(policy.UserRC) {
		lost = append(lost, "~/.ssh/rc is no longer permitted")
	}
	t.terms = tm
	if len(lost) > 0 {
		return fmt.Sprintf("access to %s@%s changed (%s); reconnect to go on under the new terms", t.info.login, t.info.host, strings.Join(lost, ", ")), false
	}
	return "", false
}

// narrowed lists what of the terms in force, on which an open channel of
// t may rely, tm no longer grants: a terminal while a session may have
// one, port forwarding while a forward is open, and, while any session is
// open, input recording newly required. (A different forced command ends
// a connection whatever is open: see reauthorise.) Sessions not yet started count as relying on all of these:
// they may have obtained a terminal, or read the terms just before the
// change. Wider terms, and narrower ones nothing relies on, list nothing.
// t.mu is held.
func (t *targetConn) narrowed(tm terms) []string {
	old := t.terms
	var lost []string
	if old.perms.Has(policy.PTY) && !tm.perms.Has(policy.PTY) {
		for se := range t.sessions {
			if se.mayHavePTY() {
				lost = append(lost, "terminals are no longer permitted")
				break
			}
		}
	}
	if old.perms.Has(policy.PortForwarding) && !tm.perms.Has(policy.PortForwarding) && t.forwards > 0 {
		lost = append(lost, "port forwarding is no longer permitted")
	}
	if len(t.sessions) > 0 && tm.recordInput && !old.recordInput {
		lost = append(lost, "input must now be recorded")
	}
	return lost
}

// mayHavePTY reports whether se has a terminal or, not started yet, may
// still have been granted one.
func (se *session) mayHavePTY() bool {
	se.mu.Lock()
	defer se.mu.Unlock()
	// pty is set only before started, by the same goroutine.
	return !se.started || se.pty
}

// storeTimeout bounds a store read that a connection waits for.
const storeTimeout = 5 * time.Second

// admitChannel decides a new channel nc on t with reauthorise and the
// store's current revocations. A connection no longer allowed is refused
// the channel, audited, and ended with every session on it; if the
// revocations cannot be read, or the certificate has expired, only the
// channel is refused. It reports whether nc may be opened.
func (s *Server) admitChannel(ctx context.Context, t *targetConn, nc ssh.NewChannel) bool {
	lctx, cancel := context.WithTimeout(ctx, storeTimeout)
	revs, err := s.Store.Revocations(lctx)
	cancel()
	if err != nil {
		s.logger().Error("bastion: cannot list revocations; new channel refused", "connection", t.id, "err", err)
		_ = nc.Reject(ssh.ConnectionFailed, "the bastion could not check your certificate; try again later")
		return false
	}
	// A live session outlives its certificate, as with OpenSSH (a
	// break-glass one does not: see decideBreakGlass), but new work needs
	// a valid one. Only this channel is refused, audited once per
	// connection and not charged to it: forwards and agent use of a live
	// session keep asking. A connection with nothing open is ended, so
	// that a ControlMaster gives way to a new connection with the new
	// certificate.
	if err := s.checkCert(t.info.cert, t.info.login, t.conn.RemoteAddr()); err != nil {
		reason := denialReason(err)
		if !t.expired.Swap(true) {
			_ = s.auditDenial(ctx, t.info, t.conn.RemoteAddr(), reason)
		}
		if nc.ChannelType() == "session" {
			refuseSession(nc, reason)
		} else {
			_ = nc.Reject(ssh.Prohibited, reason)
		}
		if !t.hasOpenChannels() {
			t.end(reason)
		}
		return false
	}
	rs := newRevocationSet(revs)
	reason, retry := s.reauthorise(t, &rs)
	if retry {
		_ = nc.Reject(ssh.ConnectionFailed, reason)
		return false
	}
	if reason == "" {
		// Opening a session or forward is activity. An agent channel is
		// opened by the target, not the user: it must not keep an idle
		// connection alive.
		if nc.ChannelType() != agentChannel {
			t.c.touch()
		}
		return true
	}
	_ = s.auditDeny(ctx, t.info, t.conn.RemoteAddr(), reason)
	if nc.ChannelType() == "session" {
		refuseSession(nc, reason)
	} else {
		_ = nc.Reject(ssh.Prohibited, reason)
	}
	if t.hasOpenChannels() {
		s.endLive(ctx, t, "new "+nc.ChannelType()+" channel", reason)
	} else {
		t.end(reason)
	}
	return false
}

// refuseSession refuses a session channel on a connection about to end,
// so that the user sees reason. OpenSSH shows the text of a refused
// channel open only in the output of the client that owns the connection,
// not to a client multiplexed over it (ssh -o ControlMaster), which then
// even tries a connection of its own. So the channel is accepted, its
// shell, exec or subsystem request answered, and the session ended at once
// with the reason on stderr and exit status 255. It returns after at most
// closeGrace.
func refuseSession(nc ssh.NewChannel, reason string) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	defer func() { go ssh.DiscardRequests(reqs) }()
	deadline := time.NewTimer(closeGrace)
	defer deadline.Stop()
	for {
		var r *ssh.Request
		select {
		case r = <-reqs:
		case <-deadline.C:
			return
		}
		if r == nil {
			return
		}
		switch r.Type {
		case "shell", "exec", "subsystem":
			if r.WantReply {
				_ = r.Reply(true, nil)
			}
			_, _ = fmt.Fprintf(ch.Stderr(), "sallyport: %s\r\n", reason)
			_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{255}))
			_ = ch.CloseWrite()
			return
		}
		if r.WantReply {
			_ = r.Reply(false, nil)
		}
	}
}

// hasOpenChannels reports whether a session or forward is open on t.
func (t *targetConn) hasOpenChannels() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.sessions) > 0 || t.forwards > 0
}

// addForward counts a port forward being opened, if the terms in force
// permit forwarding. removeForward undoes it.
func (t *targetConn) addForward() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.terms.perms.Has(policy.PortForwarding) {
		return false
	}
	t.forwards++
	return true
}

func (t *targetConn) removeForward() {
	t.mu.Lock()
	t.forwards--
	t.mu.Unlock()
}

func (s *Server) openSession(ctx context.Context, t *targetConn, nc ssh.NewChannel, wg *sync.WaitGroup) {
	if !s.admitChannel(ctx, t, nc) {
		return
	}
	if !t.c.openChannel() {
		_ = nc.Reject(ssh.ResourceShortage, "too many channels on this connection")
		return
	}
	if !s.addSession(t.info.identity) {
		t.c.releaseChannel()
		reason := fmt.Sprintf("too many open sessions for %s (at most %d)", t.info.identity, intOr(s.MaxSessionsPerUser, DefaultMaxSessionsPerUser))
		_ = s.auditDeny(ctx, t.info, t.conn.RemoteAddr(), reason)
		_ = nc.Reject(ssh.ResourceShortage, reason)
		return
	}
	release := func() {
		s.removeSession(t.info.identity)
		t.c.releaseChannel()
	}
	up, err := t.upstream(ctx)
	if err != nil {
		release()
		_ = nc.Reject(ssh.ConnectionFailed, userError(err))
		return
	}
	upCh, upReqs, err := up.OpenChannel("session", nil)
	if err != nil {
		release()
		_ = nc.Reject(ssh.ConnectionFailed, fmt.Sprintf("%s refused the session: %v", t.info.host, err))
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		release()
		upCh.Close()
		return
	}
	se := newSession(t, ch, reqs, upCh, upReqs)
	t.mu.Lock()
	if t.ended {
		t.mu.Unlock()
		release()
		ch.Close()
		upCh.Close()
		return
	}
	t.sessions[se] = struct{}{}
	t.mu.Unlock()
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer release()
		se.run()
		t.mu.Lock()
		delete(t.sessions, se)
		t.mu.Unlock()
	}()
}

// userError is the text of err fit to show the user.
func userError(err error) string {
	var d *denial
	if errors.As(err, &d) {
		return d.reason
	}
	var te *targetError
	if errors.As(err, &te) {
		return te.Msg
	}
	if errors.Is(err, errTargetHostKey) {
		return err.Error()
	}
	return "the bastion could not connect to the target"
}

// refuseForward refuses the forward nc to dest (escaped) for reason,
// audited within the connection's refusal budget.
func (s *Server) refuseForward(ctx context.Context, t *targetConn, nc ssh.NewChannel, dest, reason string) {
	if audited, ok, closeConn := s.spendRefusal(t.info, t.conn.RemoteAddr(), reason); ok {
		_ = s.audit(ctx, forwardEvent(t, dest, audit.OutcomeDenied, audited, nil))
		closeConn()
	}
	_ = nc.Reject(ssh.Prohibited, reason)
}

// openForward relays a local port forward (ssh -L) to the target, which
// opens the connection from its side, when the policy permits it. The
// forward is audited when the target has answered: opened, or refused
// with the target's reason. Refusals, the bastion's and the target's,
// spend the connection's refusal budget (see spendRefusal), so that a
// client cannot write audit events without bound.
func (s *Server) openForward(ctx context.Context, t *targetConn, nc ssh.NewChannel, wg *sync.WaitGroup) {
	var d directTCPIP
	if err := ssh.Unmarshal(nc.ExtraData(), &d); err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	if reason := checkDestination(d.Host, d.Port); reason != "" {
		// Before anything else, and with the destination cut short.
		s.refuseForward(ctx, t, nc, recording.Escape(d.Host, maxDestination)+":"+strconv.FormatUint(uint64(d.Port), 10), reason)
		return
	}
	dest := escapeAll(net.JoinHostPort(d.Host, strconv.FormatUint(uint64(d.Port), 10)))
	if !s.admitChannel(ctx, t, nc) {
		return
	}
	// Counted from here on, with the permission checked in the same
	// step, so that a re-evaluation removing port forwarding sees it.
	if !t.addForward() {
		s.refuseForward(ctx, t, nc, dest, fmt.Sprintf("port forwarding is not permitted for %s@%s", t.info.login, t.info.host))
		return
	}
	if !t.c.openChannel() {
		t.removeForward()
		_ = nc.Reject(ssh.ResourceShortage, "too many channels on this connection")
		return
	}
	if !s.addUserForward(t.info.identity) {
		t.c.releaseChannel()
		t.removeForward()
		reason := fmt.Sprintf("too many open port forwards for %s (at most %d)", t.info.identity, intOr(s.MaxForwardsPerUser, DefaultMaxForwardsPerUser))
		_ = s.auditDeny(ctx, t.info, t.conn.RemoteAddr(), reason)
		_ = nc.Reject(ssh.ResourceShortage, reason)
		return
	}
	release := func() {
		s.removeUserForward(t.info.identity)
		t.c.releaseChannel()
		t.removeForward()
	}
	up, err := t.upstream(ctx)
	if err != nil {
		release()
		_ = nc.Reject(ssh.ConnectionFailed, userError(err))
		return
	}
	// Sent as checked, whatever else the request held.
	upCh, upReqs, err := up.OpenChannel("direct-tcpip", ssh.Marshal(&d))
	if err != nil {
		release()
		why, message, code := "the target could not open the forward", "the target could not open the forward", ssh.ConnectionFailed
		outcome := audit.OutcomeError
		var oe *ssh.OpenChannelError
		if errors.As(err, &oe) {
			why = fmt.Sprintf("refused by %s: %s", t.info.host, recording.Escape(oe.Message, 200))
			message, code = oe.Message, oe.Reason
			if oe.Reason == ssh.Prohibited {
				outcome = audit.OutcomeDenied
			}
		}
		// The target's answer (a closed port, a database restarting
		// under an application that retries) is no misbehaviour of the
		// user's: it does not count against the connection, but its audit
		// is bounded per connection, the rest summed up.
		_ = s.audits.write(ctx, forwardEvent(t, dest, outcome, why, nil),
			auditQuota{"forward-failed:" + t.id, forwardAuditBudget})
		_ = nc.Reject(code, message)
		return
	}
	if err := s.audit(ctx, forwardEvent(t, dest, audit.OutcomeOK, "opened", nil)); err != nil {
		release()
		upCh.Close()
		_ = nc.Reject(ssh.ConnectionFailed, "the bastion cannot audit this forward")
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		release()
		upCh.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	go ssh.DiscardRequests(upReqs)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer release()
		in, out := splice(ch, upCh, t.c.touch)
		_ = s.audit(context.Background(), forwardEvent(t, dest, audit.OutcomeOK, "closed", map[string]string{
			"bytes_in": strconv.FormatInt(in, 10), "bytes_out": strconv.FormatInt(out, 10),
		}))
	}()
}

// maxDestination bounds the runes of a refused destination host copied
// into the audit trail.
const maxDestination = 64

// checkDestination says why a port forward to host:port is refused, or
// "": host must be a host name (letters, digits, '.', '-', '_', at most
// 253 bytes, not starting with '-') or an IP address, port 1 to 65535.
func checkDestination(host string, port uint32) string {
	switch {
	case port == 0 || port > 65535:
		return fmt.Sprintf("forward refused: port %d is not a valid port", port)
	case host == "":
		return "forward refused: no host to connect to"
	case len(host) > 253:
		return fmt.Sprintf("forward refused: the host name is longer than 253 bytes (%d)", len(host))
	}
	if a, err := netip.ParseAddr(host); err == nil && (a.Zone() == "" || onlyBytes(a.Zone(), "._-")) {
		return ""
	}
	if host[0] == '-' || !onlyBytes(host, "._-") {
		return fmt.Sprintf("forward refused: %s is not a host name or IP address", quoteName(host))
	}
	return ""
}

// forwardEvent is the audit event of a port forward on t to dest, which
// is escaped already.
func forwardEvent(t *targetConn, dest, outcome, reason string, extra map[string]string) audit.Event {
	f := map[string]string{"destination": dest, "host": t.info.host, "login": t.info.login, "connection": t.id, "serial": strconv.FormatUint(t.info.cert.Serial, 10)}
	for k, v := range extra {
		f[k] = v
	}
	if t.info.glass != nil {
		f["breakglass"] = "true"
	}
	t.info.addCarrier(f)
	return audit.Event{Type: audit.TypePortForward, Actor: t.info.identity, Subject: t.info.login + "@" + t.info.host, Outcome: outcome, Reason: reason, Fields: f}
}

// splice copies both ways between a user channel and a target channel
// until both directions end, then closes both. It returns the bytes from
// the user and to the user. touch, if not nil, is called as data moves.
func splice(user, target ssh.Channel, touch func()) (in, out int64) {
	var wg sync.WaitGroup
	var nin, nout atomic.Int64
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = copyBuffer(target, user, touch, nil, &nin)
		_ = target.CloseWrite()
	}()
	go func() {
		defer wg.Done()
		_ = copyBuffer(user, target, touch, nil, &nout)
		_ = user.CloseWrite()
	}()
	wg.Wait()
	user.Close()
	target.Close()
	return nin.Load(), nout.Load()
}

// copyBufferSize is the relay's buffer: larger than one SSH packet (32
// KiB) so each read drains what the channel has buffered.
const copyBufferSize = 128 << 10

// firstReadSize is the buffer a relay waits for data with. Most relays
// wait most of the time (an idle shell, an agent channel): they hold this
// much each, not a copy buffer.
const firstReadSize = 2 << 10

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// copyBuffer copies src to dst, calling tap (when not nil) with each chunk
// before it is written, touch (when not nil) when data arrives, and adding
// what was written to *count (when not nil) as it goes. A tap error stops
// the copy; the end of src ends it with a nil error. A read error that
// comes with data does not stop it: an SSH channel whose connection is
// gone reports so (its window adjustment failed) while it still holds data
// received before; the copy goes on until a read returns none.
//
// It reads into a small buffer while data comes in small pieces (keys,
// prompts, agent requests), and into a copy buffer from the pool while
// reads fill more than that (bulk data, in large writes): one filled small
// read takes a copy buffer for the next read, a read shorter than the
// small buffer gives it back. Every read is written before the next one,
// so a request and its answer never wait on each other.
func copyBuffer(dst io.Writer, src io.Reader, touch func(), tap func([]byte) error, count *atomic.Int64) error {
	small := make([]byte, firstReadSize)
	var bp *[]byte
	defer func() {
		if bp != nil {
			copyBuffers.Put(bp)
		}
	}()
	for {
		buf := small
		if bp != nil {
			buf = *bp
		}
		nr, rerr := src.Read(buf)
		if err := relayChunk(dst, buf[:nr], touch, tap, count); err != nil {
			return err
		}
		switch {
		case bp == nil && nr == len(small):
			bp = copyBuffers.Get().(*[]byte)
		case bp != nil && nr < len(small):
			copyBuffers.Put(bp)
			bp = nil
		}
		switch {
		case rerr == io.EOF:
			return nil
		case rerr != nil && nr == 0:
			return rerr
		}
	}
}

// relayChunk writes one chunk read by copyBuffer.
func relayChunk(dst io.Writer, p []byte, touch func(), tap func([]byte) error, count *atomic.Int64) error {
	if len(p) == 0 {
		return nil
	}
	if touch != nil {
		touch()
	}
	if tap != nil {
		if err := tap(p); err != nil {
			return err
		}
	}
	nw, err := dst.Write(p)
	if count != nil {
		count.Add(int64(nw))
	}
	return err
}

// agentChannel is the channel type of agent forwarding.
const agentChannel = "auth-agent@openssh.com"

// maxAgentChannels bounds the agent channels open at once on one
// connection. The target opens them, not the user, and a hostile target
// could open them without end: each is a channel on the user's connection
// and a connection to the user's agent. One use of the agent (ssh, git,
// ssh-add on the target) holds one for a moment.
const maxAgentChannels = 8

// serveAgentChannels connects agent requests from the target to the
// user's agent, when the user asked for agent forwarding and the policy
// permits it, at most maxAgentChannels at once. The first use of the agent
// on the connection is audited, and the first refusal for too many; what
// passes through does not count as activity for IdleTimeout.
func (t *targetConn) serveAgentChannels(chans <-chan ssh.NewChannel) {
	s := t.srv
	ctx := context.Background()
	var open atomic.Int32
	audited, overAudited := false, false
	for nc := range chans {
		if !t.agentAsked.Load() {
			_ = nc.Reject(ssh.Prohibited, "agent forwarding not requested")
			continue
		}
		// Refused before the store is asked for anything.
		if open.Load() >= maxAgentChannels {
			reason := fmt.Sprintf("too many agent channels open at once (at most %d)", maxAgentChannels)
			if !overAudited {
				overAudited = true
				s.logger().Warn("bastion: target opens too many agent channels", "connection", t.id, "host", t.info.host)
				_ = s.auditDenial(ctx, t.info, t.conn.RemoteAddr(), reason)
			}
			_ = nc.Reject(ssh.ResourceShortage, reason)
			continue
		}
		// Each use of the agent is a new channel on the user's connection,
		// decided like the others.
		if !s.admitChannel(ctx, t, nc) {
			continue
		}
		if !t.currentTerms().perms.Has(policy.AgentForwarding) {
			_ = nc.Reject(ssh.Prohibited, "agent forwarding is no longer permitted")
			continue
		}
		if !audited {
			if err := s.audit(ctx, agentEvent(t)); err != nil {
				_ = nc.Reject(ssh.ConnectionFailed, "the bastion cannot audit the use of the agent")
				continue
			}
			audited = true
		}
		uch, ureqs, err := t.conn.OpenChannel(agentChannel, nil)
		if err != nil {
			_ = nc.Reject(ssh.ConnectionFailed, "the user's agent is not available")
			continue
		}
		ch, reqs, err := nc.Accept()
		if err != nil {
			uch.Close()
			continue
		}
		go ssh.DiscardRequests(ureqs)
		go ssh.DiscardRequests(reqs)
		open.Add(1)
		go func() {
			defer open.Add(-1)
			splice(uch, ch, nil)
		}()
	}
}

// agentEvent is the audit event of the first use of the user's agent by
// the target of t.
func agentEvent(t *targetConn) audit.Event {
	e := forwardEvent(t, "agent", audit.OutcomeOK, "the target uses the forwarded agent", nil)
	e.Fields["kind"] = "agent"
	return e
}
