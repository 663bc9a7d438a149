package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/sallyport/sallyport/policy"
)

func runPolicyDiff(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("policy diff", "OLD NEW", `
Say in plain words every change in access from policy OLD to policy NEW:
who (each team, user and CI workload, or with --members each person) gains
or loses which principal@host, changes in permissions, forced commands,
source addresses, input recording and certificate lifetime, and hosts added,
removed or readdressed. Prints "no change in access" when there is none.

Errors in OLD or NEW are printed as by "policy check" and exit 1. In CI,
OLD is usually the base branch's version: git show origin/main:policy.yaml > old.yaml`, stderr)
	members := fs.String("members", "", "YAML `file` mapping team slugs to logins (teams: {infra: [alice, bob]}); the diff is then per person, exact for people in several teams")
	format := fs.String("format", "text", "output `format`: text, markdown (what a bot posts on the pull request), or json")
	exit := fs.Bool("exit-code", false, "exit 1 when access changes, like git diff --exit-code")
	files, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := checkFormat(*format, "text|markdown|json"); err != nil {
		return err
	}
	if len(files) != 2 {
		fs.Usage()
		return fmt.Errorf("policy diff: name two policy files, OLD and NEW")
	}
	d, err := computeDiff(files[0], files[1], *members, stderr)
	if err != nil {
		return err
	}
	switch *format {
	case "markdown":
		err = d.WriteMarkdown(stdout)
	case "json":
		err = d.WriteJSON(stdout)
	default:
		err = d.WriteText(stdout)
	}
	if err != nil {
		return err
	}
	if *exit && !d.Empty() {
		return exitCode(1)
	}
	return nil
}

// computeDiff loads both policies and the optional members file. Invalid
// files are reported to stderr as by check, and the returned error is then
// exitCode(1).
func computeDiff(oldPath, newPath, membersPath string, stderr io.Writer) (*policy.Diff, error) {
	old, errOld := loadPolicy(oldPath)
	new, errNew := loadPolicy(newPath)
	for _, err := range []error{errOld, errNew} {
		var ve *policy.ValidationError
		if errors.As(err, &ve) {
			if werr := writeDiagnostics(stderr, "text", ve.Diagnostics); werr != nil {
				return nil, werr
			}
		} else if err != nil {
			return nil, err
		}
	}
	if errOld != nil || errNew != nil {
		return nil, exitCode(1)
	}
	var roster *policy.Roster
	if membersPath != "" {
		data, err := os.ReadFile(membersPath)
		if err != nil {
			return nil, fmt.Errorf("--members: %w", err)
		}
		if roster, err = policy.ParseRoster(membersPath, data); err != nil {
			return nil, reportInvalid(stderr, "text", err)
		}
	}
	return policy.Compare(old, new, roster), nil
}
