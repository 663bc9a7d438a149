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
	"sync"
	"sync/atomic"

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
	terms      terms
	sessions   map[*session]struct{}
	ended      bool
	endReason  string
	agentAsked atomic.Bool
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
			s.logger().Info("bastion: cannot connect to target", "host", info.host, "err", err)
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
	for _, se := range ss {
		se.stop(reason)
	}
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

// reauthorise decides the connection again under the current policy and
// directory, for a new channel. It returns the denial reason, or "".
func (s *Server) reauthorise(t *targetConn) string {
	info := *t.info
	if err := s.resolve(&info); err != nil {
		return err.Error()
	}
	tm, err := s.decide(&info, t.conn.RemoteAddr())
	if err != nil {
		return err.Error()
	}
	t.mu.Lock()
	// The permissions minted into the session certificate cannot grow;
	// new terms may only narrow them.
	tm.perms &= t.info.terms.perms
	t.terms = tm
	t.mu.Unlock()
	return ""
}

func (s *Server) openSession(ctx context.Context, t *targetConn, nc ssh.NewChannel, wg *sync.WaitGroup) {
	if reason := s.reauthorise(t); reason != "" {
		_ = s.auditDeny(ctx, t.info, t.conn.RemoteAddr(), reason)
		_ = nc.Reject(ssh.Prohibited, reason)
		t.end(reason)
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
	if reason := s.reauthorise(t); reason != "" {
		_ = s.auditDeny(ctx, t.info, t.conn.RemoteAddr(), reason)
		_ = nc.Reject(ssh.Prohibited, reason)
		t.end(reason)
		return
	}
	if !t.currentTerms().perms.Has(policy.PortForwarding) {
		reason := fmt.Sprintf("port forwarding is not permitted for %s@%s", t.info.login, t.info.host)
		_ = s.audit(ctx, forwardEvent(t, dest, audit.OutcomeDenied, reason, nil))
		_ = nc.Reject(ssh.Prohibited, reason)
		return
	}
	if !t.c.openChannel() {
		_ = nc.Reject(ssh.ResourceShortage, "too many channels on this connection")
		return
	}
	up, err := t.upstream(ctx)
	if err != nil {
		t.c.releaseChannel()
		_ = nc.Reject(ssh.ConnectionFailed, userError(err))
		return
	}
	if err := s.audit(ctx, forwardEvent(t, dest, audit.OutcomeOK, "", nil)); err != nil {
		t.c.releaseChannel()
		_ = nc.Reject(ssh.ConnectionFailed, "the bastion cannot audit this forward")
		return
	}
	upCh, upReqs, err := up.OpenChannel("direct-tcpip", nc.ExtraData())
	if err != nil {
		t.c.releaseChannel()
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
		t.c.releaseChannel()
		upCh.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	go ssh.DiscardRequests(upReqs)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer t.c.releaseChannel()
		in, out := splice(ch, upCh, t.c.touch)
		_ = s.audit(context.Background(), forwardEvent(t, dest, audit.OutcomeOK, "closed", map[string]string{
			"bytes_in": strconv.FormatInt(in, 10), "bytes_out": strconv.FormatInt(out, 10),
		}))
	}()
}

func forwardEvent(t *targetConn, dest, outcome, reason string, extra map[string]string) audit.Event {
	f := map[string]string{"destination": dest, "host": t.info.host, "login": t.info.login, "connection": t.id}
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
		if !t.agentAsked.Load() || !t.currentTerms().perms.Has(policy.AgentForwarding) {
			_ = nc.Reject(ssh.Prohibited, "agent forwarding not requested")
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
