package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sallyport/sallyport/store"
)

func runCALift(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ca lift", "", `
Lift the suspension of an identity ('sallyport ca revoke --identity' or the
admin page's "revoke everything of a user" made it): certificates are issued
to it again and the bastion lets it in. Keys revoked with the suspension
stay revoked; the person signs in again with a new key.`, stderr)
	dataDir := fs.String("data", "", "data `folder` holding the database (required)")
	identity := fs.String("identity", "", "suspended `identity`: github:ID, a numeric GitHub user ID, ci:OWNER/NAME or an oidc: identity (required)")
	reason := fs.String("reason", "", "why it is safe again, in plain words; recorded in the audit log (required)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return fmt.Errorf("ca lift: %w", err)
	}
	if *identity == "" || strings.TrimSpace(*reason) == "" {
		return errors.New("ca lift: --identity and --reason are required")
	}
	subject, err := store.ParseSuspensionSubject(*identity)
	if err != nil {
		return fmt.Errorf("ca lift: --identity %w", err)
	}
	if *dataDir == "" {
		return errors.New("ca lift: --data is required")
	}
	st, err := openStore(ctx, *dataDir)
	if err != nil {
		return fmt.Errorf("ca lift: %w", err)
	}
	defer st.Close()
	sp, err := st.Lift(ctx, subject, offlineActor(), *reason)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("ca lift: %s is not suspended", store.DescribeSubject(subject))
	}
	if err != nil {
		return fmt.Errorf("ca lift: %w", err)
	}
	fmt.Fprintf(stdout, "lifted the suspension of %s (suspended since %s by %s: %q)\n", sp.Describe(), sp.Time.UTC().Format(time.RFC3339), sp.Actor, sp.Reason)
	return nil
}

func runCASuspended(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ca suspended", "", `
List the suspended identities: who suspended each, when and why.`, stderr)
	dataDir := fs.String("data", "", "data `folder` holding the database (required)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return fmt.Errorf("ca suspended: %w", err)
	}
	if *dataDir == "" {
		return errors.New("ca suspended: --data is required")
	}
	st, err := openStore(ctx, *dataDir)
	if err != nil {
		return fmt.Errorf("ca suspended: %w", err)
	}
	defer st.Close()
	sps, err := st.Suspensions(ctx)
	if err != nil {
		return fmt.Errorf("ca suspended: %w", err)
	}
	if len(sps) == 0 {
		fmt.Fprintln(stdout, "no identity is suspended")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IDENTITY\tSINCE\tBY\tREASON")
	for _, sp := range sps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", sp.Subject, sp.Time.UTC().Format(time.RFC3339), sp.Actor, sp.Reason)
	}
	return tw.Flush()
}
