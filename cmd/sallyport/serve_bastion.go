package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/bastion"
	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/identity"
	"github.com/sallyport/sallyport/policy"
	"github.com/sallyport/sallyport/recording"
	"github.com/sallyport/sallyport/standing"
	"github.com/sallyport/sallyport/store"
)

// bastionSetup is the bastion serveWeb runs beside the web server. srv has
// its host key, names, limits and logger set; serveWeb adds the authority,
// policy, directory, store and recorder it shares with the web server.
type bastionSetup struct {
	ln  net.Listener
	srv *bastion.Server
	// dir is the organisation directory: the bastion decides by each
	// person's current teams, and is told when someone loses a team.
	dir *identity.Directory
	// revocationPoll is how often the store is read for revocations made
	// by other processes.
	revocationPoll time.Duration
	// recordings is the folder recordings are written to.
	recordings string
	// recordingStall is the recorder's FlushTimeout; 0 means its default.
	recordingStall time.Duration
}

// start completes the bastion with what it shares with the web server,
// starts watching for team changes and revocations until ctx ends, and
// serves. Serve's result arrives on the returned channel.
func (b *bastionSetup) start(ctx context.Context, st *dataStore, keys ca.Keys, authority *ca.Authority, pf policySource) (<-chan error, error) {
	if err := b.closeInterrupted(ctx, st); err != nil {
		return nil, err
	}
	rec, err := recording.New(recording.Options{Dir: b.recordings, Index: st, Signer: keys.Session, FlushTimeout: b.recordingStall})
	if err != nil {
		return nil, err
	}
	s := b.srv
	s.Authority = authority
	s.Policy = pf.Policy
	s.Directory = orgDirectory{b.dir}
	s.Store = st
	s.Recorder = bastion.NewRecorder(rec)
	cancel := b.dir.Subscribe(func(u identity.Update) {
		for _, c := range u.Changes {
			if c.Lost() {
				s.Reevaluate("teams changed (" + u.Cause + ")")
				return
			}
		}
		if u.Initial {
			s.Reevaluate("organisation directory loaded")
		}
	})
	go func() { <-ctx.Done(); cancel() }()
	go watchRevocations(ctx, st, b.revocationPoll, s)
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(b.ln) }()
	return errc, nil
}

// The bastion checks suspensions and login pins through its store only
// if the store implements standing.Store (bastion.Server.standing).
var _ standing.Store = (*dataStore)(nil)

// policySource is the policy in force; *web.PolicyFile implements it.
type policySource interface {
	Policy() *policy.Policy
}

// orgDirectory adapts the organisation directory to the bastion.
type orgDirectory struct{ d *identity.Directory }

// Identity returns the member's login and teams as last refreshed; before
// the first refresh, and for non-members, it knows no one.
func (o orgDirectory) Identity(id int64) (policy.Identity, bool) {
	m, err := o.d.Lookup(id)
	if err != nil || !m.Member {
		return policy.Identity{}, false
	}
	return policy.Identity{Login: m.Login, ID: id, Teams: m.Teams}, true
}

// watchRevocations reads the revocations and suspensions every interval
// and asks the bastion to re-check its live sessions when either changed:
// how a `sallyport ca revoke` in another process, or a revocation or
// suspension through the web, ends live sessions within seconds rather
// than at the next sweep.
func watchRevocations(ctx context.Context, st *dataStore, every time.Duration, s *bastion.Server) {
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	last, lastSuspended, readSuspended := -1, "", false
	for {
		revs, err := st.Revocations(ctx)
		if err == nil {
			if last >= 0 && len(revs) != last {
				s.Reevaluate("certificate revoked")
			}
			last = len(revs)
		}
		if sps, err := st.Suspensions(ctx); err == nil {
			// A lifted suspension and a new one between two reads still
			// change the list's text.
			var b strings.Builder
			for _, sp := range sps {
				fmt.Fprintf(&b, "%s %d\n", sp.Subject, sp.Time.UnixNano())
			}
			if now := b.String(); readSuspended && now != lastSuspended {
				s.Reevaluate("suspensions changed")
			}
			lastSuspended, readSuspended = b.String(), true
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// bastionHostKeyFile is the bastion's host key in the data folder.
const bastionHostKeyFile = "bastion_host_key"

// loadBastionHostKey reads the bastion's host key from path, generating it
// (ed25519, mode 0600, with its .pub beside it) when the file does not
// exist yet. A key file others can read is refused, as CA keys are.
func loadBastionHostKey(path string) (signer ssh.Signer, created bool, err error) {
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		if err := generateHostKey(path); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, false, fmt.Errorf("bastion host key: %w", err)
		}
		created = true
	}
	s, err := ca.LoadSigner(path)
	if err != nil {
		return nil, false, fmt.Errorf("bastion host key: %w", err)
	}
	if _, ok := s.PublicKey().(*ssh.Certificate); ok {
		return nil, false, fmt.Errorf("bastion host key %s: want a plain key; the bastion certifies it with the host CA itself", path)
	}
	return s, created, nil
}

// generateHostKey writes a new ed25519 host key to path (which must not
// exist) and its public half to path.pub.
func generateHostKey(path string) error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	block, err := ssh.MarshalPrivateKey(priv, "sallyport bastion host key")
	if err != nil {
		return err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(sshPub), 0o644); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(pem.EncodeToMemory(block)); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// interruptedReason is the index's reason for a recording whose bastion
// stopped before the session ended.
const interruptedReason = "interrupted: the bastion stopped before the session ended"

// closeInterrupted closes the index rows of recordings an earlier bastion
// left unfinished (it crashed or was killed): none can still be running,
// since only this process may use the data folder. Each ends when its file
// was last written, which a flush does at least every second.
func (b *bastionSetup) closeInterrupted(ctx context.Context, st *dataStore) error {
	// A stop asked for meanwhile (dev stopped right after its banner)
	// must not leave this half done or turn into an error: it is one
	// short write, finished before the stop is seen.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	closed, err := st.InterruptRecordings(ctx, interruptedReason, func(r store.Recording) time.Time {
		fi, err := os.Stat(filepath.Join(b.recordings, filepath.FromSlash(r.Path)))
		if err != nil {
			return r.Start
		}
		return fi.ModTime()
	})
	if err != nil {
		return fmt.Errorf("bastion: %w", err)
	}
	logger := b.srv.Logger
	if logger == nil {
		logger = slog.Default()
	}
	for _, r := range closed {
		logger.Warn("recording interrupted by an earlier stop; `sallyport recordings verify` tells up to where it is authenticated",
			"id", r.ID, "identity", r.Identity, "login", r.Login, "host", r.Host, "started", r.Start, "last_written", r.End)
	}
	return nil
}

// shutdownBastion stops the bastion: new connections are refused at once,
// open sessions get grace to finish, then are told the bastion is going
// away and closed. When connections are still open shortly after the
// start, it says so at once rather than waiting silently.
func shutdownBastion(s *bastion.Server, grace time.Duration, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(shutdownNoticeAfter):
		logger.Warn(fmt.Sprintf("stopping: ending open sessions in up to %v", grace))
		err = <-done
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		logger.Error("bastion shutdown", "err", err)
	}
}

// shutdownNoticeAfter is how long shutdownBastion waits for the bastion to
// close before saying that it is ending open sessions: long enough for a
// bastion with no session to close first.
const shutdownNoticeAfter = 200 * time.Millisecond
