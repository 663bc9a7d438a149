package bastion

import (
	"context"
	"strconv"
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

func (s *Server) addSession(identity string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions[identity] >= intOr(s.MaxSessionsPerUser, DefaultMaxSessionsPerUser) {
		return false
	}
	s.sessions[identity]++
	return true
}

func (s *Server) removeSession(identity string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions[identity]--; s.sessions[identity] <= 0 {
		delete(s.sessions, identity)
	}
}

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
	revs, err := s.Store.Revocations(ctx)
	if err != nil {
		// Without the revocation list nothing can be shown to be allowed,
		// but ending every session on a store hiccup would be worse; the
		// next sweep retries.
		s.logger().Error("bastion: re-evaluation: cannot list revocations", "err", err)
		return 0
	}
	rs := newRevocationSet(revs)
	ended := 0
	for _, t := range live {
		if t.isEnded() {
			continue
		}
		reason := rs.check(t.info.cert)
		if reason == "" {
			reason = s.reauthorise(t)
		}
		if reason == "" {
			continue
		}
		ended++
		s.logger().Info("bastion: ending session no longer allowed", "host", t.info.host, "login", t.info.login, "identity", t.info.identity, "why", why, "reason", reason)
		_ = s.audit(ctx, audit.Event{
			Type: audit.TypeDeny, Actor: t.info.identity, Subject: t.info.login + "@" + t.info.host,
			Outcome: audit.OutcomeDenied, Reason: "live session ended: " + reason,
			Fields: map[string]string{"connection": t.id, "trigger": why, "serial": strconv.FormatUint(t.info.cert.Serial, 10)},
		})
		t.end(reason)
	}
	return ended
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
