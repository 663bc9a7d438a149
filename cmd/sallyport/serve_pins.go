package main

import (
	"context"
	"log/slog"
	"strconv"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/identity"
	"github.com/sallyport/sallyport/standing"
	"github.com/sallyport/sallyport/store"
)

// loginPinner is the part of the store pinDirectoryLogins writes to.
type loginPinner interface {
	PinLogins(ctx context.Context, source string, seen []store.SeenLogin) ([]store.LoginPin, error)
	Audit(ctx context.Context, e audit.Event) error
}

// pinDirectoryLogins pins the login of every member the organisation
// directory lists to the member's numeric ID, at its first load and after
// every change it publishes, so that a login is pinned to its holder
// before anyone can rename into it, whether or not its holder ever signed
// in. A member listed under a login pinned to another account is logged
// and audited once per process. It subscribes at once and returns the
// function to run in the background until ctx ends.
func pinDirectoryLogins(dir *identity.Directory, st loginPinner, logger *slog.Logger) func(context.Context) {
	changed := make(chan struct{}, 1)
	cancel := dir.Subscribe(func(identity.Update) {
		select {
		case changed <- struct{}{}:
		default: // a pass is pending and will see this change
		}
	})
	return func(ctx context.Context) {
		defer cancel()
		reported := map[string]int64{}
		for {
			if members := dir.Members(); members != nil {
				pinMembers(ctx, members, st, reported, logger)
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
		}
	}
}

func pinMembers(ctx context.Context, members []identity.Membership, st loginPinner, reported map[string]int64, logger *slog.Logger) {
	seen := make([]store.SeenLogin, 0, len(members))
	for _, m := range members {
		if _, err := store.NormalizeLogin(m.Login); err == nil && m.ID > 0 {
			seen = append(seen, store.SeenLogin{Login: m.Login, GitHubID: m.ID})
		}
	}
	pins, err := st.PinLogins(ctx, standing.SourceDirectory, seen)
	if err != nil {
		if ctx.Err() == nil {
			logger.Error("cannot pin the organisation members' logins", "err", err)
		}
		return
	}
	for i, p := range pins {
		s := seen[i]
		if p.GitHubID == s.GitHubID || reported[p.Login] == s.GitHubID {
			continue
		}
		reported[p.Login] = s.GitHubID
		reason := standing.UnpinnedReason(s.Login, s.GitHubID, p)
		logger.Warn("organisation member holds a login pinned to another GitHub user", "login", s.Login, "github_id", s.GitHubID, "pinned_to", p.GitHubID)
		e := audit.Event{Type: store.AuditTypeLoginPin, Actor: "github:" + strconv.FormatInt(s.GitHubID, 10), Subject: p.Login,
			Outcome: audit.OutcomeDenied, Reason: reason, Fields: map[string]string{"at": standing.SourceDirectory, "github_id": strconv.FormatInt(s.GitHubID, 10)}}
		if err := st.Audit(ctx, e); err != nil {
			logger.Error("audit login pin", "err", err)
		}
	}
}
