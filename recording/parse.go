package recording

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
)

// MaxLine is the longest line a Reader accepts. Lines Sallyport writes are
// far shorter (FlushSize bytes of output escape to at most 12 times that).
const MaxLine = 16 << 20

// Header is the first line of an asciicast v2 file.
type Header struct {
	Version       int               `json:"version"`
	Width         int               `json:"width"`
	Height        int               `json:"height"`
	Timestamp     int64             `json:"timestamp,omitempty"`
	IdleTimeLimit float64           `json:"idle_time_limit,omitempty"`
	Command       string            `json:"command,omitempty"`
	Title         string            `json:"title,omitempty"`
	Env           map[string]string `json:"env,omitempty"`
	// Sallyport is Sallyport's own metadata; nil in other asciicast files.
	Sallyport *HeaderInfo `json:"sallyport,omitempty"`
}

// formatVersion is the version of Sallyport's recording format
// (HeaderInfo.Format) that this package writes and verifies.
const formatVersion = 1

// HeaderInfo is the "sallyport" object of a recording's header. Its strings
// and the header's command and env values are stored as event text is (see
// EncodeBytes); NewReader decodes them.
type HeaderInfo struct {
	Format    int    `json:"format"`
	ID        string `json:"id"`
	SessionID string `json:"session_id,omitempty"`
	Identity  string `json:"identity"`
	User      string `json:"user,omitempty"`
	Login     string `json:"login"`
	Host      string `json:"host"`
	PTY       bool   `json:"pty"`
	// Input says input ("i" events) is in the recording, which is so only
	// when the policy's record_input asks, with or without a pty.
	Input bool `json:"input"`
	// BulkHead is the bytes kept per stream (stdout, stderr, and stdin when
	// Input is set) of an exec or subsystem channel without a pty; 0 when
	// every stream is kept in full (a pty, or a shell).
	BulkHead int `json:"bulk_head,omitempty"`
	// BulkText is the bytes kept of such a stream while it is text (UTF-8
	// without NUL bytes); 0 in recordings made before it existed, which
	// kept BulkHead bytes of every stream.
	BulkText int `json:"bulk_text,omitempty"`
	// Signer is ssh.FingerprintSHA256 of the key signing the chain.
	Signer string `json:"signer"`
}

// Event is one event line.
type Event struct {
	// Time is seconds since the start of the recording.
	Time float64
	// Type is "o" (output), "i" (input), "r" (resize), "m" (marker) or
	// "sallyport" (Sallyport's records).
	Type string
	// Data is the event's text; see DecodeBytes for the bytes it stands for.
	Data string
	// Line is the 1-based line number and Offset the byte offset of the
	// line in the file.
	Line   int
	Offset int64
}

// Reader reads an asciicast v2 file, one event at a time. It accepts any
// asciicast v2 file, not only Sallyport's.
type Reader struct {
	br     *bufio.Reader
	line   int
	off    int64
	Header Header
}

// ErrFormat is wrapped by errors about malformed input.
var ErrFormat = errors.New("not a valid asciicast v2 file")

// NewReader reads the header from r.
func NewReader(r io.Reader) (*Reader, error) {
	rd := &Reader{br: bufio.NewReaderSize(r, 64<<10)}
	line, err := rd.readLine()
	if err == io.EOF {
		return nil, fmt.Errorf("%w: empty file", ErrFormat)
	}
	if err != nil {
		return nil, err
	}
	h, err := parseHeader(line)
	if err != nil {
		return nil, fmt.Errorf("line 1: %w", err)
	}
	rd.Header = h
	return rd, nil
}

func parseHeader(line []byte) (Header, error) {
	var h Header
	if err := json.Unmarshal(line, &h); err != nil {
		return Header{}, fmt.Errorf("%w: header: %w", ErrFormat, err)
	}
	if h.Version != 2 {
		return Header{}, fmt.Errorf("%w: header version %d", ErrFormat, h.Version)
	}
	if h.Width <= 0 || h.Height <= 0 {
		return Header{}, fmt.Errorf("%w: header size %dx%d", ErrFormat, h.Width, h.Height)
	}
	if info := h.Sallyport; info != nil {
		dec := func(s *string) { *s = string(DecodeBytes(*s)) }
		dec(&h.Command)
		for k, v := range h.Env {
			dec(&v)
			h.Env[k] = v
		}
		for _, s := range []*string{&info.SessionID, &info.Identity, &info.User, &info.Login, &info.Host} {
			dec(s)
		}
	}
	return h, nil
}

// readLine returns the next line without its newline, io.EOF at the end,
// and an error for a line over MaxLine or one cut short without a newline
// (io.ErrUnexpectedEOF).
func (rd *Reader) readLine() ([]byte, error) {
	var buf []byte
	for {
		frag, err := rd.br.ReadSlice('\n')
		if len(buf)+len(frag) > MaxLine+1 {
			return nil, fmt.Errorf("%w: line %d longer than %d bytes", ErrFormat, rd.line+1, MaxLine)
		}
		switch err {
		case nil:
			rd.line++
			if buf == nil {
				buf = frag
			} else {
				buf = append(buf, frag...)
			}
			rd.off += int64(len(buf))
			return buf[:len(buf)-1], nil
		case bufio.ErrBufferFull:
			buf = append(buf, frag...)
			continue
		case io.EOF:
			if len(buf)+len(frag) == 0 {
				return nil, io.EOF
			}
			rd.line++
			start := rd.off
			rd.off += int64(len(buf) + len(frag))
			return nil, fmt.Errorf("%w: line %d at byte %d has no newline (file cut short)", io.ErrUnexpectedEOF, rd.line, start)
		default:
			return nil, err
		}
	}
}

// Next returns the next event, or io.EOF after the last.
func (rd *Reader) Next() (Event, error) {
	off := rd.off
	line, err := rd.readLine()
	if err != nil {
		return Event{}, err
	}
	e, err := parseEvent(line)
	if err != nil {
		return Event{}, fmt.Errorf("line %d (byte %d): %w", rd.line, off, err)
	}
	e.Line, e.Offset = rd.line, off
	return e, nil
}

// parseEvent parses one event line: one JSON array, with nothing but
// white space after it.
func parseEvent(line []byte) (Event, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(line, &raw); err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	if len(raw) != 3 {
		return Event{}, fmt.Errorf("%w: event has %d elements, want 3", ErrFormat, len(raw))
	}
	var e Event
	if err := json.Unmarshal(raw[0], &e.Time); err != nil {
		return Event{}, fmt.Errorf("%w: event time: %w", ErrFormat, err)
	}
	if e.Time < 0 || math.IsInf(e.Time, 0) || math.IsNaN(e.Time) {
		return Event{}, fmt.Errorf("%w: event time %v", ErrFormat, e.Time)
	}
	if err := json.Unmarshal(raw[1], &e.Type); err != nil {
		return Event{}, fmt.Errorf("%w: event type: %w", ErrFormat, err)
	}
	if err := json.Unmarshal(raw[2], &e.Data); err != nil {
		return Event{}, fmt.Errorf("%w: event data: %w", ErrFormat, err)
	}
	return e, nil
}
