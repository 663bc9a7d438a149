package config

import (
	"path/filepath"
	"time"
)

// Trust configures the admins: the OpenPGP web of trust that decides who
// they are, the signatures a policy needs, and break-glass requests. The
// admin role never comes from GitHub team membership.
type Trust struct {
	// Dir is the trust folder (the roots file and keys/, as `sallyport
	// trust init` and `trust add` write it); empty means DATA/trust. A
	// missing folder means nobody is an admin.
	Dir string `yaml:"dir"`
	// Threshold is how many distinct admins' certifications admit a new
	// admin; zero means 2. It must match `sallyport trust admins
	// --threshold`.
	Threshold int `yaml:"threshold"`
	// RequirePolicySignatures, when above zero, makes the server load a
	// policy only when it carries valid detached signatures (policy.yaml.asc
	// or policy.yaml.*.asc beside it) by that many distinct admins, each
	// made after the signatures of the policy in force; zero means the
	// policy need not be signed.
	RequirePolicySignatures int `yaml:"require_policy_signatures"`
	// Refresh is how often the admin set is recomputed from the folder so
	// that expiries and revocations take effect; zero means 1h, the most
	// allowed. It is also recomputed on every admin request and policy
	// load.
	Refresh time.Duration `yaml:"refresh"`
	// BreakGlassSigners is how many distinct admins must clear-sign a
	// break-glass request; zero means 1.
	BreakGlassSigners int `yaml:"breakglass_signers"`
	// BreakGlassPerMinute limits POST /api/v1/breakglass per client
	// address; zero means 5.
	BreakGlassPerMinute int `yaml:"breakglass_per_minute"`
}

func (c *Config) validateTrust(v *validator) {
	t := c.Trust
	if t.Threshold < 0 {
		v.errorf("trust.threshold", "trust.threshold must not be negative")
	}
	if t.RequirePolicySignatures < 0 {
		v.errorf("trust.require_policy_signatures", "trust.require_policy_signatures must not be negative")
	}
	if t.Refresh < 0 || t.Refresh > time.Hour {
		v.errorf("trust.refresh", "trust.refresh must be between 0 and 1h")
	}
	if t.BreakGlassSigners < 0 {
		v.errorf("trust.breakglass_signers", "trust.breakglass_signers must not be negative")
	}
	if t.BreakGlassPerMinute < 0 {
		v.errorf("trust.breakglass_per_minute", "trust.breakglass_per_minute must not be negative")
	}
}

// resolveTrust runs after Data is made absolute.
func (c *Config) resolveTrust() {
	t := &c.Trust
	switch {
	case t.Dir == "":
		t.Dir = filepath.Join(c.Data, "trust")
	case !filepath.IsAbs(t.Dir):
		t.Dir = filepath.Join(filepath.Dir(c.File), t.Dir)
	}
	if t.Threshold == 0 {
		t.Threshold = 2
	}
	if t.Refresh == 0 {
		t.Refresh = time.Hour
	}
	if t.BreakGlassSigners == 0 {
		t.BreakGlassSigners = 1
	}
	if t.BreakGlassPerMinute == 0 {
		t.BreakGlassPerMinute = 5
	}
}
