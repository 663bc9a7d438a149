package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBastionDefaults(t *testing.T) {
	tests := []struct {
		name       string
		yaml       string
		listen     string
		public     string
		names      []string
		hostKey    string
		refresh    time.Duration
		enabled    bool
		revocation time.Duration
	}{
		{"ok/defaults", minimal, ":2222", "sallyport.example.org:2222", []string{"sallyport.example.org"},
			"/var/lib/sallyport/bastion_host_key", time.Minute, true, 5 * time.Second},
		{"ok/explicit", minimal + `bastion: ssh.example.org:22
bastion_listen: 0.0.0.0:22
bastion_names: [ssh.example.org, bastion.internal]
bastion_host_key: keys/bastion
bastion_limits: {revocation_poll: 1s, max_sessions_per_user: 4}
`, "0.0.0.0:22", "ssh.example.org:22", []string{"ssh.example.org", "bastion.internal"}, "/etc/sallyport/keys/bastion", time.Minute, true, time.Second},
		{"ok/off", minimal + "bastion_listen: off\n", "off", "", nil, "/var/lib/sallyport/bastion_host_key", 5 * time.Minute, false, 0},
		{"ok/refresh-kept", strings.Replace(minimal, "  client_id: Iv1.abc\n", "  client_id: Iv1.abc\n  refresh: 10m\n", 1), ":2222",
			"sallyport.example.org:2222", []string{"sallyport.example.org"}, "/var/lib/sallyport/bastion_host_key", 10 * time.Minute, true, 5 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("/etc/sallyport/cfg.yaml", []byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if c.BastionListen != tc.listen || c.Bastion != tc.public || !slices.Equal(c.BastionNames, tc.names) ||
				c.BastionHostKey != tc.hostKey || c.GitHub.Refresh != tc.refresh || c.BastionEnabled() != tc.enabled ||
				c.BastionLimits.RevocationPoll != tc.revocation {
				t.Errorf("got listen %q, public %q, names %q, host key %q, refresh %v, enabled %v, revocation poll %v; want %q, %q, %q, %q, %v, %v, %v",
					c.BastionListen, c.Bastion, c.BastionNames, c.BastionHostKey, c.GitHub.Refresh, c.BastionEnabled(), c.BastionLimits.RevocationPoll,
					tc.listen, tc.public, tc.names, tc.hostKey, tc.refresh, tc.enabled, tc.revocation)
			}
		})
	}
}

func TestBastionInvalid(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"fail/listen-without-port", minimal + "bastion_listen: bastion\n", "cfg.yaml:7: bastion_listen"},
		{"fail/bad-name", minimal + "bastion_names: [ok.example.org, \"bad name\"]\n", "cfg.yaml:7: bastion_names"},
		{"fail/negative-limit", minimal + "bastion_limits: {max_connections: -1}\n", "cfg.yaml:7: bastion_limits must not be negative"},
		{"fail/negative-startups", minimal + "bastion_limits: {max_startups_per_source: -1}\n", "cfg.yaml:7: bastion_limits must not be negative"},
		{"fail/negative-forwards", minimal + "bastion_limits: {max_forwards_per_user: -1}\n", "cfg.yaml:7: bastion_limits must not be negative"},
		{"fail/stall-too-short", minimal + "bastion_limits: {recording_stall_timeout: 1s}\n", "cfg.yaml:7: bastion_limits.recording_stall_timeout must be at least 5s"},
		{"fail/negative-pending-tunnels", minimal + "bastion_limits: {max_pending_tunnels_per_user: -1}\n", "cfg.yaml:7: bastion_limits must not be negative"},
		{"fail/slow-reauthorization", minimal + "bastion_limits:\n  reauthorize_interval: 2m\n", "cfg.yaml:8: bastion_limits.reauthorize_interval"},
		{"fail/host-cert-ttl", minimal + "bastion_limits: {host_cert_ttl: 1m}\n", "bastion_limits.host_cert_ttl"},
		{"fail/unknown-limit", minimal + "bastion_limits: {max_users: 3}\n", `unknown setting "max_users"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("cfg.yaml", []byte(tc.yaml))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v; want a *config.Error", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q; want %q", err, tc.want)
			}
		})
	}
}

func TestBastionPendingTunnels(t *testing.T) {
	c, err := Parse("cfg.yaml", []byte(minimal+"bastion_limits: {max_pending_tunnels_per_user: 24}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.BastionLimits.MaxPendingTunnelsPerUser; got != 24 {
		t.Fatalf("got max_pending_tunnels_per_user %d; want 24", got)
	}
}
