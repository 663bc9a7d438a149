package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/sallyport/sallyport/web"
)

func runSSHConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ssh-config", "", `
Print the ssh_config block that reaches every host of the policy through the
bastion (ProxyJump), and the @cert-authority line for known_hosts, as the
server describes them.`, stderr)
	server := fs.String("server", "", "Sallyport server `URL` (required)")
	keyPath := fs.String("key", "", "private key `file` the config should use (default ~/.ssh/sallyport)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	base, err := serverURL(*server)
	if err != nil {
		return fmt.Errorf("ssh-config: %w", err)
	}
	u := base.JoinPath("/api/v1/ssh-config")
	if *keyPath != "" {
		u.RawQuery = url.Values{"identity_file": {*keyPath}}.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("ssh-config: %w", err)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("ssh-config: %w", transportError(base, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ssh-config: server answered %s", resp.Status)
	}
	var c web.SSHConfig
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&c); err != nil {
		return fmt.Errorf("ssh-config: %w", err)
	}
	fmt.Fprintf(stdout, "# Add to ~/.ssh/config:\n%s", c.Config)
	if c.KnownHosts != "" {
		fmt.Fprintf(stdout, "\n# Add to ~/.ssh/known_hosts:\n%s", c.KnownHosts)
	}
	return nil
}
