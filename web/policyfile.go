package web

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/policy"
	"github.com/sallyport/sallyport/trust"
)

// Auditor durably records an audit event before returning. The store
// implements it.
type Auditor interface {
	Audit(ctx context.Context, e audit.Event) error
}

// PolicyFile is the policy in force, read from a file and reloaded on
// request (SIGHUP) or when the file changes. A file that fails the check
// (parse, validation, or its own tests) is refused: the last good policy
// stays in force, and the refusal is logged and audited.
type PolicyFile struct {
	path   string
	audit  Auditor
	logger *slog.Logger
	now    func() time.Time

	mu      sync.Mutex // serialises loads
	cur     atomic.Pointer[loadedPolicy]
	lastBad [sha256.Size]byte // hash of the last refused content, to refuse it once
	onLoad  func(ok bool, at time.Time)
	sign    *PolicySignatures // nil: signatures not required
	refused atomic.Pointer[PolicyRefusal]
}

type loadedPolicy struct {
	p    *policy.Policy
	hash [sha256.Size]byte
	at   time.Time
	sig  *trust.Verification // nil: not signed
}

// ErrPolicyRefused means a policy file failed its check and was not
// loaded.
var ErrPolicyRefused = errors.New("policy refused")

// LoadPolicyFile reads and checks the policy at path. The first load must
// succeed. logger may be nil (no logging); now nil means time.Now.
func LoadPolicyFile(ctx context.Context, path string, a Auditor, logger *slog.Logger, now func() time.Time) (*PolicyFile, error) {
	f := newPolicyFile(path, a, logger, now)
	if _, err := f.Reload(ctx, "start"); err != nil {
		return nil, err
	}
	return f, nil
}

// LoadSignedPolicyFile is LoadPolicyFile for a server that requires admin
// signatures: the first load, and every later one, needs ps.Required
// distinct admins' signatures, so no unsigned policy is ever loaded.
func LoadSignedPolicyFile(ctx context.Context, path string, a Auditor, logger *slog.Logger, now func() time.Time, ps PolicySignatures) (*PolicyFile, error) {
	f := newPolicyFile(path, a, logger, now)
	if err := f.RequireSignatures(ctx, ps); err != nil {
		return nil, err
	}
	return f, nil
}

func newPolicyFile(path string, a Auditor, logger *slog.Logger, now func() time.Time) *PolicyFile {
	if now == nil {
		now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &PolicyFile{path: path, audit: a, logger: logger, now: now}
}

// Policy returns the policy in force.
func (f *PolicyFile) Policy() *policy.Policy { return f.cur.Load().p }

// LoadedAt returns when the policy in force was loaded.
func (f *PolicyFile) LoadedAt() time.Time { return f.cur.Load().at }

// Check parses data as a policy and runs the tests it contains, as
// `sallyport policy check` does.
func Check(name string, data []byte) (*policy.Policy, error) {
	p, err := policy.Parse(name, data)
	if err != nil {
		return nil, err
	}
	var failed []string
	for i := range p.Tests {
		if r := p.RunTest(&p.Tests[i]); !r.Passed() {
			failed = append(failed, fmt.Sprintf("test %q fails: %s", p.Tests[i].Name, strings.Join(r.Failures, "; ")))
		}
	}
	if len(failed) > 0 {
		return nil, fmt.Errorf("%s: %w: %s", name, ErrPolicyTests, strings.Join(failed, "; "))
	}
	return p, nil
}

// ErrPolicyTests is wrapped by Check's error for a policy that fails its
// own tests; the error names each failing test and why it fails.
var ErrPolicyTests = errors.New("the policy fails its own tests")

// Reload reads the file again. It returns whether a new policy was
// loaded: false with a nil error when the content is unchanged, false with
// an error matching ErrPolicyRefused when the file was refused. cause says
// what asked ("start", "SIGHUP", "file changed").
func (f *PolicyFile) Reload(ctx context.Context, cause string) (bool, error) {
	return f.reload(ctx, cause, false)
}

// reload reads the file; force loads it even if its content is unchanged.
func (f *PolicyFile) reload(ctx context.Context, cause string, force bool) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	data, err := os.ReadFile(f.path)
	if err != nil {
		return false, f.refuse(ctx, cause, [sha256.Size]byte{}, fmt.Errorf("read policy: %w", err))
	}
	hash := sha256.Sum256(data)
	old := f.cur.Load()
	if !force && old != nil && old.hash == hash {
		return false, nil
	}
	badKey := hash // what a refusal is remembered by: with signatures, their files too
	var sig *trust.Verification
	if f.sign != nil {
		sig, badKey, err = f.checkSignatures(data, hash, old)
		if err != nil {
			return false, f.refuse(ctx, cause, badKey, err)
		}
	}
	p, err := Check(f.path, data)
	if err == nil && old != nil && !strings.EqualFold(p.GitHub.Org, old.p.GitHub.Org) {
		err = fmt.Errorf("the organisation changed from %s to %s; restart the server to change organisations", old.p.GitHub.Org, p.GitHub.Org)
	}
	if err != nil {
		return false, f.refuse(ctx, cause, badKey, err)
	}
	now := f.now()
	f.cur.Store(&loadedPolicy{p: p, hash: hash, at: now, sig: sig})
	f.lastBad = [sha256.Size]byte{}
	f.refused.Store(nil)
	f.logger.Info("policy loaded", "file", f.path, "cause", cause, "sha256", fmt.Sprintf("%x", hash[:8]), "hosts", len(p.Hosts), "roles", len(p.Roles), "signatures", sigSummary(sig))
	if f.audit != nil {
		e := audit.Event{Type: audit.TypePolicyLoad, Actor: "server", Subject: f.path, Outcome: audit.OutcomeOK,
			Fields: map[string]string{"sha256": fmt.Sprintf("%x", hash), "cause": cause}}
		addSignatureFields(e.Fields, sig)
		if err := f.audit.Audit(ctx, e); err != nil {
			f.logger.Error("audit policy load", "err", err)
		}
	}
	if f.onLoad != nil {
		f.onLoad(true, now)
	}
	return true, nil
}

func (f *PolicyFile) refuse(ctx context.Context, cause string, hash [sha256.Size]byte, err error) error {
	err = fmt.Errorf("%w: %w", ErrPolicyRefused, err)
	if f.cur.Load() == nil {
		return err // nothing in force yet: the caller fails to start
	}
	if hash != ([sha256.Size]byte{}) && hash == f.lastBad {
		return err // already refused this content; say it once
	}
	f.lastBad = hash
	f.refused.Store(&PolicyRefusal{At: f.now(), Cause: cause, Reason: err.Error()})
	f.logger.Error("policy refused; the previous policy stays in force", "file", f.path, "cause", cause, "err", err)
	if f.audit != nil {
		e := audit.Event{Type: audit.TypePolicyLoad, Actor: "server", Subject: f.path, Outcome: audit.OutcomeDenied,
			Reason: truncate(err.Error(), 2000), Fields: map[string]string{"cause": cause}}
		if hash != ([sha256.Size]byte{}) {
			e.Fields["sha256"] = fmt.Sprintf("%x", hash)
		}
		if aerr := f.audit.Audit(ctx, e); aerr != nil {
			f.logger.Error("audit policy refusal", "err", aerr)
		}
	}
	if f.onLoad != nil {
		f.onLoad(false, f.now())
	}
	return err
}

// Watch checks the file every interval until ctx ends, reloading when its
// content changed.
func (f *PolicyFile) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.Reload(ctx, "file changed") //nolint:errcheck // logged and audited by Reload
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
