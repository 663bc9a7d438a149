package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/recording"
	"github.com/sallyport/sallyport/store"
)

// recordingsDir is the folder under the data folder holding recordings.
const recordingsDir = "recordings"

func runRecordings(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return subcommands(ctx, "recordings", map[string]command{
		"list":   {"list session recordings, newest first", runRecordingsList},
		"play":   {"replay a recording in this terminal at its pace", runRecordingsPlay},
		"verify": {"check a recording's digest chain and signature", runRecordingsVerify},
	}, args, stdout, stderr)
}

func runRecordingsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("recordings list", "", `
List session recordings from the index, newest first: one per session
channel, with who, where, when, bytes each way and how it ended.`, stderr)
	dataDir := fs.String("data", "", "data `folder` holding the database (required)")
	user := fs.String("user", "", "only recordings of this `identity or login`, e.g. github:12345 or alice")
	host := fs.String("host", "", "only recordings on this `host`")
	limit := fs.Int("limit", 100, "at most `N` recordings (0: all)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return fmt.Errorf("recordings list: %w", err)
	}
	if *dataDir == "" {
		return errors.New("recordings list: --data is required")
	}
	if *limit < 0 {
		return errors.New("recordings list: --limit must not be negative")
	}
	st, err := openStore(ctx, *dataDir)
	if err != nil {
		return fmt.Errorf("recordings list: %w", err)
	}
	defer st.Close()
	recs, err := st.Recordings(ctx, store.RecordingFilter{User: *user, Host: *host, Limit: *limit})
	if err != nil {
		return fmt.Errorf("recordings list: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTART (UTC)\tDURATION\tUSER\tTARGET\tCOMMAND\tIN\tOUT\tEND")
	for _, r := range recs {
		user := r.User
		if user == "" {
			user = r.Identity
		}
		cmd := r.Command
		if cmd == "" {
			cmd = "(shell)"
		}
		dur := "running"
		if !r.End.IsZero() {
			dur = r.End.Sub(r.Start).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s@%s\t%s\t%d\t%d\t%s\n", r.ID, r.Start.UTC().Format("2006-01-02 15:04:05"), dur,
			recording.Escape(user, 40), recording.Escape(r.Login, 32), recording.Escape(r.Host, 64),
			recording.Escape(cmd, 40), r.BytesIn, r.BytesOut, endState(r))
	}
	return tw.Flush()
}

// endState says in a word or two how a recording ended.
func endState(r store.Recording) string {
	var s string
	switch {
	case r.End.IsZero():
		return "-"
	case r.ExitSignal != "":
		s = "signal " + recording.Escape(r.ExitSignal, 16)
	case r.ExitStatus >= 0:
		s = fmt.Sprintf("exit %d", r.ExitStatus)
	default:
		s = "closed"
	}
	if r.Reason != "" {
		s += " (" + recording.Escape(r.Reason, 60) + ")"
	}
	if r.Digest == "" {
		s += " UNSIGNED"
	}
	return s
}

// openRecording opens the recording named by arg: an existing file, or an
// ID looked up in the index of dataDir (then row is set).
func openRecording(ctx context.Context, dataDir, arg string) (*os.File, *store.Recording, error) {
	if !recording.ValidID(arg) || dataDir == "" {
		f, err := os.Open(arg)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && recording.ValidID(arg) {
				return nil, nil, fmt.Errorf("no file %s; to look up a recording ID give --data", arg)
			}
			return nil, nil, err
		}
		return f, nil, nil
	}
	st, err := openStore(ctx, dataDir)
	if err != nil {
		return nil, nil, err
	}
	defer st.Close()
	row, err := st.Recording(ctx, arg)
	if err != nil {
		return nil, nil, err
	}
	if filepath.IsAbs(row.Path) || strings.Contains(row.Path, "..") {
		return nil, nil, fmt.Errorf("recording %s: unsafe path %q in the index", arg, row.Path)
	}
	f, err := os.Open(filepath.Join(dataDir, recordingsDir, filepath.FromSlash(row.Path)))
	if err != nil {
		return nil, nil, fmt.Errorf("recording %s: %w", arg, err)
	}
	return f, &row, nil
}

func runRecordingsPlay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("recordings play", "ID|FILE", `
Replay a recording in this terminal at its recorded pace. Escape sequences
that could act on your terminal (clipboard writes, title reports, device
queries and other OSC, DCS and APC strings) are removed on the way; the
stored recording is unchanged. Notes about kept-in-part output and how the
session ended go to stderr.`, stderr)
	dataDir := fs.String("data", "", "data `folder` to look recording IDs up in")
	speed := fs.Float64("speed", 1, "play at `N` times the recorded pace")
	idle := fs.Duration("idle-limit", 2*time.Second, "cap every pause at this `duration` (0: as recorded)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return errors.New("recordings play: give one recording ID or file")
	}
	if *speed <= 0 {
		return errors.New("recordings play: --speed must be positive")
	}
	if *idle < 0 {
		return errors.New("recordings play: --idle-limit must not be negative")
	}
	f, _, err := openRecording(ctx, *dataDir, rest[0])
	if err != nil {
		return fmt.Errorf("recordings play: %w", err)
	}
	defer f.Close()
	rd, err := recording.NewReader(f)
	if err != nil {
		return fmt.Errorf("recordings play: %w", err)
	}
	if err := recording.Play(ctx, stdout, rd, recording.PlayOptions{Speed: *speed, IdleLimit: *idle, Notes: stderr}); err != nil {
		return fmt.Errorf("recordings play: %w", err)
	}
	return nil
}

func runRecordingsVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("recordings verify", "ID|FILE", `
Check a recording: its chain of SHA-256 digests block by block, the session
CA's signatures on it, that it has its final record, and, for an ID, that
its final digest is the one in the index. Prints "intact" or exactly where
the file was altered or cut short, and exits 1 if it is not intact.`, stderr)
	dataDir := fs.String("data", "", "data `folder` to look recording IDs and the session CA's public key up in")
	keyFile := fs.String("key", "", "public key `file` of the signing CA (default DATA/session_ca.pub)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return errors.New("recordings verify: give one recording ID or file")
	}
	if *keyFile == "" {
		if *dataDir == "" {
			return errors.New("recordings verify: give --data or --key: without the CA's public key a rewritten file cannot be told from a genuine one")
		}
		*keyFile = filepath.Join(*dataDir, ca.KindSession.FileName()+".pub")
	}
	key, err := readAnyPublicKey(*keyFile)
	if err != nil {
		return fmt.Errorf("recordings verify: %w", err)
	}
	f, row, err := openRecording(ctx, *dataDir, rest[0])
	if err != nil {
		return fmt.Errorf("recordings verify: %w", err)
	}
	defer f.Close()
	opts := recording.VerifyOptions{Key: key}
	if row != nil {
		opts.ID = row.ID
		opts.Digest = row.Digest
		if row.Digest == "" {
			fmt.Fprintf(stderr, "note: the index has no final digest for %s (still running, failed or the bastion stopped)\n", row.ID)
		}
	}
	rep, err := recording.Verify(f, opts)
	if err != nil {
		return fmt.Errorf("recordings verify: %w", err)
	}
	name := f.Name()
	if !rep.Intact() {
		fmt.Fprintf(stdout, "%s: NOT INTACT: %v\n", name, rep.Problem)
		if rep.SignedBlocks > 0 {
			fmt.Fprintf(stdout, "  blocks 0-%d verified and signed before that point\n", rep.SignedBlocks-1)
		}
		return exitCode(1)
	}
	fmt.Fprintf(stdout, "%s: intact: recording %s, %d blocks, %d bytes, final digest %s signed by %s\n",
		name, rep.Header.Sallyport.ID, rep.Blocks, rep.Bytes, rep.Digest, ssh.FingerprintSHA256(key))
	return nil
}

// readAnyPublicKey reads a public key file such as a CA's .pub file.
func readAnyPublicKey(path string) (ssh.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pub, nil
}
