package bastion

import (
	"context"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

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
		if reason := s.reauthorise(t, revs); reason != "" {
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
