package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/trust"
)

func runBreakGlass(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return subcommands(ctx, "breakglass", map[string]command{
		"request": {"write an emergency certificate request for an admin to sign", runBreakGlassRequest},
	}, args, stdout, stderr)
}

func runBreakGlassRequest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("breakglass request", "", `
Write a break-glass request for when GitHub sign-in is unavailable: an
emergency certificate for one principal on one host, for at most an hour.
An admin reads it and signs it with plain 'gpg --clearsign'; then
'sallyport ca breakglass' (offline, on the CA's machine) or the server's
break-glass endpoint turns it into a certificate. A request must be used
within 15 minutes and is accepted once.`, stderr)
	principal := fs.String("principal", "", "user `name` on the target (required)")
	host := fs.String("host", "", "target `host` the certificate is for (required)")
	reason := fs.String("reason", "", "why, in plain words; recorded in the audit log (required)")
	keyPath := fs.String("key", "", "SSH public key `file` to certify (required)")
	ttl := fs.Duration("ttl", trust.MaxBreakGlassTTL, "certificate `lifetime`, at most 1h")
	out := fs.String("out", "", "write the request to this `file` instead of standard output")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	if *principal == "" || *host == "" || *reason == "" || *keyPath == "" {
		return errors.New("breakglass request: --principal, --host, --reason and --key are required")
	}
	pub, err := readPublicKey(*keyPath)
	if err != nil {
		return fmt.Errorf("breakglass request: %w", err)
	}
	req, err := trust.NewRequest(*principal, *host, *reason, *ttl, pub, time.Now())
	if err != nil {
		return fmt.Errorf("breakglass request: %w", err)
	}
	text := req.Marshal()
	dest := "the request above"
	if *out == "" {
		if _, err := stdout.Write(text); err != nil {
			return err
		}
	} else {
		f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return fmt.Errorf("breakglass request: %w", err)
		}
		if _, err := f.Write(text); err != nil {
			f.Close()
			return fmt.Errorf("breakglass request: %w", err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("breakglass request: %w", err)
		}
		dest = *out
	}
	signed := "REQUEST.asc"
	if *out != "" {
		signed = *out + ".asc"
	}
	fmt.Fprintf(stderr, `Break-glass request %s (key %s) is valid until %s.
Send %s to an admin. The admin reads it and signs it with:
  gpg --clearsign %s
which writes %s. Then, on the CA's machine:
  sallyport ca breakglass --data DATA %s
or POST %s to the server's break-glass endpoint.
`, req.ID, ssh.FingerprintSHA256(pub), req.Created.Add(trust.MaxRequestAge).Format(time.RFC3339), dest,
		orDefault(*out, "REQUEST"), signed, signed, signed)
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func runCABreakGlass(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ca breakglass", "SIGNED_REQUEST", `
Turn a break-glass request clear-signed by an admin ('gpg --clearsign') into
a user certificate of at most one hour, offline, and print it. Refused if
the signature is not an admin's (per the trust folder, now), the request is
more than 15 minutes old, or it was used before. Every attempt is audited.`, stderr)
	dataDir := fs.String("data", "", "data `folder` holding the CA keys (required)")
	tf := addTrustFlags(fs, true)
	signers := fs.Int("signers", 1, "distinct admins that must have signed the request")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return fmt.Errorf("ca breakglass: want exactly one SIGNED_REQUEST argument, got %d", len(rest))
	}
	if *tf.dir == "" {
		*tf.dir = dataTrustDir(*dataDir)
	}
	signed, err := os.ReadFile(rest[0])
	if err != nil {
		return fmt.Errorf("ca breakglass: %w", err)
	}
	if err := checkUnsealed(*dataDir); err != nil {
		return fmt.Errorf("ca breakglass: %w", err)
	}
	admins, err := tf.admins()
	if err != nil {
		return fmt.Errorf("ca breakglass: %w", err)
	}
	a, st, err := openAuthority(ctx, *dataDir)
	if err != nil {
		return fmt.Errorf("ca breakglass: %w", err)
	}
	defer st.Close()
	bg := &trust.BreakGlass{
		Admins: admins, Authority: a, Ledger: st, Audit: st,
		Options: trust.BreakGlassOptions{Signers: *signers}, Actor: offlineActor(),
	}
	cert, vr, err := bg.Issue(ctx, signed)
	if err != nil {
		return fmt.Errorf("ca breakglass: %w", err)
	}
	var by []string
	for _, s := range vr.Signers() {
		by = append(by, s.String())
	}
	fmt.Fprintf(stderr, `
!!! BREAK-GLASS CERTIFICATE ISSUED !!!
  serial %d, key ID %q
  principal %s on host %s, valid until %s
  request %s, signed by %s
  reason: %s
This is recorded in the audit log. Tell the other admins now.

`, cert.Serial, cert.KeyId, vr.Principal, vr.Host, time.Unix(int64(cert.ValidBefore), 0).UTC().Format(time.RFC3339),
		vr.ID, strings.Join(by, ", "), vr.Reason)
	_, err = stdout.Write(ssh.MarshalAuthorizedKey(cert))
	return err
}
