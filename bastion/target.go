package bastion

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/policy"
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
	terms      terms // in force; open channels rely on no more than these
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
			go t.serveAgentChannels(up.HandleChannelOpen("auth-agent@openssh.com"))
		}
		stop := t.keepaliveUpstream(up)
		_ = up.Wait()
		stop()
		// The target went away: end the user's side too.
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
	f := certFields(t.info.cert, remote)
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
	forEachBounded(ss, endConcurrency, func(se *session) { se.stop(reason) })
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
func (s *Server) reauthorise(t *targetConn, revs *revocationSet) string {
	info := *t.info
	remote := t.conn.RemoteAddr()
	if revs != nil {
		if reason := revs.check(info.cert); reason != "" {
			return reason
		}
	}
	if err := s.resolve(&info); err != nil {
		return err.Error()
	}
	tm, err := s.decide(&info, remote)
	if err != nil {
		return err.Error()
	}
	// The permissions minted into the session certificate cannot grow;
	// new terms may only narrow them.
	tm.perms &= t.info.terms.perms
	t.mu.Lock()
	defer t.mu.Unlock()
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
		return fmt.Sprintf("access to %s@%s changed (%s); reconnect to go on under the new terms", t.info.login, t.info.host, strings.Join(lost, ", "))
	}
	return ""
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
	reason := s.reauthorise(t, &rs)
	if reason == "" {
		t.c.touch() // opening a session or forward is activity
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

// openForward relays a local port forward (ssh -L) to the target, which
// opens the connection from its side, when the policy permits it.
func (s *Server) openForward(ctx context.Context, t *targetConn, nc ssh.NewChannel, wg *sync.WaitGroup) {
	var d directTCPIP
	if err := ssh.Unmarshal(nc.ExtraData(), &d); err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	dest := net.JoinHostPort(d.Host, strconv.FormatUint(uint64(d.Port), 10))
	if !s.admitChannel(ctx, t, nc) {
		return
	}
	// Counted from here on, with the permission checked in the same
	// step, so that a re-evaluation removing port forwarding sees it.
	if !t.addForward() {
		reason := fmt.Sprintf("port forwarding is not permitted for %s@%s", t.info.login, t.info.host)
		if audited, ok, closeConn := s.spendRefusal(t.info, t.conn.RemoteAddr(), reason); ok {
			_ = s.audit(ctx, forwardEvent(t, dest, audit.OutcomeDenied, audited, nil))
			closeConn()
		}
		_ = nc.Reject(ssh.Prohibited, reason)
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
	if err := s.audit(ctx, forwardEvent(t, dest, audit.OutcomeOK, "", nil)); err != nil {
		release()
		_ = nc.Reject(ssh.ConnectionFailed, "the bastion cannot audit this forward")
		return
	}
	upCh, upReqs, err := up.OpenChannel("direct-tcpip", nc.ExtraData())
	if err != nil {
		release()
		var oe *ssh.OpenChannelError
		if errors.As(err, &oe) {
			_ = nc.Reject(oe.Reason, oe.Message)
		} else {
			_ = nc.Reject(ssh.ConnectionFailed, "the target could not open the forward")
		}
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

func forwardEvent(t *targetConn, dest, outcome, reason string, extra map[string]string) audit.Event {
	f := map[string]string{"destination": dest, "host": t.info.host, "login": t.info.login, "connection": t.id, "serial": strconv.FormatUint(t.info.cert.Serial, 10)}
	for k, v := range extra {
		f[k] = v
	}
	if t.info.glass != nil {
		f["breakglass"] = "true"
	}
	return audit.Event{Type: audit.TypePortForward, Actor: t.info.identity, Subject: t.info.login + "@" + t.info.host, Outcome: outcome, Reason: reason, Fields: f}
}

// splice copies both ways between a user channel and a target channel
// until both directions end, then closes both. It returns the bytes from
// the user and to the user.
func splice(user, target ssh.Channel, touch func()) (in, out int64) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		in, _ = copyBuffer(target, user, touch, nil)
		_ = target.CloseWrite()
	}()
	go func() {
		defer wg.Done()
		out, _ = copyBuffer(user, target, touch, nil)
		_ = user.CloseWrite()
	}()
	wg.Wait()
	user.Close()
	target.Close()
	return in, out
}

// copyBufferSize is the relay's buffer: larger than one SSH packet (32
// KiB) so each read drains what the channel has buffered.
const copyBufferSize = 128 << 10

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// copyBuffer copies src to dst, calling tap (when not nil) with each chunk
// before it is written. A tap error stops the copy.
func copyBuffer(dst io.Writer, src io.Reader, touch func(), tap func([]byte) error) (int64, error) {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	var n int64
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			touch()
			if tap != nil {
				if err := tap(buf[:nr]); err != nil {
					return n, err
				}
			}
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return n, nil
			}
			return n, rerr
		}
	}
}

// serveAgentChannels connects agent requests from the target to the
// user's agent, when the user asked for agent forwarding and the policy
// permits it.
func (t *targetConn) serveAgentChannels(chans <-chan ssh.NewChannel) {
	for nc := range chans {
		if !t.agentAsked.Load() {
			_ = nc.Reject(ssh.Prohibited, "agent forwarding not requested")
			continue
		}
		// Each use of the agent is a new channel on the user's connection,
		// decided like the others.
		if !t.srv.admitChannel(context.Background(), t, nc) {
			continue
		}
		if !t.currentTerms().perms.Has(policy.AgentForwarding) {
			_ = nc.Reject(ssh.Prohibited, "agent forwarding is no longer permitted")
			continue
		}
		uch, ureqs, err := t.conn.OpenChannel("auth-agent@openssh.com", nil)
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
		go splice(uch, ch, t.c.touch)
	}
}
