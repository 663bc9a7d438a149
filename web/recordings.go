package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sallyport/sallyport/recording"
	"github.com/sallyport/sallyport/store"
)

// Recordings are shown to the person they record (the identity that
// connected, never a login or display name) and to admins; everyone else
// gets 403. An admin looking at someone else's recording is an audited
// admin decision.

const (
	maxRecordingRows = 500
	// maxReplayText bounds the text replay of one recording on a page,
	// which is all of the file a page keeps (see verifyAndReplay); the
	// whole file can be downloaded.
	maxReplayText = 1 << 20
)

// afterRecordingCheck runs once a recording was checked and its
// transcript made, before its page is written; tests use it to rewrite
// the file there, and to see what the page holds.
var afterRecordingCheck = func() {}

type recordingRow struct {
	store.Recording
	Who      string
	Started  string
	Duration string
	Ended    string
}

type recordingsData struct {
	All        bool // the viewer is an admin looking at everyone's
	User, Host string
	Rows       []recordingRow
	Limit      int
}

func rowOf(r store.Recording) recordingRow {
	row := recordingRow{Recording: r, Who: r.User, Started: r.Start.UTC().Format("2006-01-02 15:04:05"), Duration: "running or cut short"}
	if row.Who == "" {
		row.Who = r.Identity
	}
	if !r.End.IsZero() {
		row.Duration = r.End.Sub(r.Start).Round(time.Second).String()
	}
	switch {
	case r.End.IsZero():
		row.Ended = "-"
	case r.ExitSignal != "":
		row.Ended = "signal " + r.ExitSignal
	case r.ExitStatus >= 0:
		row.Ended = fmt.Sprintf("exit %d", r.ExitStatus)
	default:
		row.Ended = "closed"
	}
	if r.Reason != "" {
		row.Ended += " (" + r.Reason + ")"
	}
	return row
}

// recordingsPage lists the viewer's own recordings, or with ?all=1 an
// admin's view of everyone's.
func (s *Server) recordingsPage(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.signedInFor(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	d := recordingsData{User: strings.TrimSpace(q.Get("user")), Host: strings.TrimSpace(q.Get("host")), Limit: maxRecordingRows}
	admin := s.isAdminNow(sess)
	f := store.RecordingFilter{Host: truncate(d.Host, 256), Limit: maxRecordingRows}
	if q.Get("all") != "" || d.User != "" {
		var reason string
		if _, admin, reason = s.decideAdmin(r.Context(), sess, "GET /recordings (everyone's)"); !admin {
			s.renderAdmin(w, http.StatusForbidden, "error", sess, false, "Admins only",
				"", "Only admins see other people's recordings: "+reason+".", nil)
			return
		}
		d.All = true
		f.User = truncate(d.User, 256)
	} else {
		f.User = sess.user.actor()
	}
	recs, err := s.o.Admin.Store.Recordings(r.Context(), f)
	if err != nil {
		s.log.Error("recordings: list", "err", err)
		s.renderAdmin(w, http.StatusInternalServerError, "recordings", sess, admin, "Recordings", "", "The recordings could not be read.", d)
		return
	}
	for _, rec := range recs {
		// The filter also matches display names; only the identity counts.
		if !d.All && rec.Identity != sess.user.actor() {
			continue
		}
		d.Rows = append(d.Rows, rowOf(rec))
	}
	s.renderAdmin(w, http.StatusOK, "recordings", sess, admin, "Recordings", "", "", d)
}

type recordingData struct {
	recordingRow
	Intact   bool
	Verdict  string
	Replay   string
	Notes    string
	Trimmed  bool
	CastPath string
}

// recordingFor looks up the recording of the request and checks that the
// viewer may see it: its owner, or an admin (audited).
func (s *Server) recordingFor(w http.ResponseWriter, r *http.Request) (*session, store.Recording, bool, bool) {
	sess, ok := s.signedInFor(w, r)
	if !ok {
		return nil, store.Recording{}, false, false
	}
	id := r.PathValue("id")
	if !recording.ValidID(id) {
		s.renderAdmin(w, http.StatusNotFound, "error", sess, s.isAdminNow(sess), "No such recording", "", "There is no recording with that ID.", nil)
		return nil, store.Recording{}, false, false
	}
	rec, err := s.o.Admin.Store.Recording(r.Context(), id)
	if err != nil {
		status, msg := http.StatusInternalServerError, "The recording could not be read."
		if errors.Is(err, store.ErrNotFound) {
			status, msg = http.StatusNotFound, "There is no recording with that ID."
		} else {
			s.log.Error("recordings: look up", "id", id, "err", err)
		}
		s.renderAdmin(w, status, "error", sess, s.isAdminNow(sess), "No such recording", "", msg, nil)
		return nil, store.Recording{}, false, false
	}
	if rec.Identity == sess.user.actor() {
		return sess, rec, s.isAdminNow(sess), true
	}
	_, admin, reason := s.decideAdmin(r.Context(), sess, r.Method+" "+r.URL.Path)
	if !admin {
		s.renderAdmin(w, http.StatusForbidden, "error", sess, false, "Not your recording",
			"", "This recording is of someone else's session; only admins see those: "+reason+".", nil)
		return nil, store.Recording{}, false, false
	}
	return sess, rec, true, true
}

// openRecordingFile opens the file of rec under the recordings folder,
// refusing an index path that would leave it.
func (s *Server) openRecordingFile(rec store.Recording) (*os.File, error) {
	dir := s.o.Admin.RecordingsDir
	if dir == "" {
		return nil, errors.New("no recordings folder is configured")
	}
	p := filepath.FromSlash(rec.Path)
	if !filepath.IsLocal(p) {
		return nil, fmt.Errorf("unsafe path %q in the index", rec.Path)
	}
	return os.Open(filepath.Join(dir, p))
}

func (s *Server) recordingPage(w http.ResponseWriter, r *http.Request) {
	sess, rec, admin, ok := s.recordingFor(w, r)
	if !ok {
		return
	}
	d := recordingData{recordingRow: rowOf(rec), CastPath: "/recordings/" + rec.ID + "/cast"}
	f, err := s.openRecordingFile(rec)
	if err != nil {
		s.log.Error("recordings: open", "id", rec.ID, "err", err)
		s.renderAdmin(w, http.StatusInternalServerError, "recording", sess, admin, "Recording "+rec.ID, "", "The recording file cannot be opened.", d)
		return
	}
	defer f.Close()
	rep, tr, err := verifyAndReplay(r.Context(), f, recording.VerifyOptions{Key: s.o.Admin.SessionCA, Index: &rec})
	switch {
	case err != nil:
		d.Verdict = "could not be read: " + err.Error()
	case !rep.Intact():
		if rep.Problem != nil {
			d.Verdict = "NOT INTACT: " + rep.Problem.Error()
			if rep.SignedBlocks > 0 {
				d.Verdict += fmt.Sprintf(" (blocks 0-%d verified and signed before that point)", rep.SignedBlocks-1)
			}
		} else {
			d.Verdict = "NOT INTACT: the index and the recording disagree"
		}
		for _, m := range rep.Mismatches {
			d.Verdict += "; " + m.String()
		}
	case s.o.Admin.SessionCA == nil:
		d.Intact, d.Verdict = true, fmt.Sprintf("digest chain intact (%d blocks), but no session CA key is configured to check the signature", rep.Blocks)
	default:
		d.Intact, d.Verdict = true, fmt.Sprintf("intact: %d blocks, %d bytes, final digest %s signed by the session CA", rep.Blocks, rep.Bytes, rep.Digest)
	}
	d.Replay, d.Notes, d.Trimmed = tr.text, tr.notes, tr.trimmed
	if tr.err != nil {
		d.Notes += "\n[the replay stopped: " + tr.err.Error() + "]"
	}
	afterRecordingCheck()
	s.renderAdmin(w, http.StatusOK, "recording", sess, admin, "Recording "+rec.ID, "", "", d)
}

// recordingCast downloads the asciicast file as it is stored, for
// `asciinema play` or `sallyport recordings verify`.
func (s *Server) recordingCast(w http.ResponseWriter, r *http.Request) {
	sess, rec, admin, ok := s.recordingFor(w, r)
	if !ok {
		return
	}
	f, err := s.openRecordingFile(rec)
	if err != nil {
		s.log.Error("recordings: open", "id", rec.ID, "err", err)
		s.renderAdmin(w, http.StatusInternalServerError, "error", sess, admin, "Recording "+rec.ID, "", "The recording file cannot be opened.", nil)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/x-asciicast")
	w.Header().Set("Content-Disposition", `attachment; filename="`+rec.ID+`.cast"`)
	io.Copy(w, f) //nolint:errcheck // the client went away
}

// transcript is the text replay of a recording (see replayText).
type transcript struct {
	text, notes string
	trimmed     bool  // cut off after maxReplayText of output
	err         error // why the replay stopped before the end, if it did
}

// verifyAndReplay verifies the recording read from r and makes its
// transcript in the same pass, from the bytes as the verification reads
// them: so the transcript shows exactly bytes that were verified, not
// what the file may hold by the time it would be read again. Only the
// transcript is kept: once it holds maxReplayText of output, the rest of
// the file is verified and dropped.
func verifyAndReplay(ctx context.Context, r io.Reader, opts recording.VerifyOptions) (*recording.Report, transcript, error) {
	pr, pw := io.Pipe()
	done := make(chan transcript, 1)
	go func() {
		var tr transcript
		tr.text, tr.notes, tr.trimmed, tr.err = replayText(ctx, pr)
		pr.Close() // the feed drops the rest
		done <- tr
	}()
	rep, err := recording.Verify(io.TeeReader(r, &replayFeed{w: pw}), opts)
	pw.Close()
	return rep, <-done, err
}

// replayFeed hands what the verification reads to the replay, until the
// replay has stopped reading; it never fails the verification.
type replayFeed struct {
	w       *io.PipeWriter
	stopped bool
}

func (f *replayFeed) Write(p []byte) (int, error) {
	if !f.stopped {
		if _, err := f.w.Write(p); err != nil {
			f.stopped = true
		}
	}
	return len(p), nil
}

// capWriter keeps the first n bytes written and reports the rest as an
// error, so a huge recording stops the replay early.
type capWriter struct {
	buf bytes.Buffer
	n   int
}

var errTrimmed = errors.New("replay trimmed")

func (c *capWriter) Write(p []byte) (int, error) {
	room := c.n - c.buf.Len()
	if len(p) > room {
		c.buf.Write(p[:max(room, 0)])
		return max(room, 0), errTrimmed
	}
	return c.buf.Write(p)
}

// replayText plays the recording at once (no pauses) through
// recording.Play, which neutralises everything a recorded program could do
// to a terminal with a SafeWriter, and turns what is left into plain text
// for a <pre>: escape sequences that only move the cursor or set colours
// are dropped, carriage returns end lines. It is a transcript, not a
// terminal emulation; download the file for a faithful replay.
func replayText(ctx context.Context, f io.Reader) (text, notes string, trimmed bool, err error) {
	rd, err := recording.NewReader(f)
	if err != nil {
		return "", "", false, err
	}
	out := &capWriter{n: maxReplayText}
	var nb bytes.Buffer
	err = recording.Play(ctx, out, rd, recording.PlayOptions{Notes: &nb,
		Sleep: func(context.Context, time.Duration) error { return nil }})
	if errors.Is(err, errTrimmed) {
		trimmed, err = true, nil
	}
	return plainText(out.buf.Bytes()), nb.String(), trimmed, err
}

// skipEscape returns the index just after the escape sequence whose ESC
// is at i-1: a CSI with its parameters; a control string (OSC, DCS, SOS,
// PM, APC) up to BEL or ST; or intermediate bytes and a final byte, as in
// ESC ( B.
func skipEscape(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '[':
		i++
		for i < len(b) && (b[i] < 0x40 || b[i] > 0x7e) {
			i++
		}
		return i + 1
	case ']', 'P', 'X', '^', '_':
		for i++; i < len(b); i++ {
			if b[i] == 0x07 {
				return i + 1
			}
			if b[i] == 0x1b && i+1 < len(b) && b[i+1] == '\\' {
				return i + 2
			}
		}
		return i
	}
	for i < len(b) && b[i] >= 0x20 && b[i] <= 0x2f {
		i++
	}
	return i + 1
}

// plainText removes what is left of terminal control from b: ESC
// sequences (CSI with its parameters, control strings, charset and other
// sequences with intermediate bytes), C0 controls but
// newline and tab, with "\r\n" and lone "\r" becoming "\n" and backspace
// deleting the character before it.
func plainText(b []byte) string {
	// Bytes, not runes: a transcript of maxReplayText would take four
	// times as much as runes.
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c == 0x1b:
			i = skipEscape(b, i+1)
			continue
		case c == '\r':
			if i+1 < len(b) && b[i+1] == '\n' {
				i++
			}
			out = append(out, '\n')
		case c == '\b':
			if n := len(out); n > 0 && out[n-1] != '\n' {
				_, size := utf8.DecodeLastRune(out)
				out = out[:n-size]
			}
		case c == '\n' || c == '\t':
			out = append(out, c)
		case c < 0x20 || c == 0x7f:
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r >= 0x80 && r < 0xa0 {
				r = utf8.RuneError // C1 controls
			}
			out = utf8.AppendRune(out, r)
			i += size
			continue
		}
		i++
	}
	return string(out)
}
