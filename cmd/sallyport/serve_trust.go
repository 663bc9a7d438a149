package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/config"
	"github.com/sallyport/sallyport/trust"
	"github.com/sallyport/sallyport/web"
)

// loadServePolicy loads the policy file. With
// trust.require_policy_signatures, even the first load needs that many
// admins' signatures (rollback is refused across restarts through the last
// signed policy in the audit trail), so no unsigned policy is ever in force.
func loadServePolicy(ctx context.Context, cfg *config.Config, st *dataStore, admins *web.AdminSet, logger *slog.Logger) (*web.PolicyFile, error) {
	n := cfg.Trust.RequirePolicySignatures
	if n <= 0 {
		return web.LoadPolicyFile(ctx, cfg.Policy, st, logger, nil)
	}
	prev, err := web.LastSignedPolicy(ctx, st)
	if err != nil {
		return nil, err
	}
	pf, err := web.LoadSignedPolicyFile(ctx, cfg.Policy, st, logger, nil, web.PolicySignatures{Required: n, Admins: admins, Previous: prev})
	if err != nil {
		return nil, fmt.Errorf("no policy signed by %d admins (trust.require_policy_signatures) to start with: %w", n, err)
	}
	return pf, nil
}

// checkPolicySignatures is serve --check's view of the signature rule: the
// trust folder must load and, when signatures are required, the policy's
// signature files must carry enough admins' valid signatures.
func checkPolicySignatures(cfg *config.Config, data []byte) error {
	t := cfg.Trust
	if t.RequirePolicySignatures <= 0 {
		return nil
	}
	admins, err := trust.Load(t.Dir, trust.Options{Threshold: t.Threshold})
	if err != nil {
		return fmt.Errorf("trust folder: %w", err)
	}
	sigs, err := trust.ReadSignatureFiles(cfg.Policy)
	if err != nil {
		return err
	}
	if _, err := admins.VerifyPolicy(data, sigs, trust.PolicyOptions{Required: t.RequirePolicySignatures}); err != nil {
		return fmt.Errorf("signatures (trust.require_policy_signatures: %d): %w", t.RequirePolicySignatures, err)
	}
	return nil
}

// serveTrust wires the admins into the server: the admin set (recomputed
// on a timer, on each admin request and policy load), the admin and
// recordings pages and the break-glass endpoint. It must run before the
// server serves.
func serveTrust(cfg *config.Config, st *dataStore, keys ca.Keys, admins *web.AdminSet, opts *web.Options,
	background *[]func(context.Context)) error {
	t := cfg.Trust
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
