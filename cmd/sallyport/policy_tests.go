package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"

	"github.com/sallyport/sallyport/policy"
	"github.com/sallyport/sallyport/web"
)

func runPolicyTest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("policy test", "FILE", `
Run the tests of a policy file: those under its "tests:" key and those in
files given with --tests. Output is like go test: each failing test is shown
with the request that failed and the role that allowed it or the rule that
denied it; the last line is "ok" or "FAIL". Exits 1 when a test fails or a
file is invalid (its errors are printed as by "policy check").`, stderr)
	var testFiles stringList
	fs.Var(&testFiles, "tests", "also run the tests in this `file` (a YAML file with a single \"tests:\" key, in the policy's format); repeatable")
	run := fs.String("run", "", "run only tests whose name matches this `regexp`")
	verbose := fs.Bool("v", false, "verbose: list every test as it runs, passing or not")
	format := fs.String("format", "text", "output `format`: text (like go test) or json (a list of results with name, position, checks and failures)")
	files, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := checkFormat(*format, "text|json"); err != nil {
		return err
	}
	if len(files) != 1 {
		fs.Usage()
		return fmt.Errorf("policy test: name exactly one policy file")
	}
	var filter *regexp.Regexp
	if *run != "" {
		if filter, err = regexp.Compile(*run); err != nil {
			return fmt.Errorf("--run: %v", err)
		}
	}
	p, err := loadPolicy(files[0])
	if err != nil {
		return reportInvalid(stderr, "text", err)
	}
	tests := p.Tests
	for _, f := range testFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		more, err := policy.ParseTests(f, data, p)
		var ve *policy.ValidationError
		if errors.As(err, &ve) {
			return reportInvalid(stderr, "text", err)
		} else if err != nil {
			return err
		}
		tests = append(tests, more...)
	}
	results := []policy.TestResult{}
	failed := 0
	for i := range tests {
		t := &tests[i]
		if filter != nil && !filter.MatchString(t.Name) {
			continue
		}
		res := p.RunTest(t)
		results = append(results, res)
		if !res.Passed() {
			failed++
		}
		if *format != "text" {
			continue
		}
		if *verbose {
			fmt.Fprintf(stdout, "=== RUN   %s\n", res.Name)
		}
		if !res.Passed() {
			fmt.Fprintf(stdout, "--- FAIL: %s (%s)\n", res.Name, res.Pos)
			for _, f := range res.Failures {
				fmt.Fprintf(stdout, "    %s\n", f)
			}
		} else if *verbose {
			fmt.Fprintf(stdout, "--- PASS: %s\n", res.Name)
		}
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(results); err != nil {
			return err
		}
	} else {
		switch {
		case len(results) == 0:
			fmt.Fprintf(stdout, "testing: warning: no tests to run\nok  \t%s\t0 tests\n", files[0])
		case failed > 0:
			fmt.Fprintf(stdout, "FAIL\nFAIL\t%s\t%d tests, %d failed\n", files[0], len(results), failed)
		default:
			fmt.Fprintf(stdout, "ok  \t%s\t%d tests\n", files[0], len(results))
		}
	}
	if failed > 0 {
		return exitCode(1)
	}
	return nil
}

// policyTestHint says how to see every failing test of the policy at path.
func policyTestHint(path string) string {
	return "run `sallyport policy test " + path + "` for details"
}

// explainPolicyTests adds to err, a refusal of the policy file at path,
// how to see more when the refusal is its own failing tests (the error
// already says which fail and why), in one line.
func explainPolicyTests(err error, path string) error {
	if !errors.Is(err, web.ErrPolicyTests) {
		return err
	}
	return fmt.Errorf("%w; %s", err, policyTestHint(path))
}

// logPolicyTests logs, for a reload of the policy file at path refused by
// its own tests (logged with their reasons by the PolicyFile), how to see
// more.
func logPolicyTests(logger *slog.Logger, path string) {
	logger.Error("the policy fails its own tests", "file", path, "hint", policyTestHint(path))
}
