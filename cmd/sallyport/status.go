package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", "", `
Show the certificate 'sallyport login' stored beside the key: its key ID,
principals and expiry. Exits with status 1 when there is none or it has
expired.`, stderr)
	keyPath := fs.String("key", "", "private key `file` whose certificate to show (default ~/.ssh/sallyport)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	path, err := defaultKeyPath(*keyPath)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	certPath := path + "-cert.pub"
	data, err := os.ReadFile(certPath)
	if err != nil {
		return fmt.Errorf("status: no certificate (%w); run sallyport login", err)
	}
	cert, err := parseCert(data)
	if err != nil {
		return fmt.Errorf("status: %s holds %w", certPath, err)
	}
	now := time.Now()
	printCertificate(stdout, cert, certPath, nil, now)
	fmt.Fprintf(stdout, "  serial:     %d\n", cert.Serial)
	var perms []string
	for ext := range cert.Extensions {
		perms = append(perms, strings.TrimPrefix(ext, "permit-"))
	}
	sort.Strings(perms)
	if len(perms) > 0 {
		fmt.Fprintf(stdout, "  permits:    %s\n", strings.Join(perms, ", "))
	}
	for opt, v := range cert.CriticalOptions {
		fmt.Fprintf(stdout, "  %s: %s\n", opt, v)
	}
	if until := time.Unix(int64(cert.ValidBefore), 0); !now.Before(until) {
		fmt.Fprintf(stdout, "EXPIRED at %s; run sallyport login\n", until.Local().Format("2006-01-02 15:04 MST"))
		return exitCode(1)
	}
	return nil
}
