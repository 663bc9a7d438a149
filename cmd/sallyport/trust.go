package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sallyport/sallyport/trust"
)

func runTrust(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return subcommands(ctx, "trust", map[string]command{
		"init":   {"create a trust folder pinning the root admin keys", runTrustInit},
		"add":    {"add or update admin candidates' public keys", runTrustAdd},
		"admins": {"list the admins, who certified them, and rejected keys", runTrustAdmins},
		"verify": {"check detached admin signatures over a file", runTrustVerify},
	}, args, stdout, stderr)
}

// trustFlags are the flags naming a trust folder and its threshold.
type trustFlags struct {
	dir       *string
	threshold *int
}

// addTrustFlags adds -trust and -threshold to fs. dataDefault says the
// command defaults the trust folder to DATA/trust (see dataTrustDir);
// otherwise -trust is required.
func addTrustFlags(fs *flag.FlagSet, dataDefault bool) trustFlags {
	usage := "trust `folder` holding the roots file and keys/ (required)"
	if dataDefault {
		usage = "trust `folder` holding the roots file and keys/ (default DATA/trust)"
	}
	return trustFlags{
		dir: fs.String("trust", "", usage),
		threshold: fs.Int("threshold", trust.DefaultThreshold,
			"distinct admins whose certifications admit a key; must match trust threshold of the server configuration"),
	}
}

// admins loads the trust folder and computes the admin set now.
func (tf trustFlags) admins() (*trust.Admins, error) {
	if *tf.dir == "" {
		return nil, errors.New("--trust is required")
	}
	if *tf.threshold < 1 {
		return nil, fmt.Errorf("--threshold %d: at least 1", *tf.threshold)
	}
	return trust.Load(*tf.dir, trust.Options{Threshold: *tf.threshold, Now: time.Now()})
}

// dataTrustDir is the default trust folder of a data folder.
func dataTrustDir(dataDir string) string {
	if dataDir == "" {
		return ""
	}
	return filepath.Join(dataDir, "trust")
}

func runTrustInit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("trust init", "", `
Create a trust folder: a roots file pinning the full fingerprints of the
root admin keys, and an empty keys/ folder. Add the roots' public keys with
'sallyport trust add'. Short and long key IDs are refused: only full
fingerprints (gpg --fingerprint) are anchors.`, stderr)
	dir := fs.String("trust", "", "trust `folder` to create (required)")
	roots := fs.String("roots", "", "comma-separated full `fingerprints` of the root admin keys (required)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	if *dir == "" || *roots == "" {
		return errors.New("trust init: --trust and --roots are required")
	}
	var fprs []trust.Fingerprint
	for _, r := range strings.Split(*roots, ",") {
		fpr, err := trust.ParseFingerprint(r)
		if err != nil {
			return fmt.Errorf("trust init: --roots: %w", err)
		}
		fprs = append(fprs, fpr)
	}
	if err := trust.InitFolder(*dir, fprs); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created trust folder %s with %d root(s)\n", *dir, len(fprs))
	for _, f := range fprs {
		fmt.Fprintf(stdout, "  root %s\n", f)
	}
	fmt.Fprintf(stdout, "next: gpg --export --armor FINGERPRINT > key.asc && sallyport trust add --trust %s key.asc\n", *dir)
	return nil
}

func runTrustAdd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("trust add", "KEY.asc...", `
Add public keys, as 'gpg --export --armor' writes them, to the trust folder,
merging new user IDs, subkeys and certifications into keys already there.
Adding a key does not make it an admin: certifications by enough admins do.
Run 'sallyport trust admins' to see the result.`, stderr)
	dir := fs.String("trust", "", "trust `folder` (required)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("trust add: --trust is required")
	}
	if len(rest) == 0 {
		return errors.New("trust add: want at least one KEY.asc argument")
	}
	for _, p := range rest {
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("trust add: %w", err)
		}
		added, err := trust.AddKeys(*dir, data)
		if err != nil {
			return fmt.Errorf("trust add: %s: %w", p, err)
		}
		for _, k := range added {
			state := "updated"
			if k.New {
				state = "added"
			}
			fmt.Fprintf(stdout, "%s %s %s\n", state, k.Fingerprint, strings.Join(k.UserIDs, "; "))
		}
	}
	return nil
}

func runTrustAdmins(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("trust admins", "", `
List the admins computed from the trust folder now: each admin key with its
GitHub account and who certified it, then every key that is not an admin
with the reason.`, stderr)
	tf := addTrustFlags(fs, false)
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	a, err := tf.admins()
	if err != nil {
		return fmt.Errorf("trust admins: %w", err)
	}
	printAdmins(stdout, a)
	return nil
}

func printAdmins(w io.Writer, a *trust.Admins) {
	list := a.List()
	fmt.Fprintf(w, "%d admin(s), threshold %d, at %s:\n", len(list), a.Threshold(), a.Now().UTC().Format(time.RFC3339))
	names := map[trust.Fingerprint]string{}
	for _, ad := range list {
		names[ad.Fingerprint] = ad.GitHub.String()
	}
	describe := func(fprs []trust.Fingerprint) string {
		var parts []string
		for _, f := range fprs {
			if n, ok := names[f]; ok {
				parts = append(parts, n+" ("+f.Short()+")")
			} else {
				parts = append(parts, string(f))
			}
		}
		return strings.Join(parts, ", ")
	}
	for _, ad := range list {
		how := "root"
		if !ad.Root {
			how = fmt.Sprintf("round %d, certified by %s", ad.Round, describe(ad.CertifiedBy))
		}
		fmt.Fprintf(w, "  %s  %s  %s\n      %s\n", ad.GitHub, ad.Fingerprint, how, ad.UserID)
	}
	rej := a.Rejected()
	if len(rej) == 0 {
		return
	}
	fmt.Fprintf(w, "%d key(s) not admitted:\n", len(rej))
	for _, r := range rej {
		what := strings.Join(r.UserIDs, "; ")
		if r.Root {
			what = "root " + what
		}
		fmt.Fprintf(w, "  %s  %s\n      %s", r.Fingerprint, strings.TrimSpace(what), r.Reason)
		if len(r.CertifiedBy) > 0 {
			fmt.Fprintf(w, " (certified by %s)", describe(r.CertifiedBy))
		}
		fmt.Fprintln(w)
	}
}

func runTrustVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("trust verify", "FILE SIG.asc...", `
Check detached signatures (gpg --detach-sign [--armor]) over the exact bytes
of FILE, and succeed only if at least --required distinct admins signed.
Inline-signed, clear-signed and text-mode signatures are refused. Without
SIG arguments, FILE.asc and FILE.*.asc are read.`, stderr)
	tf := addTrustFlags(fs, false)
	required := fs.Int("required", 1, "distinct admins that must have signed")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return errors.New("trust verify: want FILE [SIG.asc...]")
	}
	a, err := tf.admins()
	if err != nil {
		return fmt.Errorf("trust verify: %w", err)
	}
	data, err := os.ReadFile(rest[0])
	if err != nil {
		return fmt.Errorf("trust verify: %w", err)
	}
	var sigs [][]byte
	if len(rest) == 1 {
		if sigs, err = trust.ReadSignatureFiles(rest[0]); err != nil {
			return fmt.Errorf("trust verify: %w", err)
		}
	}
	for _, p := range rest[1:] {
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("trust verify: %w", err)
		}
		sigs = append(sigs, b)
	}
	v, err := a.VerifyPolicy(data, sigs, trust.PolicyOptions{Required: *required})
	for _, s := range v.Valid {
		fmt.Fprintf(stdout, "good signature by admin %s, key %s, made %s\n", s.Admin.GitHub, s.KeyFingerprint, s.Created.UTC().Format(time.RFC3339))
	}
	for _, r := range v.Refused {
		fmt.Fprintf(stdout, "refused signature by %s: %s\n", r.Issuer, r.Reason)
	}
	if err != nil {
		return fmt.Errorf("trust verify: %s: %w", rest[0], err)
	}
	fmt.Fprintf(stdout, "%s: signed by %d distinct admin(s), %d required: OK\n", rest[0], len(v.Signers()), *required)
	return nil
}
