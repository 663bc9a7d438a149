package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/atomicfile"
	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/store"
)

func runCARevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ca revoke", "", `
Revoke one certificate by serial, or every certificate of a public key (the
key itself is revoked too, so certificates issued for it later are refused).
Afterwards run 'sallyport ca krl' and distribute the KRL to sshd's RevokedKeys.`, stderr)
	dataDir := fs.String("data", "", "data `folder` holding the CA keys and database (required)")
	serial := fs.String("serial", "", "`serial` number of the certificate to revoke")
	keyFile := fs.String("key", "", "public key `file` (USER_KEY.pub) whose certificates to revoke")
	reason := fs.String("reason", "", "why, in plain words; recorded in the audit log")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return fmt.Errorf("ca revoke: %w", err)
	}
	if (*serial == "") == (*keyFile == "") {
		return fmt.Errorf("ca revoke: give exactly one of --serial or --key")
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
