package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTrust(t *testing.T) {
	tests := []struct {
		name  string
		extra string
		want  string // a problem; empty for ok
		check func(t *testing.T, c *Config)
	}{
		{name: "ok/defaults", check: func(t *testing.T, c *Config) {
			want := Trust{Dir: "/var/lib/sallyport/trust", Threshold: 2, Refresh: time.Hour, BreakGlassSigners: 1, BreakGlassPerMinute: 5}
			if c.Trust != want {
				t.Errorf("trust = %+v; want %+v", c.Trust, want)
			}
		}},
		{name: "ok/everything", extra: "trust: {dir: trust, threshold: 3, require_policy_signatures: 2, refresh: 10m, breakglass_signers: 2, breakglass_per_minute: 1}\n",
			check: func(t *testing.T, c *Config) {
				want := Trust{Dir: filepath.Join("/etc/sallyport", "trust"), Threshold: 3, RequirePolicySignatures: 2, Refresh: 10 * time.Minute,
					BreakGlassSigners: 2, BreakGlassPerMinute: 1}
				if c.Trust != want {
					t.Errorf("trust = %+v; want %+v", c.Trust, want)
				}
			}},
		{name: "fail/unknown-key", extra: "trust: {require_signatures: 2}\n", want: `cfg.yaml:7: unknown setting "require_signatures"`},
		{name: "fail/negative-signatures", extra: "trust: {require_policy_signatures: -1}\n", want: "cfg.yaml:7: trust.require_policy_signatures must not be negative"},
		{name: "fail/negative-threshold", extra: "trust:\n  threshold: -2\n", want: "cfg.yaml:8: trust.threshold must not be negative"},
		{name: "fail/refresh-over-an-hour", extra: "trust: {refresh: 2h}\n", want: "trust.refresh must be between 0 and 1h"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("/etc/sallyport/cfg.yaml", []byte(minimal+tc.extra))
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Parse: %v; want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}
