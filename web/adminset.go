package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sallyport/sallyport/trust"
)

// AdminSet is Sallyport's admin set, computed from a trust folder (see
// package trust). The web server asks it afresh on every admin request,
// every break-glass request and every policy load, and Run recomputes it
// on a timer, so that expired or revoked keys and withdrawn
// certifications take effect without a restart. A folder that cannot be
// read means nobody is an admin: deny by default.
type AdminSet struct {
	dir       string
	threshold int
	log       *slog.Logger
	now       func() time.Time

	mu      sync.Mutex
	cur     *trust.Admins
	err     error
	at      time.Time
	summary string // the admitted fingerprints, to log changes once
}

// ErrNoAdmins means the admin set could not be computed, so nobody is an
// admin.
var ErrNoAdmins = errors.New("no admin set")

// NewAdminSet returns the admin set of the trust folder dir with the
// certification threshold (zero means trust.DefaultThreshold) and computes
// it once. A failure is logged and kept (nobody is an admin), not
// returned: a server without admins still serves everyone else. logger
// nil means none; now nil means time.Now.
func NewAdminSet(dir string, threshold int, logger *slog.Logger, now func() time.Time) *AdminSet {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	a := &AdminSet{dir: dir, threshold: threshold, log: logger, now: now}
	a.Refresh("start") //nolint:errcheck // kept and logged
	return a
}

// Dir is the trust folder.
func (a *AdminSet) Dir() string { return a.dir }

// Refresh recomputes the set from the folder now. cause says what asked,
// for the log.
func (a *AdminSet) Refresh(cause string) (*trust.Admins, error) {
	now := a.now()
	admins, err := trust.Load(a.dir, trust.Options{Threshold: a.threshold, Now: now})
	a.mu.Lock()
	defer a.mu.Unlock()
	a.at = now
	if err != nil {
		err = fmt.Errorf("%w: trust folder %s: %w", ErrNoAdmins, a.dir, err)
		if a.err == nil || a.err.Error() != err.Error() {
			a.log.Error("nobody is an admin: the trust folder cannot be used", "cause", cause, "err", err)
		}
		a.cur, a.err, a.summary = nil, err, ""
		return nil, err
	}
	summary := adminSummary(admins)
	if summary != a.summary || a.err != nil {
		a.log.Info("admin set computed", "cause", cause, "trust", a.dir, "threshold", admins.Threshold(),
			"admins", summary, "rejected", len(admins.Rejected()))
	}
	a.cur, a.err, a.summary = admins, nil, summary
	return admins, nil
}

// Current returns the set last computed, without reading the folder. Use
// it only for display (such as whether to show a link); decisions call
// Refresh.
func (a *AdminSet) Current() (*trust.Admins, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cur, a.err
}

// Run recomputes the set every interval until ctx ends; interval zero or
// more than an hour means an hour.
func (a *AdminSet) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 || interval > time.Hour {
		interval = time.Hour
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.Refresh("timer") //nolint:errcheck // kept and logged
		}
	}
}

func adminSummary(admins *trust.Admins) string {
	var s []string
	for _, ad := range admins.List() {
		s = append(s, ad.GitHub.String()+"="+ad.Fingerprint.Short())
	}
	slices.Sort(s)
	return strings.Join(s, ",")
}

// adminDecision says whether the GitHub account id is an admin in admins
// and why, in words for the log and the audit trail.
func adminDecision(admins *trust.Admins, err error, provider string, id int64) (bool, string) {
	switch {
	case provider != "github" || id == 0:
		return false, "only a GitHub account named by an admitted admin key can be an admin; this sign-in is not a GitHub one"
	case err != nil:
		return false, "nobody is an admin: " + err.Error()
	case admins == nil:
		return false, "nobody is an admin: no admin set"
	case !admins.IsAdmin(id):
		return false, fmt.Sprintf("github:%d holds no admitted admin key in the trust folder (team membership never makes an admin)", id)
	}
	var keys []string
	for _, ad := range admins.ByGitHubID(id) {
		how := "root"
		if !ad.Root {
			var by []string
			for _, f := range ad.CertifiedBy {
				by = append(by, f.Short())
			}
			how = "certified by " + strings.Join(by, "+")
		}
		keys = append(keys, fmt.Sprintf("%s (%s)", ad.Fingerprint, how))
	}
	return true, fmt.Sprintf("github:%d holds admitted admin key %s", id, strings.Join(keys, ", "))
}
