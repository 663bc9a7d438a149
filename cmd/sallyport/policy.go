package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sallyport/sallyport/policy"
)

func runPolicy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return subcommands(ctx, "policy", map[string]command{
		"check":   {"validate policy files; errors as file:line:col, or GitHub annotations", runPolicyCheck},
		"test":    {"run a policy's tests, like go test", runPolicyTest},
		"explain": {"show which roles match an identity, its grant, and decisions", runPolicyExplain},
		"diff":    {"say in plain words who gains or loses what access", runPolicyDiff},
		"comment": {"post the access diff on a pull request, editing it on later runs", runPolicyComment},
	}, args, stdout, stderr)
}

// loadPolicy reads and parses a policy file. The error is a
// *policy.ValidationError when the file was read but is invalid.
func loadPolicy(path string) (*policy.Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return policy.Parse(path, data)
}

// diagnosticFormats are the values of --format for reporting diagnostics.
const diagnosticFormats = "text|json|github"

// checkFormat reports whether format is one of the allowed values.
func checkFormat(format, allowed string) error {
	for _, f := range strings.Split(allowed, "|") {
		if format == f {
			return nil
		}
	}
	return fmt.Errorf("--format %q: want one of %s", format, strings.ReplaceAll(allowed, "|", ", "))
}

// writeDiagnostics writes diagnostics in format text ("file:line:col:
// message"), github (workflow commands that annotate pull request lines) or
// json (a list of objects).
func writeDiagnostics(w io.Writer, format string, diags []policy.Diagnostic) error {
	switch format {
	case "json":
		if diags == nil {
			diags = []policy.Diagnostic{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(diags)
	case "github":
		for _, d := range diags {
			if _, err := fmt.Fprintln(w, githubAnnotation(d)); err != nil {
				return err
			}
		}
		return nil
	}
	for _, d := range diags {
		if _, err := fmt.Fprintln(w, d.String()); err != nil {
			return err
		}
	}
	return nil
}

// githubAnnotation formats d as a GitHub Actions workflow command, escaped
// as the runner expects so that a message cannot inject another command.
func githubAnnotation(d policy.Diagnostic) string {
	kind := "error"
	if d.Severity == policy.SeverityWarning {
		kind = "warning"
	}
	props := []string{"file=" + escapeProperty(d.File)}
	if d.Line > 0 {
		props = append(props, fmt.Sprintf("line=%d", d.Line))
	}
	if d.Col > 0 {
		props = append(props, fmt.Sprintf("col=%d", d.Col))
	}
	props = append(props, "title="+escapeProperty("sallyport policy"))
	return fmt.Sprintf("::%s %s::%s", kind, strings.Join(props, ","), escapeData(d.Message))
}

func escapeData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

func escapeProperty(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}

// reportInvalid writes the diagnostics of an invalid policy (or the read
// error) to w and returns the error the command should end with.
func reportInvalid(w io.Writer, format string, err error) error {
	var ve *policy.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	if werr := writeDiagnostics(w, format, ve.Diagnostics); werr != nil {
		return werr
	}
	return exitCode(1)
}
