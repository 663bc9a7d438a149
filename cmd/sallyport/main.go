// Command sallyport is an SSH certificate authority and recording bastion.
//
// This package only parses flags and wires the other packages together; the
// logic lives in ca, policy, store, web and bastion.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var ec exitCode
		if errors.As(err, &ec) {
			os.Exit(int(ec))
		}
		fmt.Fprintf(os.Stderr, "sallyport: %v\n", err)
		os.Exit(1)
	}
}

// exitCode is returned by a command that has already printed its own
// diagnostics and only needs the process to exit with this status.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// command is one subcommand: its one-line summary and the function running it.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands lists the top-level subcommands. Each lives in its own file.
var commands = map[string]command{
	"version":    {"print the version and exit", runVersion},
	"ca":         {"create CA keys, sign certificates offline, revoke, suspend, pin logins, export a KRL", runCA},
	"recordings": {"list, replay and verify session recordings", runRecordings},
	"trust":      {"manage the admins' PGP web of trust and check admin signatures", runTrust},
	"breakglass": {"request an emergency certificate when GitHub is unavailable", runBreakGlass},
	"backup":     {"create, verify and restore backups encrypted to the admins", runBackup},
	"policy":     {"check, test, explain and diff access policy files", runPolicy},
	"serve":      {"run the server: GitHub sign-in, certificates, web pages, SSH bastion", runServe},
	"dev":        {"run everything on loopback with demo users, for trying Sallyport", runDev},
	"login":      {"sign in with GitHub and get an SSH certificate", runLogin},
	"status":     {"show the current certificate, its principals and expiry", runStatus},
	"ssh-config": {"print the ssh_config and known_hosts lines for the bastion", runSSHConfig},
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return exitCode(2)
		}
		return nil
	}
	name := args[0]
	if name == "--version" || name == "-version" {
		name = "version"
	}
	cmd, ok := commands[name]
	if !ok {
		usage(stderr)
		return fmt.Errorf("unknown command %q", args[0])
	}
	err := cmd.run(ctx, args[1:], stdout, stderr)
	// Asked for, a command's usage is its output, as the program's is.
	var help *helpRequest
	if errors.As(err, &help) {
		_, err = io.WriteString(stdout, help.usage)
	}
	return err
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Sallyport: SSH certificates from GitHub teams, and a recording bastion.\n\n")
	fmt.Fprintf(w, "Usage: sallyport <command> [flags] [args]\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nRun 'sallyport <command> --help' for a command's flags.\n")
}

// subcommands dispatches among named subcommands of a command group such as
// "sallyport ca".
func subcommands(ctx context.Context, group string, subs map[string]command, args []string, stdout, stderr io.Writer) error {
	groupUsage := func(w io.Writer) {
		fmt.Fprintf(w, "Usage: sallyport %s <command> [flags] [args]\n\nCommands:\n", group)
		names := make([]string, 0, len(subs))
		for n := range subs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(w, "  %-10s %s\n", n, subs[n].summary)
		}
		fmt.Fprintf(w, "\nRun 'sallyport %s <command> --help' for a command's flags.\n", group)
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		groupUsage(stdout)
		if len(args) == 0 {
			return exitCode(2)
		}
		return nil
	}
	sub, ok := subs[args[0]]
	if !ok {
		groupUsage(stderr)
		return fmt.Errorf("unknown command %q for sallyport %s", args[0], group)
	}
	return sub.run(ctx, args[1:], stdout, stderr)
}

// newFlagSet returns a flag set whose --help output names the command and
// explains its arguments. Parse errors are returned, never os.Exit.
func newFlagSet(name, argsUsage, description string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: sallyport %s [flags] %s\n\n%s\n", name, argsUsage, strings.TrimSpace(description))
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintf(fs.Output(), "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// helpRequest is returned by parseFlags when -h or --help asked for a
// command's usage; run prints the usage to stdout and succeeds.
type helpRequest struct{ usage string }

func (h *helpRequest) Error() string { return "help requested" }
func (h *helpRequest) Unwrap() error { return flag.ErrHelp }

// parseFlags parses args, allowing flags after positional arguments
// ("sign-host KEY.pub --hostname h"), and returns the positional arguments.
// A request for help returns a *helpRequest holding the usage; the usage
// for a bad flag goes to the flag set's output (stderr) with the error.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := parseCapturingHelp(fs, args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		if args[0] == "--" {
			return append(positional, args[1:]...), nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// parseCapturingHelp is fs.Parse, with the usage printed for -h or --help
// returned in a *helpRequest rather than written to fs.Output().
func parseCapturingHelp(fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	var buf strings.Builder
	fs.SetOutput(&buf)
	err := fs.Parse(args)
	fs.SetOutput(out)
	if errors.Is(err, flag.ErrHelp) {
		return &helpRequest{usage: buf.String()}
	}
	if _, werr := io.WriteString(out, buf.String()); err == nil {
		err = werr
	}
	return err
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}
