package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sallyport/sallyport/store"
)

func runCALogins(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ca logins", "", `
List the GitHub logins pinned to numeric user IDs. A login is pinned to the
ID Sallyport first saw it with (at sign-in, at the bastion, or in the
organisation's member list); an account that later holds a login pinned to
another ID does not match the policy's users: entries naming it.`, stderr)
	dataDir := fs.String("data", "", "data `folder` holding the database (required)")
	login := fs.String("login", "", "only this `login`")
	id := fs.Int64("github-id", 0, "only the logins of this GitHub user `ID`")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return fmt.Errorf("ca logins: %w", err)
	}
	if *dataDir == "" {
		return errors.New("ca logins: --data is required")
	}
	st, err := openStore(ctx, *dataDir)
	if err != nil {
		return fmt.Errorf("ca logins: %w", err)
	}
	defer st.Close()
	pins, err := st.LoginPins(ctx, store.LoginPinFilter{Login: *login, GitHubID: *id})
	if err != nil {
		return fmt.Errorf("ca logins: %w", err)
	}
	if len(pins) == 0 {
		fmt.Fprintln(stdout, "no login pinned")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LOGIN\tGITHUB ID\tPINNED\tWHERE\tBY\tREASON")
	for _, p := range pins {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", p.Login, p.GitHubID, p.Time.UTC().Format(time.RFC3339), p.Source, p.Actor, p.Reason)
	}
	return tw.Flush()
}

func runCAPin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ca pin", "", `
Pin a GitHub login to a numeric user ID, replacing the pin it has: for a
login that legitimately changed hands (its first account was deleted or
renamed, and the policy's users: entry means the new holder). The policy's
entries naming the login then apply to that account only.
https://api.github.com/users/LOGIN shows a login's ID.`, stderr)
	dataDir := fs.String("data", "", "data `folder` holding the database (required)")
	login := fs.String("login", "", "GitHub `login` to pin (required)")
	id := fs.String("github-id", "", "numeric GitHub user `ID` to pin it to (required)")
	reason := fs.String("reason", "", "why, in plain words; recorded in the audit log (required)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return fmt.Errorf("ca pin: %w", err)
	}
	if *login == "" || *id == "" || strings.TrimSpace(*reason) == "" {
		return errors.New("ca pin: --login, --github-id and --reason are required")
	}
	n, err := strconv.ParseInt(*id, 10, 64)
	if err != nil || n <= 0 {
		return fmt.Errorf("ca pin: --github-id %q is not a numeric GitHub user ID", *id)
	}
	if _, err := store.NormalizeLogin(*login); err != nil {
		return fmt.Errorf("ca pin: --login %w", err)
	}
	if *dataDir == "" {
		return errors.New("ca pin: --data is required")
	}
	st, err := openStore(ctx, *dataDir)
	if err != nil {
		return fmt.Errorf("ca pin: %w", err)
	}
	defer st.Close()
	old, err := st.Repin(ctx, *login, n, offlineActor(), *reason)
	if err != nil {
		return fmt.Errorf("ca pin: %w", err)
	}
	was := "it was not pinned"
	if old != nil {
		was = fmt.Sprintf("it was pinned to %d", old.GitHubID)
	}
	fmt.Fprintf(stdout, "login %s is now pinned to GitHub user %d (%s)\n", strings.ToLower(*login), n, was)
	return nil
}

func runCAUnpin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ca unpin", "", `
Release a GitHub login's pin: the login is pinned again to whichever account
Sallyport sees with it next. Prefer 'sallyport ca pin' to a known ID.`, stderr)
	dataDir := fs.String("data", "", "data `folder` holding the database (required)")
	login := fs.String("login", "", "GitHub `login` to release (required)")
	reason := fs.String("reason", "", "why, in plain words; recorded in the audit log (required)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return fmt.Errorf("ca unpin: %w", err)
	}
	if *login == "" || strings.TrimSpace(*reason) == "" {
		return errors.New("ca unpin: --login and --reason are required")
	}
	if _, err := store.NormalizeLogin(*login); err != nil {
		return fmt.Errorf("ca unpin: --login %w", err)
	}
	if *dataDir == "" {
		return errors.New("ca unpin: --data is required")
	}
	st, err := openStore(ctx, *dataDir)
	if err != nil {
		return fmt.Errorf("ca unpin: %w", err)
	}
	defer st.Close()
	old, err := st.Unpin(ctx, *login, offlineActor(), *reason)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("ca unpin: login %s is not pinned", strings.ToLower(*login))
	}
	if err != nil {
		return fmt.Errorf("ca unpin: %w", err)
	}
	fmt.Fprintf(stdout, "login %s released (it was pinned to GitHub user %d)\n", old.Login, old.GitHubID)
	return nil
}
