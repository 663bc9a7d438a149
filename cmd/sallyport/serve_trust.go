package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/config"
	"github.com/sallyport/sallyport/web"
)

// serveTrust wires the admins into the server: the admin set from the
// trust folder (recomputed on a timer, on each admin request and policy
// load), the admin and recordings pages, the break-glass endpoint, and,
// with trust.require_policy_signatures, the rule that a policy loads only
// when enough admins signed it. It fails when a signed policy is required
// and the policy file is not signed well enough: the server must not
// start. It must run before the server serves, after the policy file is
// loaded.
func serveTrust(ctx context.Context, cfg *config.Config, st *dataStore, keys ca.Keys, pf *web.PolicyFile, opts *web.Options,
	background *[]func(context.Context), logger *slog.Logger) error {
	t := cfg.Trust
	admins := web.NewAdminSet(t.Dir, t.Threshold, logger, nil)
	if t.RequirePolicySignatures > 0 {
		prev, err := web.LastSignedPolicy(ctx, st)
		if err != nil {
			return err
		}
		if err := pf.RequireSignatures(ctx, web.PolicySignatures{Required: t.RequirePolicySignatures, Admins: admins, Previous: prev}); err != nil {
			return fmt.Errorf("no policy signed by %d admins (trust.require_policy_signatures) to start with: %w", t.RequirePolicySignatures, err)
		}
	}
	// Break-glass certificates are rare; they are recorded directly, not
	// through the issuance batcher, drawing serials from the same counter.
	authority, err := ca.New(keys, st)
	if err != nil {
		return err
	}
	opts.Admin = &web.AdminOptions{
		Admins:        admins,
		Store:         st,
		RecordingsDir: filepath.Join(cfg.Data, recordingsDir),
		SessionCA:     keys.Session.PublicKey(),
		BreakGlass: &web.BreakGlassOptions{Authority: authority, Ledger: st,
			Signers: t.BreakGlassSigners, PerMinute: t.BreakGlassPerMinute},
	}
	*background = append(*background, func(ctx context.Context) { admins.Run(ctx, t.Refresh) })
	return nil
}
