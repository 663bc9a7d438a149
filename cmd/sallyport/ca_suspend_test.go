package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/identity"
	"github.com/sallyport/sallyport/internal/githubtest"
	"github.com/sallyport/sallyport/store"
)

// issueTo issues a user certificate recorded for identity in data, as the
// server does, and returns its serial.
func issueTo(t *testing.T, data, identity string) uint64 {
	t.Helper()
	a, st, err := openAuthority(t.Context(), data)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	key := readPublicKeyFile(t, newUserKey(t, t.TempDir())+".pub")
	cert, err := a.IssueUser(t.Context(), ca.UserRequest{PublicKey: key, Principals: []string{"deploy"}, TTL: time.Hour, MaxTTL: time.Hour,
		KeyID: "someone " + identity, Identity: identity})
	if err != nil {
		t.Fatalf("issue to %s: %v", identity, err)
	}
	return cert.Serial
}

// sessionTo mints a session certificate recorded for identity in data, as
// the bastion does for each connection to a target: of a key of its own.
func sessionTo(t *testing.T, data, identity string) {
	t.Helper()
	a, st, err := openAuthority(t.Context(), data)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	key := readPublicKeyFile(t, newUserKey(t, t.TempDir())+".pub")
	if _, err := a.IssueSession(t.Context(), ca.SessionRequest{PublicKey: key, Principal: "deploy", TTL: time.Minute,
		KeyID: "session of " + identity, Identity: identity}); err != nil {
		t.Fatalf("session certificate for %s: %v", identity, err)
	}
}

func readPublicKeyFile(t *testing.T, path string) ssh.PublicKey {
	t.Helper()
	k, err := readPublicKey(path)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestCARevokeIdentity: `ca revoke --identity` suspends the person and
// revokes every key certified for them; no certificate is then recorded
// for them until `ca lift`; everything is audited.
func TestCARevokeIdentity(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	runCLI(t, "ca", "init", "--data", data)
	issueTo(t, data, "github:1001")
	issueTo(t, data, "github:1001")
	issueTo(t, data, "github:1002")
	for range 3 {
		sessionTo(t, data, "github:1001")
	}

	out := runCLI(t, "ca", "revoke", "--data", data, "--identity", "1001", "--reason", "laptop stolen")
	for _, want := range []string{"suspended github:1001", "sallyport ca lift --identity github:1001",
		"revoked 2 keys of github:1001 and with them all 2 certificates the user CA issued to it",
		"left the bastion's 3 session certificates for its connections as they are"} {
		if !strings.Contains(out, want) {
			t.Errorf("ca revoke --identity said %q; want %q", out, want)
		}
	}
	st, err := openStore(t.Context(), data)
	if err != nil {
		t.Fatal(err)
	}
	revs, err := st.Revocations(t.Context())
	st.Close()
	if err != nil || len(revs) != 4 {
		t.Errorf("%d revocations (%v); want github:1001's 2 keys and 2 serials, none of a session certificate", len(revs), err)
	}
	if out := runCLI(t, "ca", "revoke", "--data", data, "--identity", "github:1001", "--reason", "again"); !strings.Contains(out, `already suspended since`) || !strings.Contains(out, `"laptop stolen"`) {
		t.Errorf("second ca revoke --identity said %q", out)
	}
	if out := runCLI(t, "ca", "suspended", "--data", data); !strings.Contains(out, "github:1001") || !strings.Contains(out, "laptop stolen") || !strings.Contains(out, "offline:") {
		t.Errorf("ca suspended: %q", out)
	}
	a, st, err := openAuthority(t.Context(), data)
	if err != nil {
		t.Fatal(err)
	}
	key := readPublicKeyFile(t, newUserKey(t, t.TempDir())+".pub")
	_, err = a.IssueUser(t.Context(), ca.UserRequest{PublicKey: key, Principals: []string{"deploy"}, TTL: time.Hour, MaxTTL: time.Hour, KeyID: "alice", Identity: "github:1001"})
	if !errors.Is(err, store.ErrSuspended) {
		t.Errorf("issuing to suspended github:1001 with a new key: %v; want ErrSuspended", err)
	}
	st.Close()
	issueTo(t, data, "github:1002") // others are not affected

	out = runCLI(t, "ca", "lift", "--data", data, "--identity", "github:1001", "--reason", "laptop found")
	if !strings.Contains(out, "lifted the suspension of github:1001") || !strings.Contains(out, `"laptop stolen"`) {
		t.Errorf("ca lift said %q", out)
	}
	if _, _, err := tryCLI(t, "ca", "lift", "--data", data, "--identity", "github:1001", "--reason", "again"); err == nil || !strings.Contains(err.Error(), "github:1001 is not suspended") {
		t.Errorf("second lift: %v", err)
	}
	if out := runCLI(t, "ca", "suspended", "--data", data); !strings.Contains(out, "no identity is suspended") {
		t.Errorf("ca suspended after the lift: %q", out)
	}
	issueTo(t, data, "github:1001")

	// A repository's workflows, whatever their identity string.
	out = runCLI(t, "ca", "revoke", "--data", data, "--identity", "ci:Example-OSS/website", "--reason", "workflow hijacked")
	if !strings.Contains(out, "suspended every GitHub Actions workload of example-oss/website") ||
		!strings.Contains(out, "no key is revoked: GitHub Actions certificates are short-lived, and the bastion refuses every certificate of a suspended repository at once") ||
		strings.Contains(out, "no certificate was ever") {
		t.Errorf("ca revoke --identity ci: said %q", out)
	}

	// Without the session CA's public key, session certificates are not
	// told apart: their keys are revoked too, and the suspension stands.
	sessionTo(t, data, "github:1002")
	if err := os.Remove(filepath.Join(data, ca.KindSession.FileName()+".pub")); err != nil {
		t.Fatal(err)
	}
	out = runCLI(t, "ca", "revoke", "--data", data, "--identity", "github:1002", "--reason", "left the project")
	for _, want := range []string{"suspended github:1002", "the session CA's public key cannot be read", "revoked 3 keys of github:1002 and with them all 3 certificates"} {
		if !strings.Contains(out, want) {
			t.Errorf("ca revoke --identity without session_ca.pub said %q; want %q", out, want)
		}
	}

	log, err := os.ReadFile(filepath.Join(data, auditFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"type":"suspend","actor":"offline:`, `"subject":"github:1001"`, `"type":"lift"`, `"reason":"laptop found"`, `"reason":"laptop stolen (everything of github:1001)"`} {
		if !strings.Contains(string(log), want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
}

func TestCAPinCommands(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	runCLI(t, "ca", "init", "--data", data)
	if out := runCLI(t, "ca", "logins", "--data", data); !strings.Contains(out, "no login pinned") {
		t.Errorf("ca logins on a new store: %q", out)
	}
	st, err := openStore(t.Context(), data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.PinLogins(t.Context(), "directory", []store.SeenLogin{{Login: "carol", GitHubID: 583231}}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if out := runCLI(t, "ca", "logins", "--data", data, "--login", "Carol"); !strings.Contains(out, "carol") || !strings.Contains(out, "583231") || !strings.Contains(out, "directory") {
		t.Errorf("ca logins: %q", out)
	}
	out := runCLI(t, "ca", "pin", "--data", data, "--login", "Carol", "--github-id", "99", "--reason", "carol deleted her account; 99 is the new carol")
	if !strings.Contains(out, "login carol is now pinned to GitHub user 99 (it was pinned to 583231)") {
		t.Errorf("ca pin said %q", out)
	}
	if out := runCLI(t, "ca", "logins", "--data", data, "--github-id", "99"); !strings.Contains(out, "carol") || !strings.Contains(out, "admin") || !strings.Contains(out, "offline:") {
		t.Errorf("ca logins --github-id 99: %q", out)
	}
	if out := runCLI(t, "ca", "unpin", "--data", data, "--login", "carol", "--reason", "carol left"); !strings.Contains(out, "login carol released (it was pinned to GitHub user 99)") {
		t.Errorf("ca unpin said %q", out)
	}
	if _, _, err := tryCLI(t, "ca", "unpin", "--data", data, "--login", "carol", "--reason", "again"); err == nil || !strings.Contains(err.Error(), "login carol is not pinned") {
		t.Errorf("second unpin: %v", err)
	}
	log, err := os.ReadFile(filepath.Join(data, auditFile))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), `"type":"login.pin"`); n != 3 {
		t.Errorf("%d login.pin events in the audit log; want first sight, re-pin and release", n)
	}
}

// TestPinDirectoryLogins: the organisation's members' logins are pinned at
// the directory's first load, and a member who later takes a login pinned
// to someone else is logged and audited, once.
func TestPinDirectoryLogins(t *testing.T) {
	gh := githubtest.New(t)
	users, err := gh.AddDemoUsers("example-oss")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := identity.NewDirectory(identity.DirectoryConfig{Org: "example-oss", APIURL: gh.URL, HTTPClient: gh.Client(), Timeout: 5 * time.Second,
		Token: identity.StaticToken(gh.TokenWithScopes(users[0], "read:org")),
		Tick:  func(time.Duration) (<-chan time.Time, func()) { return nil, func() {} }})
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "data")
	runCLI(t, "ca", "init", "--data", data)
	st, err := openStore(t.Context(), data)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var logs lockedBuffer
	run := pinDirectoryLogins(dir, st, slog.New(slog.NewTextHandler(&logs, nil)))
	ctx, cancel := context.WithCancel(t.Context())
	stopped := make(chan struct{})
	go func() { run(ctx); close(stopped) }()
	defer func() { cancel(); <-stopped }()

	pinnedTo := func(login string) int64 {
		pins, err := st.LoginPins(t.Context(), store.LoginPinFilter{Login: login})
		if err != nil {
			t.Fatal(err)
		}
		if len(pins) == 0 {
			return 0
		}
		return pins[0].GitHubID
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := dir.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitUntil("the members' pins", func() bool { return pinnedTo("octo-admin") == 1004 && pinnedTo("alice") == 1001 })
	if pinnedTo("dave") != 0 {
		t.Error("dave, only invited, is pinned")
	}
	// octo-admin renames; mallory, a member, takes the freed login.
	var octo githubtest.User
	for _, u := range users {
		if u.Login == "octo-admin" {
			octo = u
		}
	}
	if _, err := gh.RenameUser(octo, "octo-retired"); err != nil {
		t.Fatal(err)
	}
	mallory, err := gh.AddUserWithID("octo-admin", 2001)
	if err != nil {
		t.Fatal(err)
	}
	if err := gh.SetMembership(mallory, "example-oss", githubtest.StateActive); err != nil {
		t.Fatal(err)
	}
	if err := dir.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitUntil("the renamed login's pin", func() bool { return pinnedTo("octo-retired") == 1004 })
	waitUntil("the conflict logged", func() bool { return strings.Contains(logs.String(), "holds a login pinned to another GitHub user") })
	if pinnedTo("octo-admin") != 1004 {
		t.Errorf("octo-admin is pinned to %d; want 1004 still", pinnedTo("octo-admin"))
	}
	evs, err := st.AuditEvents(t.Context(), store.AuditQuery{Type: store.AuditTypeLoginPin, Actor: "github:2001"})
	if err != nil {
		t.Fatal(err)
	}
	want := "login octo-admin was first seen as GitHub user 1004; user 2001 now has that login: policy 'users: octo-admin' entries do not apply to them until an admin re-pins"
	if len(evs) != 1 || evs[0].Outcome != "denied" || evs[0].Reason != want {
		t.Errorf("conflict audited as %+v; want once, %q", evs, want)
	}
}
