package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"time"

	"github.com/sallyport/sallyport/ca"
)

// BastionOff as BastionListen runs no bastion (for a deployment whose
// bastion runs elsewhere).
const BastionOff = "off"

// BastionServer configures the SSH bastion `sallyport serve` runs beside the
// web server. Its keys sit at the top level of the configuration file.
type BastionServer struct {
	// BastionListen is the TCP address the bastion listens on; empty means
	// ":2222", BastionOff means no bastion. The bastion needs
	// github.org_token: it decides by each person's current teams.
	BastionListen string `yaml:"bastion_listen"`
	// BastionNames are the names users reach the bastion by: the
	// principals of the host certificate it presents (issued by the host
	// CA, renewed at half its lifetime). Empty means the host of
	// `bastion`, which itself defaults to base_url's host and
	// bastion_listen's port.
	BastionNames []string `yaml:"bastion_names"`
	// BastionHostKey is the bastion's host private key (OpenSSH format,
	// mode 0600); empty means DATA/bastion_host_key. A missing file is
	// generated (ed25519) at the first start and kept from then on; one
	// others can read is refused.
	BastionHostKey string `yaml:"bastion_host_key"`
	// BastionLimits bound what users can hold open. Zero means the
	// default named on each field.
	BastionLimits BastionLimits `yaml:"bastion_limits"`
}

// BastionLimits are the bastion's timeouts and limits.
type BastionLimits struct {
	// HandshakeTimeout bounds key exchange and authentication (default
	// 30s).
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// IdleTimeout ends a connection that opened no session or forward and
	// moved no data through one for this long (default 30m).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxConnections bounds concurrent connections (default 1000).
	MaxConnections int `yaml:"max_connections"`
	// MaxStartups bounds connections in their handshake (default 128); as
	// many more may wait for a slot.
	MaxStartups int `yaml:"max_startups"`
	// MaxStartupsPerSource bounds those from one IPv4 address or IPv6 /64
	// (default 32).
	MaxStartupsPerSource int `yaml:"max_startups_per_source"`
	// MaxChannelsPerConnection bounds sessions, forwards and ProxyJump
	// tunnels on one connection (default 32).
	MaxChannelsPerConnection int `yaml:"max_channels_per_connection"`
	// MaxSessionsPerUser bounds one person's concurrent sessions across
	// connections (default 64).
	MaxSessionsPerUser int `yaml:"max_sessions_per_user"`
	// MaxForwardsPerUser bounds one person's concurrent port forwards
	// across connections (default 64).
	MaxForwardsPerUser int `yaml:"max_forwards_per_user"`
	// MaxConnectionsPerUser bounds one person's authenticated connections
	// (default 128); the login through a ProxyJump tunnel is not counted
	// again, only the jump connection, but a person's logins through
	// ProxyJump are bounded by the same number apart.
	MaxConnectionsPerUser int `yaml:"max_connections_per_user"`
	// MaxPendingTunnelsPerUser bounds one person's ProxyJump tunnels
	// whose login has not succeeded yet, across connections (default 64);
	// more wait for a slot, up to handshake_timeout.
	MaxPendingTunnelsPerUser int `yaml:"max_pending_tunnels_per_user"`
	// ReauthorizeInterval is how often every live session is checked
	// against the policy, teams and revocations even without a change
	// being noticed (default 30s, at most 1m).
	ReauthorizeInterval time.Duration `yaml:"reauthorize_interval"`
	// RevocationPoll is how often the store is read for revocations made
	// by another process (`sallyport ca revoke`, another replica); live
	// sessions they concern end at once (default 5s).
	RevocationPoll time.Duration `yaml:"revocation_poll"`
	// HostCertTTL is the lifetime of the bastion's host certificates
	// (default 24h, at most 720h).
	HostCertTTL time.Duration `yaml:"host_cert_ttl"`
	// RecordingStallTimeout is how long a recording's disk may take to
	// answer a write or fsync before the recording fails and its session
	// ends (default 1m, at least 5s).
	RecordingStallTimeout time.Duration `yaml:"recording_stall_timeout"`
}

// BastionEnabled reports whether serve runs the bastion.
func (c *Config) BastionEnabled() bool { return c.BastionListen != BastionOff }

func (c *Config) validateBastion(v *validator) {
	if c.BastionListen != "" && c.BastionListen != BastionOff {
		if _, _, err := net.SplitHostPort(c.BastionListen); err != nil {
			v.errorf("bastion_listen", "bastion_listen %q: want [host]:port or %q", c.BastionListen, BastionOff)
		}
	}
	for i, n := range c.BastionNames {
		if err := ca.ValidateHostname(n); err != nil {
			v.errorf(fmt.Sprintf("bastion_names[%d]", i), "bastion_names: %v", err)
		}
	}
	l := c.BastionLimits
	if l.HandshakeTimeout < 0 || l.IdleTimeout < 0 || l.ReauthorizeInterval < 0 || l.RevocationPoll < 0 || l.HostCertTTL < 0 || l.RecordingStallTimeout < 0 ||
		l.MaxConnections < 0 || l.MaxStartups < 0 || l.MaxStartupsPerSource < 0 || l.MaxChannelsPerConnection < 0 || l.MaxSessionsPerUser < 0 || l.MaxForwardsPerUser < 0 || l.MaxConnectionsPerUser < 0 ||
		l.MaxPendingTunnelsPerUser < 0 {
		v.errorf("bastion_limits", "bastion_limits must not be negative")
	}
	if l.ReauthorizeInterval > time.Minute {
		v.errorf("bastion_limits.reauthorize_interval", "bastion_limits.reauthorize_interval must be at most 1m (sessions no longer allowed end within a minute)")
	}
	if l.RecordingStallTimeout != 0 && l.RecordingStallTimeout < 5*time.Second {
		v.errorf("bastion_limits.recording_stall_timeout", "bastion_limits.recording_stall_timeout must be at least 5s (a disk busy for a moment must not end every session)")
	}
	if l.HostCertTTL != 0 && (l.HostCertTTL < 10*time.Minute || l.HostCertTTL > 720*time.Hour) {
		v.errorf("bastion_limits.host_cert_ttl", "bastion_limits.host_cert_ttl must be between 10m and 720h")
	}
}

// resolveBastion fills in the bastion's defaults; it runs before the other
// defaults, with paths already absolute.
func (c *Config) resolveBastion() {
	if c.BastionListen == "" {
		c.BastionListen = ":2222"
	}
	if c.BastionHostKey == "" && c.Data != "" {
		c.BastionHostKey = filepath.Join(c.Data, "bastion_host_key")
	}
	if !c.BastionEnabled() {
		return
	}
	if c.Bastion == "" {
		if u, err := url.Parse(c.BaseURL); err == nil {
			_, port, _ := net.SplitHostPort(c.BastionListen)
			c.Bastion = net.JoinHostPort(u.Hostname(), port)
		}
	}
	if len(c.BastionNames) == 0 {
		if h, _, err := net.SplitHostPort(c.Bastion); err == nil && h != "" {
			c.BastionNames = []string{h}
		}
	}
	// Team changes must reach the bastion's live sessions within a minute
	// even without webhooks.
	if c.GitHub.Refresh == 0 {
		c.GitHub.Refresh = time.Minute
	}
	if c.BastionLimits.RevocationPoll == 0 {
		c.BastionLimits.RevocationPoll = 5 * time.Second
	}
}
