package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/trust"
)

func runCASeal(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ca seal", "", `
Encrypt the CA private keys at rest to every admin's PGP key (per the trust
folder, now). Each key file then holds an OpenPGP message; nothing can sign
with it, and the server refuses to start, until an admin runs 'sallyport ca
unseal'. Sealing does not wipe earlier copies (backups, snapshots, the
disk's free blocks).`, stderr)
	dataDir := fs.String("data", "", "data `folder` holding the CA keys (required)")
	tf := addTrustFlags(fs, true)
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	if *dataDir == "" {
		return errors.New("ca seal: --data is required")
	}
	if *tf.dir == "" {
		*tf.dir = dataTrustDir(*dataDir)
	}
	admins, err := tf.admins()
	if err != nil {
		return fmt.Errorf("ca seal: %w", err)
	}
	st, err := openStore(ctx, *dataDir)
	if err != nil {
		return fmt.Errorf("ca seal: %w", err)
	}
	defer st.Close()
	sealed, recips, err := trust.SealKeys(*dataDir, admins)
	for _, k := range sealed {
		ev := audit.Event{Type: "ca.seal", Actor: offlineActor(), Subject: k.String() + " CA", Outcome: audit.OutcomeOK,
			Fields: map[string]string{"recipients": recipientList(recips)}}
		if aerr := st.Audit(ctx, ev); aerr != nil {
			err = errors.Join(err, aerr)
		}
	}
	if err != nil {
		return fmt.Errorf("ca seal: %w", err)
	}
	if len(sealed) == 0 {
		fmt.Fprintln(stdout, "all CA keys were already sealed")
		return nil
	}
	for _, k := range sealed {
		fmt.Fprintf(stdout, "sealed the %s CA key\n", k)
	}
	fmt.Fprintf(stdout, "encrypted to %s\nthe server will not start until an admin runs: sallyport ca unseal --data %s --key SECRET.asc\n",
		recipientList(recips), *dataDir)
	return nil
}

func recipientList(rs []trust.Recipient) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, r.Admin.GitHub.String()+" ("+string(r.Admin.Fingerprint)+")")
	}
	return strings.Join(parts, ", ")
}

func runCAUnseal(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ca unseal", "", `
Decrypt sealed CA keys with one admin's PGP secret key (exported with 'gpg
--export-secret-keys --armor'), check each against its .pub file, and write
it back with mode 0600 so the server can start.`, stderr)
	dataDir := fs.String("data", "", "data `folder` holding the sealed CA keys (required)")
	sk := addSecretKeyFlags(fs)
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	if *dataDir == "" {
		return errors.New("ca unseal: --data is required")
	}
	key, err := sk.load()
	if err != nil {
		return fmt.Errorf("ca unseal: %w", err)
	}
	st, err := openStore(ctx, *dataDir)
	if err != nil {
		return fmt.Errorf("ca unseal: %w", err)
	}
	defer st.Close()
	done, err := trust.UnsealKeys(*dataDir, key)
	for _, k := range done {
		ev := audit.Event{Type: "ca.unseal", Actor: offlineActor(), Subject: k.String() + " CA", Outcome: audit.OutcomeOK,
			Fields: map[string]string{"pgp_key": string(key.Fingerprint())}}
		if aerr := st.Audit(ctx, ev); aerr != nil {
			err = errors.Join(err, aerr)
		}
	}
	if err != nil {
		return fmt.Errorf("ca unseal: %w", err)
	}
	for _, k := range done {
		fmt.Fprintf(stdout, "unsealed the %s CA key\n", k)
	}
	return nil
}

// secretKeyFlags name an admin's PGP secret key file and its passphrase.
type secretKeyFlags struct {
	key, passphraseFile *string
}

func addSecretKeyFlags(fs *flag.FlagSet) secretKeyFlags {
	return secretKeyFlags{
		key:            fs.String("key", "", "an admin's PGP secret key `file` (gpg --export-secret-keys --armor FPR) (required)"),
		passphraseFile: fs.String("passphrase-file", "", "`file` holding the secret key's passphrase, if it has one"),
	}
}

func (f secretKeyFlags) load() (*trust.SecretKey, error) {
	if *f.key == "" {
		return nil, errors.New("--key is required")
	}
	data, err := os.ReadFile(*f.key)
	if err != nil {
		return nil, err
	}
	var pass []byte
	if *f.passphraseFile != "" {
		if pass, err = os.ReadFile(*f.passphraseFile); err != nil {
			return nil, err
		}
		pass = []byte(strings.TrimRight(string(pass), "\r\n"))
	}
	return trust.ReadSecretKey(data, pass)
}

// checkUnsealed explains a sealed data folder before anything tries to
// load its keys.
func checkUnsealed(dataDir string) error {
	if dataDir == "" {
		return errors.New("--data is required")
	}
	return ca.CheckUnsealed(dataDir)
}
