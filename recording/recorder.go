package recording

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/store"
)

// Index is the part of the store a Recorder needs: one row per recording,
// added when it starts and completed when it ends. *store.SQLite implements
// it.
type Index interface {
	// AddRecording records a recording that has started. It must be
	// committed before it returns.
	AddRecording(ctx context.Context, r store.Recording) error
	// FinishRecording completes the row of r.ID with its end, counts, exit
	// status, final digest and signature.
	FinishRecording(ctx context.Context, r store.Recording) error
}

// Defaults for the zero values of Options fields.
const (
	DefaultFlushInterval = 500 * time.Millisecond
	DefaultFlushSize     = 256 << 10
	DefaultMaxPending    = 4 << 20
	DefaultBulkHead      = 64 << 10
	DefaultBulkText      = 8 << 20
	DefaultSignInterval  = time.Second
	// DefaultFlushTimeout is long enough that a disk which is slow for a
	// moment (a backup, a throttled cloud volume) ends no session, and
	// short enough that a hung one does not leave sessions unrecorded for
	// long.
	DefaultFlushTimeout = time.Minute
)

// errClosed is returned by writes after Close has begun.
var errClosed = errors.New("recording: write after close")

// ErrFailed is wrapped by every error a Session returns once its recording
// could not be written. The bastion must then end the session.
var ErrFailed = errors.New("recording failed")

// errFileGone is wrapped by the failure of a recording whose file was
// removed or replaced while it was written.
var errFileGone = errors.New("recording file removed or replaced")

// errStalled is wrapped by the failure of a recording whose file did not
// answer a write or fsync within FlushTimeout (a hung disk or NFS server).
var errStalled = errors.New("recording file stalled")

// ErrSize is wrapped by the error Resize returns for a terminal size it does
// not record (zero or over MaxTermSize). The recording is unharmed: the
// session goes on.
var ErrSize = errors.New("terminal size out of range")

// MaxTermSize is the largest terminal width or height recorded.
const MaxTermSize = 10000

// Options configures a Recorder.
type Options struct {
	// Dir is the folder recordings are written under, as
	// Dir/YYYY/MM/ID.cast (UTC start date), created with mode 0700; required.
	// Sallyport uses DATA/recordings.
	Dir string
	// Index records each recording in the store; required.
	Index Index
	// Signer signs chain checkpoints and the final digest; required.
	// Sallyport uses the session CA.
	Signer ssh.Signer
	// Now is the clock; nil means time.Now. Event times are differences of
	// its readings, so it should carry a monotonic reading.
	Now func() time.Time
	// Rand is the source for recording IDs and signatures; nil means
	// crypto/rand.Reader.
	Rand io.Reader
	// FlushInterval is the longest time recorded data waits in memory
	// before it is written and fsynced; 0 means DefaultFlushInterval.
	// Values above one second are refused (a crash may lose at most one
	// second).
	FlushInterval time.Duration
	// FlushSize is how much pending data triggers an early write (without
	// fsync); 0 means DefaultFlushSize.
	FlushSize int
	// MaxPending bounds the memory a session may hold waiting for the disk;
	// a Write past it waits. 0 means DefaultMaxPending.
	MaxPending int
	// BulkHead is how many bytes of each stream of an exec or subsystem
	// channel without a pty are kept in the recording (of stdin only when
	// Meta.RecordInput is set); 0 means DefaultBulkHead.
	BulkHead int
	// BulkText is how many bytes of such a stream are kept while it is
	// text (UTF-8 without NUL bytes), so that the output of a script piped
	// to `ssh host sh`, or of `journalctl`, is kept as a shell's would be;
	// from the first write that is not text, nothing more is kept past what
	// already is or past BulkHead bytes, whichever is more. 0 means
	// DefaultBulkText; less than BulkHead means BulkHead.
	BulkText int
	// SignInterval is the least time between signed checkpoints; 0 means
	// DefaultSignInterval. The first timed flush past it signs whatever is
	// unsigned, over an empty block if nothing new was written, so nothing
	// stays unsigned for longer than SignInterval and a flush. The final
	// digest is always signed.
	SignInterval time.Duration
	// FlushTimeout is the longest a flush's write, fsync and file check
	// (or Close's) may take: past it the recording fails (Session.Failed
	// closes, as for a write error) and Close stops waiting for the disk,
	// so a hung disk ends the session instead of letting it run
	// unrecorded. Once a flush has taken a quarter of FlushTimeout, writes
	// of an exec or subsystem channel without a pty wait for it, so that
	// its output does not run far ahead of what reaches the disk (a
	// terminal's output waits anyway once MaxPending is held). 0 means
	// DefaultFlushTimeout; it is at least twice FlushInterval.
	FlushTimeout time.Duration
}

// Recorder starts recordings. It is safe for concurrent use.
type Recorder struct {
	opts Options
}

// New returns a Recorder, checking opts. It does not touch the disk.
func New(opts Options) (*Recorder, error) {
	switch {
	case opts.Dir == "":
		return nil, errors.New("recording: no folder")
	case opts.Index == nil:
		return nil, errors.New("recording: no index")
	case opts.Signer == nil:
		return nil, errors.New("recording: no signer")
	case opts.FlushInterval < 0 || opts.FlushInterval > time.Second:
		return nil, fmt.Errorf("recording: flush interval %v not in (0, 1s]", opts.FlushInterval)
	case opts.FlushSize < 0 || opts.MaxPending < 0 || opts.BulkHead < 0 || opts.BulkText < 0 || opts.SignInterval < 0 || opts.FlushTimeout < 0:
		return nil, errors.New("recording: negative limit")
	}
	if err := checkSigner(opts.Signer); err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.FlushInterval == 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.FlushSize == 0 {
		opts.FlushSize = DefaultFlushSize
	}
	if opts.MaxPending == 0 {
		opts.MaxPending = DefaultMaxPending
	}
	if opts.MaxPending < opts.FlushSize {
		opts.MaxPending = opts.FlushSize
	}
	if opts.BulkHead == 0 {
		opts.BulkHead = DefaultBulkHead
	}
	if opts.BulkText == 0 {
		opts.BulkText = DefaultBulkText
	}
	opts.BulkText = max(opts.BulkText, opts.BulkHead)
	if opts.SignInterval == 0 {
		opts.SignInterval = DefaultSignInterval
	}
	if opts.FlushTimeout == 0 {
		opts.FlushTimeout = DefaultFlushTimeout
	}
	opts.FlushTimeout = max(opts.FlushTimeout, 2*opts.FlushInterval)
	return &Recorder{opts: opts}, nil
}

// Meta describes the session channel being recorded. Strings are untrusted
// (they come from the client); they are escaped wherever they are shown.
type Meta struct {
	// ID names the recording and its file; "" means a new random ID. A given
	// ID must match [A-Za-z0-9_-]{1,64}.
	ID string
	// SessionID is the bastion's ID of the SSH connection this channel
	// belongs to; "" means none. Several channels of one connection are
	// several recordings with the same SessionID.
	SessionID string
	// Identity is who connected, e.g. "github:12345"; required.
	Identity string
	// User is the person's display name, e.g. the GitHub login; "" means
	// Identity is shown instead.
	User string
	// Login is the principal on the target, e.g. "root"; required.
	Login string
	// Host is the target's policy name; required.
	Host string
	// Command is the exec command line (the forced command when one is
	// enforced), or the subsystem as "subsystem: NAME"; "" means a shell.
	Command string
	// PTY says the channel has a pseudo-terminal. A channel with a pty, or
	// without a Command (a shell), is recorded in full; an exec or
	// subsystem channel without a pty is kept by the bulk rule (see the
	// package doc).
	PTY bool
	// Width and Height are the terminal size; 0, or either over
	// MaxTermSize, means 80x24.
	Width, Height int
	// Term is the client's TERM; "" means none recorded.
	Term string
	// Shell is the SHELL put in the header env; "" means none.
	Shell string
	// RecordInput records the input ("i" events), as the policy's
	// record_input asks: in full on a pty or a shell, the first
	// Options.BulkHead bytes on an exec or subsystem channel without a pty.
	// When it is false no input is recorded, with or without a pty: input
	// holds typed passwords (sudo -S), uploaded files and piped scripts.
	// Input bytes are always counted, and hashed on a bulk channel.
	RecordInput bool
}

// bulk reports whether the channel is kept by the bulk rule: an exec or
// subsystem channel without a pty. A shell without a pty is recorded in
// full, or typed commands and their output would escape the recording.
func (m Meta) bulk() bool { return !m.PTY && m.Command != "" }

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidID reports whether id can name a recording.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// Start creates the recording file, writes and fsyncs its header, and adds
// it to the index. If it fails the session must be refused. The returned
// Session must be closed.
func (rc *Recorder) Start(ctx context.Context, m Meta) (*Session, error) {
	o := rc.opts
	start := o.Now()
	if m.ID == "" {
		var b [8]byte
		if _, err := io.ReadFull(o.Rand, b[:]); err != nil {
			return nil, fmt.Errorf("recording: start: new ID: %w", err)
		}
		m.ID = start.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
	}
	fail := func(err error) error { return fmt.Errorf("recording: start %s: %w", m.ID, err) }
	switch {
	case !ValidID(m.ID):
		return nil, fmt.Errorf("recording: start: invalid ID %q", m.ID)
	case m.Identity == "" || m.Login == "" || m.Host == "":
		return nil, fail(errors.New("identity, login and host are required"))
	case m.Width < 0 || m.Height < 0:
		return nil, fail(errors.New("negative terminal size"))
	}
	if m.Width == 0 || m.Height == 0 || m.Width > MaxTermSize || m.Height > MaxTermSize {
		m.Width, m.Height = 80, 24
	}
	rel := filepath.Join(start.UTC().Format("2006"), start.UTC().Format("01"), m.ID+".cast")
	path := filepath.Join(o.Dir, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fail(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fail(err)
	}
	s := &Session{
		rc: rc, meta: m, path: path, rel: rel, f: f, start: start,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		failed: make(chan struct{}), stalled: make(chan struct{}), lastSig: start,
	}
	s.cond = sync.NewCond(&s.mu)
	s.chain.init()
	if m.bulk() {
		s.bulk = true
		for i := range s.streams {
			// Input is hashed only when it is recorded: an unsalted
			// digest of a short input (a password piped to sudo -S)
			// would give it away to a dictionary.
			if i != streamIn || m.RecordInput {
				s.streams[i].hash = sha256.New()
			}
		}
	}
	hdr, err := s.header()
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, fail(err)
	}
	block, err := s.appendChain(append(hdr, '\n'), start, true)
	if err == nil {
		_, err = f.Write(block)
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, fail(err)
	}
	s.fileBytes = int64(len(block))
	s.noteWritten()
	if err := o.Index.AddRecording(ctx, s.indexRow()); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fail(fmt.Errorf("index: %w", err))
	}
	go s.run()
	return s, nil
}

// file is what a Session needs of its *os.File; tests substitute failures.
type file interface {
	io.Writer
	Sync() error
	Close() error
}

// Stream numbers.
const (
	streamOut = iota
	streamErr
	streamIn
	numStreams
)

type pendEvent struct {
	t      time.Duration
	stream uint8 // streamOut, streamErr, streamIn; resize when kind is 'r'
	kind   byte  // 'o', 'i' or 'r'
	n      int   // bytes of pend
	last   bool  // the stream's last kept bytes (bulk head full)
}

type streamState struct {
	// mu is held by a bulk stream's Write from its check under Session.mu
	// until its data is queued, so that it reaches the hasher in the order
	// it was counted. Lock it before Session.mu.
	mu sync.Mutex
	// hash is nil for channels kept in full. It is written by the hasher
	// goroutine and read only once that has ended.
	hash  hash.Hash
	bytes int64 // under Session.mu
	kept  int64 // bytes kept in the recording, under Session.mu
	// binary is set, on a bulk channel, from the first write that is not
	// text: from then on the stream's head is BulkHead, not BulkText.
	// Under Session.mu.
	binary bool
	text   textState // on a bulk channel until binary, under Session.mu
	carry  []byte    // incomplete UTF-8 at the end of the last event; writer goroutine only
}

// Session is the recording of one session channel. Its writers are safe for
// concurrent use with each other and with Resize; Close must be called once,
// after the last Write.
type Session struct {
	rc    *Recorder
	meta  Meta
	path  string
	rel   string
	f     file
	start time.Time
	bulk  bool

	mu         sync.Mutex
	cond       *sync.Cond // signalled when pend is taken by the writer
	pend       []byte
	evs        []pendEvent
	err        error // first failure; every later Write returns it
	closing    bool
	streams    [numStreams]streamState
	size       [2]int // last resize, for the end record
	failedOnce sync.Once
	hasher     *hasher // of a bulk channel; nil until its first write
	// ioGen numbers the file I/O the watchdog watches: it changes when
	// I/O starts and when it ends, so a watchdog timer of I/O that has
	// ended does nothing.
	ioGen uint64
	// overdue is set while the writer's I/O has taken a quarter of
	// FlushTimeout or more: writes of a bulk channel then wait.
	overdue bool
	// written is what has been written to the file.
	written     writtenState
	stalledOnce sync.Once

	kick    chan struct{} // size-triggered flush
	stop    chan struct{} // closed by Close
	done    chan struct{} // closed when run returns
	failed  chan struct{} // closed on failure
	stalled chan struct{} // closed when file I/O did not return within FlushTimeout

	// closeRec is what Close hands the writer to end the file with, set
	// before stop is closed; closeAt is when the writer ended it, read by
	// Close once done is closed.
	closeRec endRecord
	closeAt  time.Time

	// Writer goroutine (and Start/Close) only.
	spare     []byte
	spareEvs  []pendEvent
	out       []byte
	chain     chainState
	lastSig   time.Time
	unsigned  bool // the last chain record written is not signed
	unsynced  bool // a block was written since the last fsync
	unchecked bool // a block was written since the last checkFile
	fileBytes int64
	lastProg  [numStreams]int64
}

// ID is the recording's ID.
func (s *Session) ID() string { return s.meta.ID }

// Path is the recording file's path.
func (s *Session) Path() string { return s.path }

// Failed is closed when the recording can no longer be written; the bastion
// must then end the session. Err says why.
func (s *Session) Failed() <-chan struct{} { return s.failed }

// Err returns the failure that closed Failed, wrapping ErrFailed, or nil.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Stdout returns the writer for the channel's output (target to user). Each
// Write is recorded before it returns (in memory; on disk within
// FlushInterval) and fails, wrapping ErrFailed, once the recording has
// failed.
func (s *Session) Stdout() io.Writer { return streamWriter{s, streamOut} }

// Stderr returns the writer for the channel's extended data (stderr).
func (s *Session) Stderr() io.Writer { return streamWriter{s, streamErr} }

// Stdin returns the writer for the channel's input (user to target). Input
// is counted always (and hashed on a bulk channel) and recorded only when
// Meta.RecordInput is set, with or without a pty.
func (s *Session) Stdin() io.Writer { return streamWriter{s, streamIn} }

type streamWriter struct {
	s      *Session
	stream uint8
}

func (w streamWriter) Write(p []byte) (int, error) { return w.s.write(w.stream, p) }

// Resize records a window change. A size of zero or over MaxTermSize is not
// recorded: the error wraps ErrSize, not ErrFailed, and the recording goes on.
func (s *Session) Resize(width, height int) error {
	if width <= 0 || height <= 0 || width > MaxTermSize || height > MaxTermSize {
		return fmt.Errorf("recording: resize to %dx%d: %w", width, height, ErrSize)
	}
	d := strconv.Itoa(width) + "x" + strconv.Itoa(height)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if s.closing {
		return errClosed
	}
	s.size = [2]int{width, height}
	s.appendLocked(pendEvent{kind: 'r', t: s.sinceLocked()}, []byte(d))
	return nil
}

func (s *Session) sinceLocked() time.Duration {
	return s.rc.opts.Now().Sub(s.start)
}

// coalesce is how close in time consecutive writes of one stream must be to
// share one event: below what a viewer can tell apart.
const coalesce = 10 * time.Millisecond

func (s *Session) write(stream uint8, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if s.bulk {
		return s.writeBulk(stream, p)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	if s.closing {
		return 0, errClosed
	}
	st := &s.streams[stream]
	st.bytes += int64(len(p))
	if stream == streamIn && !s.meta.RecordInput {
		return len(p), nil
	}
	for len(s.pend) >= s.rc.opts.MaxPending && s.err == nil && !s.closing {
		s.kickFlush()
		s.cond.Wait()
	}
	if s.err != nil {
		return 0, s.err
	}
	if s.closing {
		return 0, errClosed
	}
	st.kept += int64(len(p))
	kind := byte('o')
	if stream == streamIn {
		kind = 'i'
	}
	s.appendLocked(pendEvent{t: s.sinceLocked(), stream: stream, kind: kind}, p)
	return len(p), nil
}

func (s *Session) writeBulk(stream uint8, p []byte) (int, error) {
	st := &s.streams[stream]
	st.mu.Lock()
	defer st.mu.Unlock()
	h, err := s.countBulk(stream, p)
	if err != nil {
		return 0, err
	}
	if st.hash != nil {
		h.write(stream, p)
	}
	return len(p), nil
}

// countBulk counts p, keeps what of it fits in the stream's head, and
// returns the hasher, starting it on the first write.
func (s *Session) countBulk(stream uint8, p []byte) (*hasher, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Past its head a bulk stream costs the disk nothing, so nothing else
	// holds it back: while a flush is overdue it waits, until the flush
	// ends or the watchdog fails the recording.
	for s.overdue && s.err == nil && !s.closing {
		s.cond.Wait()
	}
	if s.err != nil {
		return nil, s.err
	}
	if s.closing {
		return nil, errClosed
	}
	if s.hasher == nil {
		var hs [numStreams]hash.Hash
		for i := range s.streams {
			hs[i] = s.streams[i].hash
		}
		s.hasher = startHasher(hs)
	}
	st := &s.streams[stream]
	st.bytes += int64(len(p))
	if stream == streamIn && !s.meta.RecordInput {
		return s.hasher, nil // counted only
	}
	limit := int64(s.rc.opts.BulkHead)
	if !st.binary && st.kept < int64(s.rc.opts.BulkText) {
		if st.text.next(p) {
			limit = int64(s.rc.opts.BulkText)
		} else {
			st.binary = true
		}
	}
	room := limit - st.kept
	if room <= 0 {
		return s.hasher, nil
	}
	keep := p
	if int64(len(keep)) > room {
		keep = keep[:room]
	}
	st.kept += int64(len(keep))
	kind := byte('o')
	if stream == streamIn {
		kind = 'i'
	}
	s.appendLocked(pendEvent{t: s.sinceLocked(), stream: stream, kind: kind, last: st.kept == limit}, keep)
	return s.hasher, nil
}

// stopHash waits until every byte of an accepted Write is hashed and ends
// the hasher, if it started. Writes must already be refused (s.err or
// s.closing set). It may be called more than once and concurrently; every
// call returns once the hashes are final.
func (s *Session) stopHash() {
	// An accepted Write holds its stream's lock until its data is queued;
	// later ones are refused.
	for i := range s.streams {
		s.streams[i].mu.Lock()
	}
	s.mu.Lock()
	h := s.hasher
	s.mu.Unlock()
	for i := range s.streams {
		s.streams[i].mu.Unlock()
	}
	if h != nil {
		h.stop()
	}
}

// appendLocked queues an event, merging it into the previous one when it
// continues the same stream within coalesce.
func (s *Session) appendLocked(e pendEvent, data []byte) {
	s.pend = append(s.pend, data...)
	e.n = len(data)
	if k := len(s.evs) - 1; k >= 0 && e.kind != 'r' {
		last := &s.evs[k]
		if last.kind == e.kind && last.stream == e.stream && e.t-last.t < coalesce {
			last.n += e.n
			last.last = e.last
			s.maybeKick()
			return
		}
	}
	s.evs = append(s.evs, e)
	s.maybeKick()
}

func (s *Session) maybeKick() {
	if len(s.pend) >= s.rc.opts.FlushSize {
		s.kickFlush()
	}
}

func (s *Session) kickFlush() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// StreamSummary is what was recorded of one stream.
type StreamSummary struct {
	// Bytes is how many bytes passed.
	Bytes int64 `json:"bytes"`
	// Kept is how many of them are in the recording's events.
	Kept int64 `json:"kept"`
	// SHA256 is the hex SHA-256 of all Bytes; "" for channels kept in full
	// (a pty, or a shell), and for input that is not recorded.
	SHA256 string `json:"sha256,omitempty"`
}

// End says how a session channel ended.
type End struct {
	// ExitStatus is the command's exit status; -1 means none was sent.
	ExitStatus int
	// ExitSignal is the signal that ended the command, e.g. "TERM"; ""
	// means none.
	ExitSignal string
	// Reason says why the bastion ended the channel, e.g. "revoked"; ""
	// means it ended normally.
	Reason string
}

// Summary is the result of a closed recording, as stored in the index.
type Summary struct {
	ID       string
	Path     string
	Start    time.Time
	End      time.Time
	Stdout   StreamSummary
	Stderr   StreamSummary
	Stdin    StreamSummary
	Blocks   int
	Bytes    int64 // size of the file
	Digest   string
	Signer   string // ssh.FingerprintSHA256 of the signing key
	Failure  string // why the recording failed; "" if it did not
	Complete bool   // the final record was written and signed
}

type endRecord struct {
	ExitStatus int           `json:"exit_status"`
	ExitSignal string        `json:"exit_signal,omitempty"`
	Reason     string        `json:"reason,omitempty"`
	Duration   float64       `json:"duration"`
	Width      int           `json:"width,omitempty"`
	Height     int           `json:"height,omitempty"`
	Stdout     StreamSummary `json:"stdout"`
	Stderr     StreamSummary `json:"stderr"`
	Stdin      StreamSummary `json:"stdin"`
}

// Close writes what is pending, the end record and the signed final digest,
// fsyncs and closes the file, and completes the index row. It returns an
// error wrapping ErrFailed if the recording failed at any point; the index
// row then says so. It waits for the disk at most FlushTimeout: a file
// that does not answer fails the recording, and the writer closes it if
// it ever does.
func (s *Session) Close(ctx context.Context, end End) (Summary, error) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return Summary{}, errors.New("recording: close: already closed")
	}
	s.closing = true
	s.mu.Unlock()
	s.cond.Broadcast() // a Write waiting for the disk gives up
	s.stopHash()

	s.mu.Lock()
	size := s.size
	var sums [numStreams]StreamSummary
	for i := range s.streams {
		st := &s.streams[i]
		sums[i] = StreamSummary{Bytes: st.bytes, Kept: st.kept}
		if st.hash != nil {
			sums[i].SHA256 = hex.EncodeToString(st.hash.Sum(nil))
		}
	}
	s.mu.Unlock()
	s.closeRec = endRecord{ExitStatus: end.ExitStatus, ExitSignal: EncodeBytes([]byte(end.ExitSignal)), Reason: EncodeBytes([]byte(end.Reason)),
		Width: size[0], Height: size[1], Stdout: sums[streamOut], Stderr: sums[streamErr], Stdin: sums[streamIn]}
	close(s.stop)
	select {
	case <-s.done:
	case <-s.stalled:
		// The writer is stuck in a write, fsync or close that the
		// watchdog gave up on; it closes the file if that ever returns.
	}
	var endAt time.Time
	select {
	case <-s.done:
		endAt = s.closeAt
	default:
		endAt = s.rc.opts.Now()
	}

	s.mu.Lock()
	w := s.written
	s.mu.Unlock()
	// The writer has finished the file, or failed the recording: the file
	// is complete unless the recording failed.
	ferr := s.Err()
	sum := Summary{
		ID: s.meta.ID, Path: s.path, Start: s.start, End: endAt,
		Stdout: sums[streamOut], Stderr: sums[streamErr], Stdin: sums[streamIn],
		Signer:   ssh.FingerprintSHA256(s.rc.opts.Signer.PublicKey()),
		Blocks:   w.blocks,
		Bytes:    w.bytes,
		Digest:   w.digest,
		Complete: ferr == nil,
	}
	var errs []error
	if ferr != nil {
		errs = append(errs, ferr)
		sum.Failure = ferr.Error()
	}
	row := s.indexRow()
	row.End = endAt
	row.BytesOut = sum.Stdout.Bytes + sum.Stderr.Bytes
	row.BytesIn = sum.Stdin.Bytes
	row.StdoutSHA256, row.StdinSHA256 = sum.Stdout.SHA256, sum.Stdin.SHA256
	row.ExitStatus, row.ExitSignal = end.ExitStatus, end.ExitSignal
	row.Reason = end.Reason
	if sum.Failure != "" {
		row.Reason = strings.TrimSpace(row.Reason + "; " + sum.Failure)
		row.Reason = strings.TrimPrefix(row.Reason, "; ")
	}
	if sum.Complete {
		row.Digest = sum.Digest
		row.Signature = w.lastSig
	}
	row.FileBytes = sum.Bytes
	if err := s.rc.opts.Index.FinishRecording(ctx, row); err != nil {
		errs = append(errs, fmt.Errorf("recording: close %s: index: %w", s.meta.ID, err))
	}
	return sum, errors.Join(errs...)
}

func (s *Session) indexRow() store.Recording {
	return store.Recording{
		ID: s.meta.ID, SessionID: s.meta.SessionID, Identity: s.meta.Identity, User: s.meta.User,
		Login: s.meta.Login, Host: s.meta.Host, Command: s.meta.Command, PTY: s.meta.PTY,
		InputRecorded: s.meta.RecordInput, Path: filepath.ToSlash(s.rel), Start: s.start, ExitStatus: -1,
		SignerFingerprint: ssh.FingerprintSHA256(s.rc.opts.Signer.PublicKey()),
	}
}

// header is the asciicast header line, without its newline.
func (s *Session) header() ([]byte, error) {
	m := s.meta
	env := map[string]string{}
	if m.Term != "" {
		env["TERM"] = m.Term
	}
	if m.Shell != "" {
		env["SHELL"] = m.Shell
	}
	// Strings from the client may hold bytes that are not UTF-8, which
	// JSON cannot: they are stored as event data is (see EncodeBytes), so
	// that the header still says exactly what the index does.
	enc := func(s string) string { return EncodeBytes([]byte(s)) }
	for k, v := range env {
		env[k] = enc(v)
	}
	h := Header{
		Version: 2, Width: m.Width, Height: m.Height, Timestamp: s.start.Unix(),
		Env: env, Title: Title(m), Command: enc(m.Command),
		Sallyport: &HeaderInfo{
			Format: formatVersion, ID: m.ID, SessionID: enc(m.SessionID), Identity: enc(m.Identity), User: enc(m.User),
			Login: enc(m.Login), Host: enc(m.Host), PTY: m.PTY, Input: m.RecordInput,
			Signer: ssh.FingerprintSHA256(s.rc.opts.Signer.PublicKey()),
		},
	}
	if m.bulk() {
		h.Sallyport.BulkHead, h.Sallyport.BulkText = s.rc.opts.BulkHead, s.rc.opts.BulkText
	}
	return json.Marshal(h)
}

// Title names user, login and host for a recording's title, with control
// and other non-printing characters escaped and each part bounded.
func Title(m Meta) string {
	who := m.User
	if who == "" {
		who = m.Identity
	} else if m.Identity != "" {
		who += " (" + m.Identity + ")"
	}
	t := Escape(who, 128) + " as " + Escape(m.Login, 64) + "@" + Escape(m.Host, 128)
	if m.Command != "" {
		t += ": " + Escape(m.Command, 256)
	}
	return t
}

// Escape returns s with every non-printing rune, backslash and invalid byte
// escaped Go-style (\x1b, \u202e), cut to at most max runes with "…".
func Escape(s string, max int) string {
	var b strings.Builder
	n := 0
	for i, r := range s {
		if n == max {
			b.WriteString("…")
			break
		}
		n++
		switch {
		case r == utf8.RuneError && invalidAt(s, i):
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case unicode.IsPrint(r) || r == ' ':
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < 0x10000:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	return b.String()
}
