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

// maxPlayMemory is how much of a recording play holds in memory; a longer
// one is copied to a private temporary file (see recording.Snapshot).
const maxPlayMemory = 64 << 20

// afterPlayCheck runs between the check of a recording and its replay;
// tests use it to rewrite the file there.
var afterPlayCheck = func() {}

func runRecordingsPlay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("recordings play", "ID|FILE", `
Replay a recording in this terminal at its recorded pace. Escape sequences
that could act on your terminal (clipboard writes, title reports, device
queries and other OSC, DCS and APC strings, clearing the scrollback) are
removed on the way; the stored recording is unchanged. Of an exec, scp or
sftp channel without a terminal, whose recording keeps only the head of its
output, that head is shown if it is text, else one line with the command,
the bytes each way and their SHA-256. Notes about kept-in-part output and
how the session ended go to stderr. Unless LC_ALL, LC_CTYPE or LANG (the
first set) names the UTF-8 codeset, as in C.UTF-8 or en_US.UTF-8, every
character that is not ASCII is shown as '?': a terminal that does not
decode UTF-8 could take bytes of UTF-8 text for control sequences.

The recording is read once and checked as "recordings verify" checks it,
and what is played is exactly what was checked. If it is not intact, or
cannot be checked, a warning goes to stderr and the exit status is 1; it is
played only with --force, and then the warning is repeated after it.`, stderr)
	dataDir := fs.String("data", "", "data `folder` to look recording IDs and the session CA's public key up in")
	keyFile := fs.String("key", "", "public key `file` of the signing CA (default DATA/session_ca.pub)")
	speed := fs.Float64("speed", 1, "play at `N` times the recorded pace")
	idle := fs.Duration("idle-limit", 2*time.Second, "cap every pause at this `duration` (0: as recorded)")
	force := fs.Bool("force", false, "play a recording that is not intact or cannot be checked")
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
	ascii := !utf8Locale(os.Getenv)
	notes := stderr // Play makes its notes ASCII itself
	if ascii {
		stderr = recording.ASCIIWriter(stderr)
	}
	f, row, err := openRecording(ctx, *dataDir, rest[0])
	if err != nil {
		return fmt.Errorf("recordings play: %w", err)
	}
	snap, err := recording.NewSnapshot(f, maxPlayMemory, "")
	f.Close()
	if err != nil {
		return fmt.Errorf("recordings play: read %s: %w", recording.Escape(rest[0], 200), err)
	}
	defer snap.Close()
	warning := playCheck(snap.Reader(), row, *dataDir, *keyFile)
	afterPlayCheck()
	if warning != "" {
		hint := "sallyport recordings verify"
		if *dataDir != "" {
			hint += " --data " + *dataDir
		}
		if *keyFile != "" {
			hint += " --key " + *keyFile
		}
		warning = fmt.Sprintf("sallyport: warning: recording %s is %s; `%s %s` gives details",
			recording.Escape(rest[0], 200), warning, recording.Escape(hint, 400), recording.Escape(rest[0], 200))
		if !*force {
			fmt.Fprintf(stderr, "%s; give --force to play it all the same\n", warning)
			return exitCode(1)
		}
		fmt.Fprintln(stderr, warning)
	}
	rd, err := recording.NewReader(snap.Reader())
	if err == nil {
		opts := recording.PlayOptions{Speed: *speed, IdleLimit: *idle, Notes: notes, NoReset: !isTerminal(stdout), ASCII: ascii}
		err = recording.Play(ctx, stdout, rd, opts)
	}
	if warning != "" {
		// Again after the replay, which may have pushed the first out of
		// sight.
		fmt.Fprintln(stderr, warning)
	}
	if err != nil {
		return fmt.Errorf("recordings play: %w", err)
	}
	if warning != "" {
		return exitCode(1)
	}
	return nil
}

// utf8Locale reports whether the locale named by the environment for
// character handling (LC_ALL, else LC_CTYPE, else LANG, as setlocale reads
// them) has the UTF-8 codeset. None set means the C locale: ASCII.
func utf8Locale(getenv func(string) string) bool {
	for _, k := range []string{"LC_ALL", "LC_CTYPE", "LANG"} {
		v := getenv(k)
		if v == "" {
			continue
		}
		_, codeset, _ := strings.Cut(v, ".")
		codeset, _, _ = strings.Cut(codeset, "@")
		return strings.EqualFold(codeset, "UTF-8") || strings.EqualFold(codeset, "utf8")
	}
	return false
}

// playCheck checks the recording in f as verify does and returns what is
// wrong ("not verified: ..." or "not intact: ..."), or "" if it is intact.
func playCheck(f io.Reader, row *store.Recording, dataDir, keyFile string) string {
	if keyFile == "" && dataDir == "" {
		return "not verified: no session CA public key to check it with (give --data or --key)"
	}
	key, err := loadVerifyKey(dataDir, keyFile)
	if err != nil {
		return "not verified: " + err.Error()
	}
	rep, err := checkRecording(f, row, key.pub)
	var nv *notVerifiedError
	switch {
	case errors.As(err, &nv):
		return nv.Error()
	case err != nil:
		return "not verified: " + err.Error()
	case rep.Intact():
		return ""
	}
	n := len(rep.Mismatches)
	switch {
	case rep.Problem == nil && n > 1:
		return fmt.Sprintf("not intact: %s (and %d more)", rep.Mismatches[0], n-1)
	case rep.Problem == nil:
		return "not intact: " + rep.Mismatches[0].String()
	case n == 1:
		return fmt.Sprintf("not intact: %v (and a difference from the index)", rep.Problem)
	case n > 1:
		return fmt.Sprintf("not intact: %v (and %d differences from the index)", rep.Problem, n)
	}
	return fmt.Sprintf("not intact: %v", rep.Problem)
}

// isTerminal reports whether w is a terminal: a character device (also
// /dev/null, where what is meant for a terminal does no harm).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func runRecordingsVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("recordings verify", "ID|FILE", `
Check a recording: its chain of SHA-256 digests block by block, the session
CA's signatures on it, that it has its final record, and, for an ID, that
the file agrees with its index row (recording ID, who, where, when, the
command, how it ended, byte counts, SHA-256s and final digest) and that the
key is the signer the index records. Prints "intact" or exactly where the
file was altered or cut short and each field on which the index and the
file disagree, then the fingerprint of the key it checked with, to compare
with the session CA's published one. Exits 1 if it is not intact.`, stderr)
	dataDir := fs.String("data", "", "data `folder` to look recording IDs and the session CA's public key up in")
	keyFile := fs.String("key", "", "public key `file` of the signing CA (default DATA/session_ca.pub)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return errors.New("recordings verify: give one recording ID or file")
	}
	if *keyFile == "" && *dataDir == "" {
		return errors.New("recordings verify: give --data or --key: without the CA's public key a rewritten file cannot be told from a genuine one")
	}
	key, err := loadVerifyKey(*dataDir, *keyFile)
	if err != nil {
		return fmt.Errorf("recordings verify: %w", err)
	}
	f, row, err := openRecording(ctx, *dataDir, rest[0])
	if err != nil {
		return fmt.Errorf("recordings verify: %w", err)
	}
	defer f.Close()
	if row != nil && row.Digest == "" {
		fmt.Fprintf(stderr, "note: the index has no final digest for %s (still running, failed or the bastion stopped)\n", row.ID)
	}
	name := f.Name()
	rep, err := checkRecording(f, row, key.pub)
	var nv *notVerifiedError
	switch {
	case errors.As(err, &nv):
		fmt.Fprintf(stdout, "%s: %v\n  %s\n", name, nv, key)
		return exitCode(1)
	case err != nil:
		return fmt.Errorf("recordings verify: %w", err)
	case !rep.Intact():
		if rep.Problem != nil {
			fmt.Fprintf(stdout, "%s: NOT INTACT: %v\n", name, rep.Problem)
			if rep.SignedBlocks > 0 {
				fmt.Fprintf(stdout, "  blocks 0-%d verified and signed before that point\n", rep.SignedBlocks-1)
			}
		} else {
			fmt.Fprintf(stdout, "%s: NOT INTACT: the index and the recording disagree (the index was altered, or the file is another recording's)\n", name)
		}
		for _, m := range rep.Mismatches {
			fmt.Fprintf(stdout, "  %s\n", m)
		}
		fmt.Fprintf(stdout, "  %s\n", key)
		return exitCode(1)
	}
	fmt.Fprintf(stdout, "%s: intact: recording %s, %d blocks, %d bytes, final digest %s signed by %s\n  %s\n",
		name, rep.Header.Sallyport.ID, rep.Blocks, rep.Bytes, rep.Digest, ssh.FingerprintSHA256(key.pub), key)
	return nil
}

// verifyKey is the public key a recording is checked with, and where it
// came from.
type verifyKey struct {
	pub      ssh.PublicKey
	path     string
	fromData bool // DATA/session_ca.pub, for want of --key
}

// loadVerifyKey reads keyFile, or DATA/session_ca.pub when it is "".
func loadVerifyKey(dataDir, keyFile string) (verifyKey, error) {
	k := verifyKey{path: keyFile}
	if keyFile == "" {
		k.path, k.fromData = filepath.Join(dataDir, ca.KindSession.FileName()+".pub"), true
	}
	pub, err := readAnyPublicKey(k.path)
	if err != nil {
		return verifyKey{}, err
	}
	k.pub = pub
	return k, nil
}

// String names the key by fingerprint and source. A key from the data
// folder is only as trustworthy as the folder, which whoever could alter a
// recording could also write: hence the advice.
func (k verifyKey) String() string {
	fp := ssh.FingerprintSHA256(k.pub)
	if k.fromData {
		return fmt.Sprintf("key %s from the data folder (%s): compare it with the session CA's published fingerprint", fp, k.path)
	}
	return fmt.Sprintf("key %s from %s", fp, k.path)
}

// notVerifiedError says why a recording was not checked at all.
type notVerifiedError struct{ reason string }

func (e *notVerifiedError) Error() string { return "not verified: " + e.reason }

// checkRecording is what verify and play check of the recording read from
// r, whose index row is row (nil for a file given by path): that key is
// the signer the index records (else a *notVerifiedError), then the file
// against the key and the row.
func checkRecording(r io.Reader, row *store.Recording, key ssh.PublicKey) (*recording.Report, error) {
	if fp := ssh.FingerprintSHA256(key); row != nil && row.SignerFingerprint != "" && row.SignerFingerprint != fp {
		return nil, &notVerifiedError{fmt.Sprintf("the key's fingerprint %s differs from %s, the signer the index records for %s; if the session CA has changed since, give its old public key with --key",
			fp, recording.Escape(row.SignerFingerprint, 80), row.ID)}
	}
	return recording.Verify(r, recording.VerifyOptions{Key: key, Index: row})
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
