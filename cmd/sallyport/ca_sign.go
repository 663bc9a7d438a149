package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/ca"
)

// Ceilings for offline signing. Offline user certificates are for tests and
// break-glass; host certificates are renewed yearly by default.
const (
	maxOfflineUserTTL = 24 * time.Hour
	maxHostTTL        = 5 * 8760 * time.Hour
)

func runCASignUser(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ca sign-user", "USER_KEY.pub", `
Sign a user certificate with the user CA, without the web server, record it
in the store and print it in authorized_keys format. For tests and
break-glass; people normally get certificates with 'sallyport login'.`, stderr)
	dataDir := fs.String("data", "", "data `folder` holding the CA keys (required)")
	var principals, sources stringList
	fs.Var(&principals, "principal", "user `name` the certificate is valid for (repeat for several; at least one)")
	ttl := fs.Duration("ttl", time.Hour, fmt.Sprintf("certificate `lifetime`, at most %s", maxOfflineUserTTL))
	keyID := fs.String("key-id", "", "`ID` naming the person, e.g. \"alice github:1234\"; the serial is appended (required)")
	permit := fs.String("permit", "", "comma-separated `permissions`: pty, port-forwarding, agent-forwarding, x11-forwarding, user-rc (default none)")
	fs.Var(&sources, "source-address", "`CIDR` the certificate may be used from (repeat for several; default anywhere)")
	forceCommand := fs.String("force-command", "", "`command` forced on every session (default none)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return fmt.Errorf("ca sign-user: want exactly one USER_KEY.pub argument, got %d", len(rest))
	}
	perms, err := ca.ParsePermissions(*permit)
	if err != nil {
		return fmt.Errorf("ca sign-user: --permit: %w", err)
	}
	var prefixes []netip.Prefix
	for _, s := range sources {
		p, err := ca.ParseSourceAddress(s)
		if err != nil {
			return fmt.Errorf("ca sign-user: --source-address: %w", err)
		}
		prefixes = append(prefixes, p)
	}
	pub, err := readPublicKey(rest[0])
	if err != nil {
		return fmt.Errorf("ca sign-user: %w", err)
	}
	a, st, err := openAuthority(ctx, *dataDir)
	if err != nil {
		return fmt.Errorf("ca sign-user: %w", err)
	}
	defer st.Close()
	cert, err := a.IssueUser(ctx, ca.UserRequest{
		PublicKey:       pub,
		Principals:      principals,
		TTL:             *ttl,
		MaxTTL:          maxOfflineUserTTL,
		Permissions:     perms,
		SourceAddresses: prefixes,
		ForceCommand:    *forceCommand,
		KeyID:           *keyID,
		Identity:        "offline:" + *keyID,
	})
	if err != nil {
		return refused(ctx, st, "ca sign-user", *keyID, pub, err)
	}
	_, err = stdout.Write(ssh.MarshalAuthorizedKey(cert))
	return err
}

func runCASignHost(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ca sign-host", "HOST_KEY.pub", `
Sign a host key with the host CA and print the certificate line; install it
on the host as HostCertificate in sshd_config. Users with the host CA's
@cert-authority line then connect without a host-key prompt.`, stderr)
	dataDir := fs.String("data", "", "data `folder` holding the CA keys (required)")
	var hostnames stringList
	fs.Var(&hostnames, "hostname", "`name` or IP address the host is reached by (repeat for several; at least one)")
	ttl := fs.Duration("ttl", 8760*time.Hour, fmt.Sprintf("certificate `lifetime`, at most %s", maxHostTTL))
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return fmt.Errorf("ca sign-host: want exactly one HOST_KEY.pub argument, got %d", len(rest))
	}
	pub, err := readPublicKey(rest[0])
	if err != nil {
		return fmt.Errorf("ca sign-host: %w", err)
	}
	a, st, err := openAuthority(ctx, *dataDir)
	if err != nil {
		return fmt.Errorf("ca sign-host: %w", err)
	}
	defer st.Close()
	cert, err := a.IssueHost(ctx, ca.HostRequest{PublicKey: pub, Hostnames: hostnames, TTL: *ttl, MaxTTL: maxHostTTL})
	if err != nil {
		return refused(ctx, st, "ca sign-host", fmt.Sprint(hostnames), pub, err)
	}
	_, err = stdout.Write(ssh.MarshalAuthorizedKey(cert))
	return err
}

// refused audits a refused signing request and returns its error. Failures
// of the store itself are returned as they are, not audited again.
func refused(ctx context.Context, st *dataStore, cmd, subject string, pub ssh.PublicKey, cause error) error {
	ev := audit.Event{
		Type: audit.TypeRefuse, Actor: offlineActor(), Subject: subject, Outcome: audit.OutcomeDenied,
		Reason: cause.Error(), Fields: map[string]string{"key": ssh.FingerprintSHA256(pub), "command": cmd},
	}
	if err := st.Audit(ctx, ev); err != nil {
		return errors.Join(fmt.Errorf("%s: %w", cmd, cause), err)
	}
	return fmt.Errorf("%s: %w", cmd, cause)
}
