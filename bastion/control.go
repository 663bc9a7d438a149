package bastion

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/time/rate"

	"github.com/sallyport/sallyport/audit"
)

func (s *Server) addLive(t *targetConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.live[t] = struct{}{}
	return true
}

func (s *Server) removeLive(t *targetConn) {
	s.mu.Lock()
	delete(s.live, t)
	s.mu.Unlock()
}

// take counts one more of identity's connections, sessions or forwards in
// m, unless identity already holds limit; give undoes it.
func (s *Server) take(m map[string]int, identity string, limit int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m[identity] >= limit {
		return false
	}
	m[identity]++
	return true
}

func (s *Server) give(m map[string]int, identity string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m[identity]--; m[identity] <= 0 {
		delete(m, identity)
	}
}

// addSession counts a session channel of identity against
// MaxSessionsPerUser; removeSession undoes it.
func (s *Server) addSession(identity string) bool {
	return s.take(s.sessions, identity, intOr(s.MaxSessionsPerUser, DefaultMaxSessionsPerUser))
}

func (s *Server) removeSession(identity string) { s.give(s.sessions, identity) }

// addUserConn counts an authenticated connection of identity against
// MaxConnectionsPerUser; removeUserConn undoes it.
func (s *Server) addUserConn(identity string) bool {
	return s.take(s.userConns, identity, intOr(s.MaxConnectionsPerUser, DefaultMaxConnectionsPerUser))
}

func (s *Server) removeUserConn(identity string) { s.give(s.userConns, identity) }

// addInnerConn counts a login through ProxyJump of identity against
// MaxConnectionsPerUser, apart from the connections they come through;
// removeInnerConn undoes it.
func (s *Server) addInnerConn(identity string) bool {
	return s.take(s.innerConns, identity, intOr(s.MaxConnectionsPerUser, DefaultMaxConnectionsPerUser))
}

func (s *Server) removeInnerConn(identity string) { s.give(s.innerConns, identity) }

// ProxyJump tunnels cost the bastion a store read each, and an inner SSH
// handshake: one identity opens tunnelBurst of them at once, then
// tunnelRate a second. Opening more is delayed to that pace, so that a
// client looping on open and close is slowed down, while a burst from
// people or CI (ansible fanning out over many hosts) only waits a little;
// a tunnel that would wait more than maxTunnelWait is refused.
const (
	tunnelBurst   = 64
	tunnelRate    = 20
	maxTunnelWait = time.Second
	// maxPreconnectsPerUser bounds the TCP connections to targets one
	// identity's pending tunnels have opened ahead (see serveTunnel):
	// each is a connection the target's sshd counts against its
	// MaxStartups (10 by default) until the bastion logs in on it.
	maxPreconnectsPerUser = 4
	// maxTunnelRates bounds the identities whose tunnel rate is kept;
	// beyond it, those whose budget is full again are forgotten.
	maxTunnelRates = 4096
)

// reserveTunnel charges one tunnel to identity's rate, and returns how
// long to wait before opening it; ok is false, and nothing is charged, if
// that would be longer than maxTunnelWait.
func (s *Server) reserveTunnel(identity string) (wait time.Duration, ok bool) {
	now := time.Now()
	s.mu.Lock()
	l := s.tunnelRates[identity]
	if l == nil {
		if len(s.tunnelRates) >= maxTunnelRates {
			for id, l := range s.tunnelRates {
				if l.TokensAt(now) >= tunnelBurst {
					delete(s.tunnelRates, id)
				}
			}
		}
		l = rate.NewLimiter(tunnelRate, tunnelBurst)
		s.tunnelRates[identity] = l
	}
	s.mu.Unlock()
	r := l.ReserveN(now, 1)
	if wait = r.DelayFrom(now); wait > maxTunnelWait {
		r.CancelAt(now)
		return 0, false
	}
	return wait, true
}

// waitPendingTunnel counts a ProxyJump tunnel of identity whose inner
// login has not succeeded yet against MaxPendingTunnelsPerUser, waiting up
// to max for a slot to free if identity holds them all, or until done or
// the server closes. ok is false if no slot was taken; waited says
// whether it had to wait. removePendingTunnel frees the slot.
func (s *Server) waitPendingTunnel(identity string, max time.Duration, done <-chan struct{}) (waited, ok bool) {
	limit := intOr(s.MaxPendingTunnelsPerUser, DefaultMaxPendingTunnelsPerUser)
	var timeout <-chan time.Time
	for {
		s.mu.Lock()
		if s.pending[identity] < limit {
			s.pending[identity]++
			s.mu.Unlock()
			return waited, true
		}
		if s.pendingFree == nil {
			s.pendingFree = make(chan struct{})
		}
		free := s.pendingFree
		s.mu.Unlock()
		if timeout == nil {
			t := time.NewTimer(max)
			defer t.Stop()
			timeout = t.C
		}
		waited = true
		select {
		case <-free:
		case <-timeout:
			return waited, false
		case <-done:
			return waited, false
		case <-s.done:
			return waited, false
		}
	}
}

func (s *Server) removePendingTunnel(identity string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending[identity]--; s.pending[identity] <= 0 {
		delete(s.pending, identity)
	}
	// Wake the tunnels waiting for a slot, whoever's: few wait at once
	// (MaxChannelsPerConn each connection), and each slot is short-lived.
	if s.pendingFree != nil {
		close(s.pendingFree)
		s.pendingFree = nil
	}
}

// addPreconnect counts a connection to a target opened ahead for a
// pending tunnel of identity against maxPreconnectsPerUser;
// removePreconnect undoes it.
func (s *Server) addPreconnect(identity string) bool {
	return s.take(s.preconns, identity, maxPreconnectsPerUser)
}

func (s *Server) removePreconnect(identity string) { s.give(s.preconns, identity) }

// addUserForward counts a port forward of identity against
// MaxForwardsPerUser; removeUserForward undoes it.
func (s *Server) addUserForward(identity string) bool {
	return s.take(s.forwards, identity, intOr(s.MaxForwardsPerUser, DefaultMaxForwardsPerUser))
}

func (s *Server) removeUserForward(identity string) { s.give(s.forwards, identity) }

// Reevaluate asks the server to check every live connection against the
// current policy, directory and revocations, and to end those no longer
// allowed. Call it after a policy reload, a change of an identity's teams
// and a revocation. It does not wait; the check runs at once in the
// background. why is logged.
func (s *Server) Reevaluate(why string) {
	if s.init() != nil {
		return
	}
	select {
	case s.wake <- why:
	default: // a check is already pending and will see the change
	}
}

// sweep re-authorises live connections on request and every
// SweepInterval, until the server closes.
func (s *Server) sweep() {
	t := time.NewTicker(s.sweepInterval())
	defer t.Stop()
	for {
		why := "periodic check"
		select {
		case <-s.done:
			return
		case <-t.C:
		case why = <-s.wake:
		}
		s.ReevaluateNow(context.Background(), why)
	}
}

// ReevaluateNow checks every live connection at once and returns when
// those no longer allowed have been told and closed. It returns how many
// were ended.
func (s *Server) ReevaluateNow(ctx context.Context, why string) int {
	if s.init() != nil {
		return 0
	}
	s.mu.Lock()
	live := make([]*targetConn, 0, len(s.live))
	for t := range s.live {
		live = append(live, t)
	}
	s.mu.Unlock()
	if len(live) == 0 {
		return 0
	}
	// Without the revocation list, revocation cannot be checked, but the
	// policy and the directory still can; ending every session on a
	// store hiccup would be worse than waiting for the next check, and new
	// channels are refused meanwhile (see admitChannel).
	var revs *revocationSet
	if list, err := s.Store.Revocations(ctx); err != nil {
		s.logger().Error("bastion: re-evaluation: cannot list revocations; checking policy and directory only", "why", why, "err", err)
	} else {
		rs := newRevocationSet(list)
		revs = &rs
	}
	var ended []endingConn
	for _, t := range live {
		if t.isEnded() {
			continue
		}
		reason, retry := s.reauthorise(t, revs)
		switch {
		case retry:
			s.logger().Error("bastion: re-evaluation: cannot read the store; the connection goes on until the next check", "why", why, "connection", t.id, "reason", reason)
		case reason != "":
			ended = append(ended, endingConn{t, reason})
		}
	}
	forEachBounded(ended, sweepConcurrency, func(e endingConn) { s.endLive(ctx, e.t, why, e.reason) })
	return len(ended)
}

type endingConn struct {
	t      *targetConn
	reason string
}

// endLive audits that t is no longer allowed, and why, then ends it,
// telling every session the reason. trigger is what caused the check.
func (s *Server) endLive(ctx context.Context, t *targetConn, trigger, reason string) {
	s.logger().Info("bastion: ending session no longer allowed", "host", t.info.host, "login", t.info.login, "identity", t.info.identity, "why", trigger, "reason", reason)
	f := map[string]string{"connection": t.id, "trigger": trigger, "serial": strconv.FormatUint(t.info.cert.Serial, 10)}
	if t.info.glass != nil {
		f["breakglass"] = "true"
	}
	_ = s.audit(ctx, audit.Event{
		Type: audit.TypeDeny, Actor: t.info.identity, Subject: t.info.login + "@" + t.info.host,
		Outcome: audit.OutcomeDenied, Reason: "live session ended: " + reason, Fields: f,
	})
	t.end(reason)
}

// Bounds on the goroutines ending sessions at once. Telling the user why
// may take up to a second for a client that stopped reading; these many
// are told at the same time, per connection and across connections.
const (
	endConcurrency   = DefaultMaxChannelsPerConn
	sweepConcurrency = 64
)

// forEachBounded calls f for each item, at most limit at a time, and
// returns when all calls have returned.
func forEachBounded[T any](items []T, limit int, f func(T)) {
	if len(items) == 1 {
		f(items[0])
		return
	}
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for _, it := range items {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			f(it)
		}()
	}
	wg.Wait()
}

// keepaliveUpstream probes the target like the user side; a target that
// stops answering is disconnected, which ends the user's connection.
func (t *targetConn) keepaliveUpstream(up *ssh.Client) (stop func()) {
	s := t.srv
	interval := durationOr(s.KeepAliveInterval, DefaultKeepAliveInterval)
	done := make(chan struct{})
	if interval <= 0 {
		return func() {}
	}
	go func() {
		tk := time.NewTicker(interval)
		defer tk.Stop()
		missed := 0
		for {
			select {
			case <-done:
				return
			case <-tk.C:
			}
			if keepalive(up, interval) {
				missed = 0
			} else if missed++; missed >= intOr(s.KeepAliveCountMax, DefaultKeepAliveCountMax) {
				s.logger().Info("bastion: target stopped answering keepalives", "host", t.info.host)
				up.Close()
				return
			}
		}
	}()
	return func() { close(done) }
}

// auditBudget is how many audit events of one key are written one by one:
// a burst of burst, then one per refill. Events beyond it are counted and
// written as one summary event a summaryInterval after the first of them.
type auditBudget struct {
	burst  int
	refill time.Duration
}

var (
	// A refused login is charged to the connection's budget of refusals
	// (maxRefusals, one more each refusalRefill), but a client can open
	// connection after connection: so the key it proved it holds has the
	// same budget across all connections, and so has its source, four
	// times over (several people may share an address).
	loginKeyBudget    = auditBudget{maxRefusals, refusalRefill}
	loginSourceBudget = auditBudget{4 * maxRefusals, refusalRefill / 4}
	// ProxyJump tunnels opened, refused, or closed before their inner
	// login, per identity and each on its own.
	tunnelAuditBudget = auditBudget{tunnelBurst, 10 * time.Second}
	// Forwards the target could not open, per connection.
	forwardAuditBudget = auditBudget{maxRefusals, time.Second}
)

const (
	// summaryInterval is how long after the first event not audited on
	// its own the summary of those like it is written.
	summaryInterval = time.Minute
	// maxAuditKeys bounds the keys whose budget is kept; past it, keys
	// whose budget is full again are forgotten, and if none is, new keys
	// share one budget.
	maxAuditKeys = 4096
)

// auditQuota names the budget an event is charged to: key (for example
// "login-key:SHA256:...") and its auditBudget.
type auditQuota struct {
	key    string
	budget auditBudget
}

// auditLimiter writes audit events within their budgets, and summaries of
// those it held back, so that a client repeating what is audited (a
// refused login on connection after connection, a tunnel opened and
// closed in a loop) cannot make the bastion write durable events without
// bound.
type auditLimiter struct {
	srv      *Server
	mu       sync.Mutex
	keys     map[string]*auditKey
	closed   bool
	flushing sync.WaitGroup // summaries scheduled or being written
}

type auditKey struct {
	lim        *rate.Limiter
	suppressed int         // events held back since the last summary
	last       audit.Event // the last of them
	timer      *time.Timer // writes the summary; nil if none is due
}

// overflowKey is the budget new keys share while maxAuditKeys are kept.
const overflowKey = "overflow"

// key returns q's budget. l.mu is held.
func (l *auditLimiter) key(q auditQuota, now time.Time) *auditKey {
	if k := l.keys[q.key]; k != nil {
		return k
	}
	name := q.key
	if len(l.keys) >= maxAuditKeys {
		for n, k := range l.keys {
			if k.timer == nil && k.lim.TokensAt(now) >= float64(k.lim.Burst()) {
				delete(l.keys, n)
			}
		}
		if len(l.keys) >= maxAuditKeys {
			name = overflowKey
			if k := l.keys[name]; k != nil {
				return k
			}
		}
	}
	k := &auditKey{lim: rate.NewLimiter(rate.Every(q.budget.refill), q.budget.burst)}
	l.keys[name] = k
	return k
}

// write audits e if every quota has budget left, charging each. Otherwise
// e is held back, under the first quota without budget, and counted in the
// summary written a summaryInterval later; write then returns nil.
func (l *auditLimiter) write(ctx context.Context, e audit.Event, quotas ...auditQuota) error {
	now := time.Now()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return l.srv.audit(ctx, e)
	}
	ks := make([]*auditKey, len(quotas))
	var over *auditKey
	for i, q := range quotas {
		ks[i] = l.key(q, now)
		if over == nil && ks[i].lim.TokensAt(now) < 1 {
			over = ks[i]
		}
	}
	if over != nil {
		over.suppressed++
		over.last = e
		if over.timer == nil {
			l.flushing.Add(1)
			over.timer = time.AfterFunc(summaryInterval, func() { l.flush(over) })
		}
		l.mu.Unlock()
		return nil
	}
	for _, k := range ks {
		k.lim.AllowN(now, 1)
	}
	l.mu.Unlock()
	return l.srv.audit(ctx, e)
}

// flush writes the summary of what k held back. Each call ends one
// scheduled summary (l.flushing).
func (l *auditLimiter) flush(k *auditKey) {
	defer l.flushing.Done()
	l.mu.Lock()
	e, n := k.last, k.suppressed
	k.suppressed, k.last, k.timer = 0, audit.Event{}, nil
	l.mu.Unlock()
	if n == 0 {
		return
	}
	f := maps.Clone(e.Fields)
	if f == nil {
		f = map[string]string{}
	}
	f["suppressed"] = strconv.Itoa(n)
	e.Fields = f
	e.Time = time.Time{}
	what := "events"
	if e.Outcome == audit.OutcomeDenied {
		what = "refusals"
	}
	e.Reason = fmt.Sprintf("%d more %s like this were not audited one by one (the last: %s)", n, what, e.Reason)
	_ = l.srv.audit(context.Background(), e)
}

// close writes the summaries not written yet, and from then on every
// event is written as it comes (the server takes no more connections).
func (l *auditLimiter) close() {
	l.mu.Lock()
	l.closed = true
	var due []*auditKey
	for _, k := range l.keys {
		if k.timer != nil && k.timer.Stop() {
			due = append(due, k)
		}
	}
	l.mu.Unlock()
	for _, k := range due {
		l.flush(k)
	}
	l.flushing.Wait()
}
