package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/atomicfile"
	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/store"
)

func runCARevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ca revoke", "", `
Revoke one certificate by serial, or every certificate of a public key (the
key itself is revoked too, so certificates issued for it later are refused),
or stop a person or workload with --identity: the identity is suspended (no
certificate is issued to it, whatever key it brings; the bastion refuses it
and ends its live sessions) until 'sallyport ca lift', and the key of every
certificate the user CA issued to it is revoked (not the one-minute keys of
the bastion's session certificates). --identity takes a numeric GitHub
user ID or github:ID (never a login, which can be renamed), ci:OWNER/NAME
for every GitHub Actions workflow of a repository, or an oidc: identity.
Nobody can suspend themselves on the admin pages; this is the way to
suspend an admin who is the only one.
Afterwards run 'sallyport ca krl' and distribute the KRL to sshd's RevokedKeys.`, stderr)
	dataDir := fs.String("data", "", "data `folder` holding the CA keys and database (required)")
	serial := fs.String("serial", "", "`serial` number of the certificate to revoke")
	keyFile := fs.String("key", "", "public key `file` (USER_KEY.pub) whose certificates to revoke")
	identity := fs.String("identity", "", "`identity` to suspend and revoke everything of, e.g. github:12345")
	reason := fs.String("reason", "", "why, in plain words; recorded in the audit log (required with --identity)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return fmt.Errorf("ca revoke: %w", err)
	}
	given := 0
	for _, f := range []string{*serial, *keyFile, *identity} {
		if f != "" {
			given++
		}
	}
	if given != 1 {
		return fmt.Errorf("ca revoke: give exactly one of --serial, --key or --identity")
	}
	if *identity != "" {
		return revokeIdentity(ctx, *dataDir, *identity, *reason, stdout)
	}
	var n uint64
	var key ssh.PublicKey
	if *serial != "" {
		n, err = strconv.ParseUint(*serial, 10, 64)
		if err != nil || n == 0 {
			return fmt.Errorf("ca revoke: --serial %q is not a serial number (a positive integer)", *serial)
		}
	} else {
		key, err = readPublicKey(*keyFile)
		if err != nil {
			return fmt.Errorf("ca revoke: %w", err)
		}
	}
	_, st, err := openAuthority(ctx, *dataDir)
	if err != nil {
		return fmt.Errorf("ca revoke: %w", err)
	}
	defer st.Close()
	if err := st.Revoke(ctx, storeRevocation(n, key, *reason)); err != nil {
		return fmt.Errorf("ca revoke: %w", err)
	}
	if key != nil {
		fmt.Fprintf(stdout, "revoked key %s and its certificates\n", ssh.FingerprintSHA256(key))
	} else {
		fmt.Fprintf(stdout, "revoked serial %d\n", n)
	}
	return nil
}

// revokeIdentity suspends identity and revokes the key of every
// certificate the user CA issued to it. The suspension comes first, so
// that no certificate can be issued between the revocations and it.
func revokeIdentity(ctx context.Context, dataDir, identity, reason string, stdout io.Writer) error {
	subject, err := store.ParseSuspensionSubject(identity)
	if err != nil {
		return fmt.Errorf("ca revoke: --identity %w", err)
	}
	if strings.TrimSpace(reason) == "" {
		return fmt.Errorf("ca revoke: --reason is required with --identity: it is kept with the suspension and shown to whoever is refused")
	}
	// The identity certificates are recorded under: a bare number is a
	// GitHub user; a repository's workloads each have their own.
	recorded := strings.TrimSpace(identity)
	if strings.HasPrefix(subject, "github:") {
		recorded = subject
	}
	if dataDir == "" {
		return fmt.Errorf("ca revoke: --data is required")
	}
	st, err := openStore(ctx, dataDir)
	if err != nil {
		return fmt.Errorf("ca revoke: %w", err)
	}
	defer st.Close()
	sp, fresh, err := st.Suspend(ctx, store.Suspension{Subject: subject, Reason: reason, Actor: offlineActor()})
	if err != nil {
		return fmt.Errorf("ca revoke: %w", err)
	}
	if fresh {
		fmt.Fprintf(stdout, "suspended %s: no certificate is issued to it and the bastion refuses it until 'sallyport ca lift --identity %s'\n", sp.Describe(), sp.Subject)
	} else {
		fmt.Fprintf(stdout, "%s was already suspended since %s by %s (%q)\n", sp.Describe(), sp.Time.UTC().Format(time.RFC3339), sp.Actor, sp.Reason)
	}
	if strings.HasPrefix(recorded, store.CISubjectPrefix) {
		// No certificate is recorded under ci:OWNER/NAME: each of the
		// repository's workloads has its own identity.
		fmt.Fprintln(stdout, "no key is revoked: GitHub Actions certificates are short-lived, and the bastion refuses every certificate of a suspended repository at once")
		return nil
	}
	// The bastion's session certificates, recorded under the identity of
	// whoever connected, are told apart by their CA; its public key is
	// there even when the CA keys are sealed. Without it their keys are
	// revoked too, which is harmless: the suspension must not wait.
	var sessionCA string
	if pub, err := readAnyPublicKey(filepath.Join(dataDir, ca.KindSession.FileName()+".pub")); err != nil {
		fmt.Fprintf(stdout, "the session CA's public key cannot be read (%v): the keys of the bastion's session certificates are revoked too\n", err)
	} else {
		sessionCA = ssh.FingerprintSHA256(pub)
	}
	done, err := st.RevokeIdentity(ctx, recorded, sessionCA, reason+" (everything of "+recorded+")", offlineActor())
	if err != nil {
		return fmt.Errorf("ca revoke: %w", err)
	}
	if done.Certificates == 0 {
		fmt.Fprintf(stdout, "the user CA never issued a certificate to %s\n", recorded)
	} else {
		fmt.Fprintf(stdout, "revoked %d keys of %s and with them all %d certificates the user CA issued to it\n", done.Keys, recorded, done.Certificates)
	}
	if done.Sessions > 0 {
		fmt.Fprintf(stdout, "left the bastion's %d session certificates for its connections as they are: each certifies a one-minute key of the bastion's own\n", done.Sessions)
	}
	return nil
}

func runCAKRL(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ca krl", "", `
Write every revocation in the store as an OpenSSH key revocation list, for
sshd's RevokedKeys and 'ssh-keygen -Q'. The file is replaced atomically.`, stderr)
	dataDir := fs.String("data", "", "data `folder` holding the CA keys and database (required)")
	out := fs.String("out", "", "`file` to write the KRL to (required)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return fmt.Errorf("ca krl: %w", err)
	}
	if *out == "" {
		return fmt.Errorf("ca krl: --out is required")
	}
	a, st, err := openAuthority(ctx, *dataDir)
	if err != nil {
		return fmt.Errorf("ca krl: %w", err)
	}
	defer st.Close()
	revs, err := st.Revocations(ctx)
	if err != nil {
		return fmt.Errorf("ca krl: %w", err)
	}
	krl := buildKRL(a, revs)
	data, err := krl.Marshal()
	if err != nil {
		return fmt.Errorf("ca krl: %w", err)
	}
	if err := atomicfile.Write(*out, data, 0o644); err != nil {
		return fmt.Errorf("ca krl: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s: %d revocations\n", *out, len(revs))
	return nil
}

// buildKRL turns the store's revocations into a KRL. Its version is the
// generation time in seconds, which increases with every list written.
func buildKRL(a *ca.Authority, revs []store.Revocation) *ca.KRL {
	var serials []uint64
	var keys []ssh.PublicKey
	for _, r := range revs {
		if r.Serial != 0 {
			serials = append(serials, r.Serial)
		}
		if r.Key != nil {
			keys = append(keys, r.Key)
		}
	}
	return a.RevocationList(uint64(time.Now().Unix()), serials, keys)
}

// storeRevocation builds the store's record of an offline revocation.
func storeRevocation(serial uint64, key ssh.PublicKey, reason string) store.Revocation {
	return store.Revocation{Serial: serial, Key: key, Reason: reason, Actor: offlineActor()}
}
