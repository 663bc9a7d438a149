package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/sallyport/sallyport/policy"
)

func runPolicyCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("policy check", "FILE [FILE...]", `
Validate access policy files. Prints nothing and exits 0 when every file is
valid (warnings are printed but do not fail unless --strict); otherwise
prints every problem as file:line:col: message and exits 1.

In a GitHub Actions workflow use --format github: the errors then appear as
annotations on the pull request's changed lines.`, stderr)
	format := fs.String("format", "text", "output `format`: text (file:line:col: message), json (a list of {file, line, column, severity, message}), or github (::error workflow commands that annotate the pull request)")
	strict := fs.Bool("strict", false, "treat warnings (a role that can never match anyone or grants nothing) as errors")
	files, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := checkFormat(*format, diagnosticFormats); err != nil {
		return err
	}
	if len(files) == 0 {
		fs.Usage()
		return fmt.Errorf("policy check: name at least one policy file")
	}
	var all []policy.Diagnostic
	failed := false
	for _, f := range files {
		p, err := loadPolicy(f)
		var ve *policy.ValidationError
		switch {
		case errors.As(err, &ve):
			all = append(all, ve.Diagnostics...)
			failed = true
		case err != nil:
			// An unreadable file is a diagnostic too, so that CI shows it in
			// the chosen format.
			msg := err.Error()
			if errors.Is(err, os.ErrNotExist) {
				msg = "no such file"
			}
			all = append(all, policy.Diagnostic{Pos: policy.Pos{File: f}, Message: msg})
			failed = true
		default:
			all = append(all, p.Warnings...)
			if *strict && len(p.Warnings) > 0 {
				failed = true
			}
		}
	}
	if err := writeDiagnostics(stdout, *format, all); err != nil {
		return err
	}
	if failed {
		return exitCode(1)
	}
	return nil
}
