package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/store"
)

func runCA(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return subcommands(ctx, "ca", map[string]command{
		"init":       {"create the user, session and host CA keys", runCAInit},
		"sign-user":  {"sign a user certificate offline", runCASignUser},
		"sign-host":  {"sign a host certificate", runCASignHost},
		"revoke":     {"revoke a certificate by serial, everything for a key, or suspend an identity", runCARevoke},
		"lift":       {"lift the suspension of an identity", runCALift},
		"suspended":  {"list the suspended identities", runCASuspended},
		"logins":     {"list the GitHub logins pinned to numeric user IDs", runCALogins},
		"pin":        {"pin a GitHub login to a numeric user ID (re-pin)", runCAPin},
		"unpin":      {"release a GitHub login's pin", runCAUnpin},
		"krl":        {"write an OpenSSH key revocation list (KRL)", runCAKRL},
		"breakglass": {"issue an emergency certificate from an admin-signed request", runCABreakGlass},
		"seal":       {"encrypt the CA keys at rest to the admins' PGP keys", runCASeal},
		"unseal":     {"decrypt sealed CA keys with an admin's PGP key", runCAUnseal},
	}, args, stdout, stderr)
}

const (
	databaseFile = "sallyport.db"
	auditFile    = "audit.jsonl"
)

func runCAInit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ca init", "", `
Create the three CA keys (user, session, host) under the data folder, each
in a file readable only by its owner, and print the lines to configure
targets and users with. Keys that already exist are kept, never replaced.`, stderr)
	dataDir := fs.String("data", "", "data `folder` for keys and the database (created with mode 0700 if missing; required)")
	keyType := fs.String("key-type", string(ca.KeyEd25519), "`type` of new keys: ed25519, ecdsa-p256 or rsa-3072")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	if *dataDir == "" {
		return fmt.Errorf("ca init: --data is required")
	}
	kt, err := ca.ParseKeyType(*keyType)
	if err != nil {
		return fmt.Errorf("ca init: --key-type: %w", err)
	}
	created, err := ca.GenerateKeys(*dataDir, kt, nil)
	if err != nil {
		return fmt.Errorf("ca init: %w", err)
	}
	keys, err := ca.LoadKeys(*dataDir)
	if err != nil {
		return fmt.Errorf("ca init: %w", err)
	}
	st, err := openStore(ctx, *dataDir)
	if err != nil {
		return fmt.Errorf("ca init: %w", err)
	}
	defer st.Close()
	for _, k := range created {
		ev := audit.Event{Type: audit.TypeCAInit, Actor: offlineActor(), Subject: k.String() + " CA", Outcome: audit.OutcomeOK,
			Fields: map[string]string{"fingerprint": ssh.FingerprintSHA256(keys.Signer(k).PublicKey())}}
		if err := st.Audit(ctx, ev); err != nil {
			return fmt.Errorf("ca init: %w", err)
		}
	}
	createdSet := map[ca.Kind]bool{}
	for _, k := range created {
		createdSet[k] = true
	}
	for _, k := range ca.Kinds {
		state := "kept existing"
		if createdSet[k] {
			state = "created"
		}
		pub := keys.Signer(k).PublicKey()
		fmt.Fprintf(stdout, "%s CA (%s, %s): %s\n  %s", k, state, filepath.Join(*dataDir, k.FileName()),
			ssh.FingerprintSHA256(pub), ssh.MarshalAuthorizedKey(pub))
	}
	session := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(keys.Session.PublicKey())))
	host := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(keys.Host.PublicKey())))
	fmt.Fprintf(stdout, `
On every target, trust the session CA (only sessions through the bastion get in):
  echo '%s sallyport-session-ca' > /etc/ssh/sallyport_session_ca.pub
  and in /etc/ssh/sshd_config:
  TrustedUserCAKeys /etc/ssh/sallyport_session_ca.pub

For users, one line in ~/.ssh/known_hosts trusts every host certificate:
  @cert-authority * %s sallyport-host-ca
`, session, host)
	return nil
}

// openAuthority loads the CA keys and opens the store in dataDir.
func openAuthority(ctx context.Context, dataDir string) (*ca.Authority, *dataStore, error) {
	if dataDir == "" {
		return nil, nil, fmt.Errorf("--data is required")
	}
	keys, err := ca.LoadKeys(dataDir)
	if err != nil {
		return nil, nil, err
	}
	st, err := openStore(ctx, dataDir)
	if err != nil {
		return nil, nil, err
	}
	a, err := ca.New(keys, st)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return a, st, nil
}

// dataStore is the store of a data folder with its JSON-lines audit file.
type dataStore struct {
	*store.SQLite
	log *os.File
}

// Close closes the database, then the audit file.
func (d *dataStore) Close() error {
	err := d.SQLite.Close()
	if cerr := d.log.Close(); err == nil {
		err = cerr
	}
	return err
}

// openStore opens the database in dataDir, appending audit events to the
// JSON-lines audit file beside it. The folder must exist.
func openStore(ctx context.Context, dataDir string) (*dataStore, error) {
	st, err := os.Stat(dataDir)
	if err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("data folder %s is not a folder", dataDir)
	}
	log, err := os.OpenFile(filepath.Join(dataDir, auditFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	s, err := store.Open(ctx, filepath.Join(dataDir, databaseFile), store.Options{AuditLog: log})
	if err != nil {
		log.Close()
		return nil, err
	}
	return &dataStore{SQLite: s, log: log}, nil
}

func offlineActor() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return "offline:" + name
}

func noArgs(rest []string) error {
	if len(rest) > 0 {
		return fmt.Errorf("unexpected argument %q", rest[0])
	}
	return nil
}

// readPublicKey reads and parses the public key file at path.
func readPublicKey(path string) (ssh.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pub, err := ca.ParsePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pub, nil
}
