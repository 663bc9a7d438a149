// Package sftpaudit reads SFTP (draft-ietf-secsh-filexfer-02, protocol
// version 3 as OpenSSH speaks it) from both directions of a relayed stream
// and reports the file operations in it — open, close with bytes read and
// written, remove, rename, mkdir, rmdir, setstat, symlink, link — for the
// audit log.
//
// It is a passive observer: it never changes or delays the bytes, and its
// memory is bounded whatever the peers send. The data of WRITE requests and
// DATA replies is counted, never buffered.
//
// An operation is reported when its reply is read, with the outcome the
// server gave, or as incomplete when the stream ends first. Replies are
// matched to requests as OpenSSH's sftp-server sends them: one reply per
// request, in the order of the requests, so a reply answers the oldest
// request awaiting one with its ID. A client reusing an ID therefore gets
// each request audited with its own reply. The caller must feed each
// client byte before it forwards it, so that no reply can come before its
// request: a reply that no request awaits is reported as malformed and
// dropped, never kept for a later request.
//
// A client must not be able to switch the audit off, nor to make the
// server act on anything but what is audited. OpenSSH's sftp-server reads
// a request's fields from its input queue, which may already hold the next
// packet, and checks only after acting that it did not read past the
// packet, then exits: a REMOVE whose path runs one byte past its packet
// removes the path ended by the NUL that starts the next packet's length.
// So a client request that cannot be read exactly stops the stream before
// the server has it: a packet with no request ID, one too short for a field
// sftp-server reads before acting, a WRITE whose handle is over 256 bytes
// or whose data runs past the packet, a first packet that is not INIT, a
// request other than WRITE longer than MaxPacket. It is reported as a
// "malformed" operation, with the paths that could be read, and then the
// stream stops as below, in the Write that holds the end of the packet (of
// its header, for a WRITE or a packet too long to parse), so that the
// caller never forwards it. The attributes of OPEN, SETSTAT, MKDIR and the
// like are read as version 3 (the one OpenSSH speaks) lays them out, though
// not reported: cut short, they would give sftp-server a mode or owner
// from the next packet. Bytes after the fields are allowed, as
// sftp-server skips them and later drafts add optional fields. The
// fields of an extended request are read for the names sftp-server knows,
// not for others, which it refuses unread.
//
// A reply that cannot be read is reported as malformed and skipped, and
// parsing goes on with the next packet: the server has acted already.
// Parsing stops too on a framing that cannot be followed, a packet length
// of zero or over 16 MiB (sftp-server itself gives up past 256 KiB), or
// more requests awaiting replies than the parser can place. Whatever
// stopped it is reported once as an "error" operation, and from then on
// both writers fail with ErrBroken so that the caller can stop the stream
// rather than let it go on unaudited.
//
// NewParser is for a stream known to be SFTP (the sftp subsystem).
// NewProbe is for one that may be (any command): it finds out from the
// client's first packet, and switches itself off if it is not SFTP.
package sftpaudit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
)

// ErrBroken is returned by a Parser's writers once the stream can no longer
// be followed, or the client sent a request that cannot be read exactly
// (see the package doc): nothing after that point is audited.
var ErrBroken = errors.New("sftpaudit: stream cannot be followed")

// MaxPacket is the longest packet buffered for parsing: the largest READ or
// WRITE OpenSSH uses (256 KiB) plus headers. A longer request other than
// WRITE is malformed; a longer reply other than DATA is skipped.
const MaxPacket = 256<<10 + 1024

// maxLength is the largest packet length accepted at all; anything longer
// means the stream is not SFTP (or is out of step).
const maxLength = 16 << 20

// Limits on state kept per stream.
const (
	maxPending = 4096 // requests awaiting a reply, kept whole; as many again are kept only for their place
	maxHandles = 4096 // open handles
	maxString  = 4096 // bytes of a path kept
)

// maxInit is the longest first packet NewProbe takes for an INIT. Clients
// send 5 bytes (type and version), a few extensions at most.
const maxInit = 1024

// Protocol versions NewProbe takes in an INIT: those of the drafts that
// clients speak (3 for OpenSSH, PuTTY and FileZilla; up to 6 for WinSCP).
const (
	minProbeVersion = 3
	maxProbeVersion = 6
)

// Operation types, as in Op.Type.
const (
	OpOpen     = "open"
	OpClose    = "close"
	OpRemove   = "remove"
	OpRename   = "rename"
	OpMkdir    = "mkdir"
	OpRmdir    = "rmdir"
	OpSetstat  = "setstat"
	OpSymlink  = "symlink"
	OpLink     = "link"
	OpOpendir  = "opendir"
	OpExtended = "extended"
	// OpMalformed is a packet that could not be read: a reply is
	// skipped, a request stops the stream (an OpError follows). Name is
	// its type (e.g. "WRITE") and Message what was wrong.
	OpMalformed = "malformed"
	// OpError says the stream could not be followed from here on; Message
	// says why.
	OpError = "error"
)

// Op is one file operation.
type Op struct {
	// Type is one of the Op constants.
	Type string
	// Path is the file or folder acted on (for symlink and link, the new
	// link); it is the client's bytes, not escaped, cut to 4096 bytes.
	Path string
	// NewPath is the new name of a rename, or the target of a symlink or
	// link.
	NewPath string
	// Mode describes an open: "read", "write", "read,write" plus
	// ",create", ",truncate", ",append", ",excl".
	Mode string
	// BytesRead and BytesWritten count data moved through a handle; set on
	// close.
	BytesRead, BytesWritten int64
	// Name is the request name of an extended operation, or the packet type
	// of a malformed one.
	Name string
	// OK says the server reported success; Status is the SFTP status code
	// and Message its text when it did not. For OpMalformed and OpError,
	// Message says what was wrong.
	OK      bool
	Status  uint32
	Message string
	// Incomplete says the outcome is unknown: the stream ended before the
	// reply, the reply could not be read, or the request was past the
	// limit on requests awaiting replies (it is then reported when sent).
	Incomplete bool
}

func (o Op) String() string {
	if o.Type == OpMalformed || o.Type == OpError {
		return fmt.Sprintf("%s %s %q", o.Type, o.Name, o.Message)
	}
	s := o.Type + " " + fmt.Sprintf("%q", o.Path)
	if o.NewPath != "" {
		s += fmt.Sprintf(" -> %q", o.NewPath)
	}
	if o.Type == OpClose {
		s += fmt.Sprintf(" read=%d written=%d", o.BytesRead, o.BytesWritten)
	}
	if !o.OK {
		s += fmt.Sprintf(" failed(%d %q)", o.Status, o.Message)
	}
	return s
}

// SFTP packet types.
const (
	fxpInit          = 1
	fxpVersion       = 2
	fxpOpen          = 3
	fxpClose         = 4
	fxpRead          = 5
	fxpWrite         = 6
	fxpLstat         = 7
	fxpFstat         = 8
	fxpSetstat       = 9
	fxpFsetstat      = 10
	fxpOpendir       = 11
	fxpReaddir       = 12
	fxpRemove        = 13
	fxpMkdir         = 14
	fxpRmdir         = 15
	fxpRealpath      = 16
	fxpStat          = 17
	fxpRename        = 18
	fxpReadlink      = 19
	fxpSymlink       = 20
	fxpStatus        = 101
	fxpHandle        = 102
	fxpData          = 103
	fxpName          = 104
	fxpAttrs         = 105
	fxpExtended      = 200
	fxpExtendedReply = 201
)

// Open flags.
const (
	fxfRead   = 0x01
	fxfWrite  = 0x02
	fxfAppend = 0x04
	fxfCreat  = 0x08
	fxfTrunc  = 0x10
	fxfExcl   = 0x20
)

// handleInfo is what is known of an open handle.
type handleInfo struct {
	path          string
	read, written int64
	dir           bool
}

// Parser follows one SFTP session. Its two writers may be used from
// different goroutines.
type Parser struct {
	off     atomic.Bool // the probe found no SFTP: bytes are no longer looked at
	mu      sync.Mutex
	emit    func(Op)
	probing bool // NewProbe, until the client's first packet decides
	pend    queues
	handles map[string]*handleInfo
	broken  bool // the stream could not be followed, is not SFTP, or Close was called
	err     error
	client  stream
	server  stream
}

// NewParser returns a parser for a stream known to carry SFTP, calling emit
// for each completed operation. emit is called synchronously, with the
// parser locked, from the Write that completes the operation (usually on
// the server-to-client stream, when the reply arrives): feeding server
// bytes to the parser before relaying them means each operation is
// reported before the client sees its outcome.
func NewParser(emit func(Op)) *Parser {
	p := &Parser{emit: emit, pend: queues{byID: map[uint32][]pending{}}, handles: map[string]*handleInfo{}}
	p.client.fromClient = true
	return p
}

// NewProbe returns a parser for a stream that may carry SFTP, such as an
// exec channel's, whatever command started the server (sudo with options,
// env -i, nice, sh -c). The stream is SFTP if the client's first packet is
// an INIT (at most 1 KiB, version 3 to 6, well-formed extensions) and the
// server sent nothing before it; from there on the parser is exactly
// NewParser's. Otherwise it switches itself off: it reports nothing, its
// writers never fail and return at once, so a stream that is not SFTP
// (rsync, scp, git, binary data) is neither ended nor slowed.
//
// OpenSSH's sftp-server exits unless the first packet is an INIT, so what a
// real client starts is audited. A client crafting an INIT no real client
// sends (longer, another version) can still drive a server that accepts it
// unaudited: use NewParser wherever the stream is known to be SFTP.
func NewProbe(emit func(Op)) *Parser {
	p := NewParser(emit)
	p.probing = true
	return p
}

// ClientWriter takes the client-to-server bytes, which must be fed before
// they are forwarded: the parser then has each request before the server
// can answer it. Write fails with ErrBroken, and only with it, once the
// stream cannot be followed: the caller should then stop relaying (the
// bytes of that Write included).
func (p *Parser) ClientWriter() io.Writer { return writer{p, &p.client} }

// ServerWriter takes the server-to-client bytes. It fails like ClientWriter.
func (p *Parser) ServerWriter() io.Writer { return writer{p, &p.server} }

type writer struct {
	p *Parser
	s *stream
}

func (w writer) Write(b []byte) (int, error) {
	if w.p.off.Load() {
		return len(b), nil
	}
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	if w.p.err != nil {
		return 0, w.p.err
	}
	if w.p.probing && !w.s.fromClient && len(b) > 0 {
		// sftp-server says nothing before the client's INIT, and the
		// caller feeds client bytes before it forwards them.
		w.p.switchOff()
	}
	if !w.p.broken {
		w.p.feed(w.s, b)
	}
	return len(b), w.p.err
}

// switchOff stops a probe whose stream is not SFTP, silently.
func (p *Parser) switchOff() {
	p.probing = false
	p.broken = true
	p.client.buf, p.server.buf = nil, nil
	p.off.Store(true)
}

// Close reports what is still open or unanswered as incomplete: requests
// without replies, in the order they were sent, then handles as "close"
// with their counts.
func (p *Parser) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pd := range p.pend.drain() {
		if pd.emit {
			pd.op.Incomplete = true
			p.emit(pd.op)
		}
	}
	for _, h := range sortedHandles(p.handles) {
		if h.dir {
			continue
		}
		p.emit(Op{Type: OpClose, Path: h.path, BytesRead: h.read, BytesWritten: h.written, Incomplete: true})
	}
	p.handles = map[string]*handleInfo{}
	p.probing = false
	p.broken = true
}

// stream is the parsing state of one direction.
type stream struct {
	fromClient bool
	hdr        [5]byte // length and type
	n          int     // bytes of hdr filled
	length     uint32  // current packet length (after the length field)
	typ        byte
	buf        []byte // whole packet body (after the type byte) when buffered
	state      int
	skip       int64 // bytes of the current packet still to skip
	need       int   // bytes of the body to buffer
	started    bool  // first packet seen
}

// Stream states.
const (
	stLength  = iota // reading the 4-byte length and 1-byte type
	stBody           // buffering a whole packet body
	stDataHdr        // reading the header of a WRITE or DATA packet
	stSkip           // skipping bytes
)

// fail stops parsing for good: the stream cannot be followed, or must not
// reach the server.
func (p *Parser) fail(why string) {
	if p.broken {
		return
	}
	p.broken = true
	p.err = fmt.Errorf("%w: %s", ErrBroken, why)
	p.emit(Op{Type: OpError, Message: why})
}

// malformed reports s's current packet, which could not be read, as op
// with what could be read of it (paths). A reply is skipped and parsing
// goes on. A request stops the stream, so that the caller does not forward
// it: sftp-server would read past it (see the package doc).
func (p *Parser) malformed(s *stream, op Op, format string, args ...any) {
	op.Type, op.Name, op.Message = OpMalformed, typeName(s.typ), fmt.Sprintf(format, args...)
	p.emit(op)
	if s.fromClient {
		p.fail("malformed " + op.Name + " request")
	}
}

// feed parses b incrementally.
func (p *Parser) feed(s *stream, b []byte) {
	for len(b) > 0 && !p.broken {
		switch s.state {
		case stLength:
			k := copy(s.hdr[s.n:5], b)
			s.n += k
			b = b[k:]
			if s.n < 5 {
				return
			}
			s.length = binary.BigEndian.Uint32(s.hdr[:4])
			s.typ = s.hdr[4]
			s.n = 0
			if p.probing && (s.typ != fxpInit || s.length < 5 || s.length > maxInit) {
				p.switchOff() // no INIT a client sends
				return
			}
			if s.length == 0 || s.length > maxLength {
				p.fail(fmt.Sprintf("packet length %d out of range", s.length))
				return
			}
			if !s.started {
				s.started = true
				want := byte(fxpInit)
				if !s.fromClient {
					want = fxpVersion
				}
				if s.typ != want {
					// sftp-server exits on a request before INIT.
					p.malformed(s, Op{}, "first packet has type %d, want %d", s.typ, want)
					if p.broken {
						return
					}
				}
			}
			body := int64(s.length) - 1
			switch {
			case body == 0:
				p.packet(s, nil)
			case (s.fromClient && s.typ == fxpWrite) || (!s.fromClient && s.typ == fxpData):
				// id, handle (WRITE), offset (WRITE), data length: parse
				// just these and count the data without keeping it.
				s.state = stDataHdr
				s.skip = body
				s.buf = s.buf[:0]
			case body > MaxPacket:
				// A request this long is one sftp-server refuses (past
				// 256 KiB). A long reply (a NAME of long names) is
				// skipped but for its ID, which keeps the replies after
				// it in step.
				if s.fromClient {
					p.malformed(s, Op{}, "packet of %d bytes not parsed", s.length)
					return
				}
				s.state = stDataHdr
				s.skip = body
				s.buf = s.buf[:0]
			default:
				s.state = stBody
				s.need = int(body)
				if cap(s.buf) < s.need {
					s.buf = make([]byte, 0, max(s.need, 256))
				}
				s.buf = s.buf[:0]
			}
		case stBody:
			k := min(len(b), s.need-len(s.buf))
			s.buf = append(s.buf, b[:k]...)
			b = b[k:]
			if len(s.buf) == s.need {
				s.state = stLength
				p.packet(s, s.buf)
				if cap(s.buf) > 64<<10 {
					s.buf = nil // do not keep a large buffer for small packets
				}
			}
		case stDataHdr:
			// The header grows once the handle length is known.
			want := p.dataHdrLen(s)
			if want < 0 {
				// sftp-server refuses a handle this long with an error
				// status, but the parser cannot keep it to count the
				// data written through it.
				p.badData(s, "handle of %d bytes", binary.BigEndian.Uint32(s.buf[4:8]))
				continue
			}
			if int64(want-len(s.buf)) > s.skip {
				p.badData(s, "packet too short for its header")
				continue
			}
			k := min(len(b), want-len(s.buf))
			s.buf = append(s.buf, b[:k]...)
			b = b[k:]
			s.skip -= int64(k)
			if w := p.dataHdrLen(s); w < 0 || len(s.buf) < w {
				continue // an oversized handle is reported at the top
			}
			p.dataHeader(s)
			s.state = stSkip
			if s.skip == 0 {
				s.state = stLength
			}
		case stSkip:
			k := int64(len(b))
			if k > s.skip {
				k = s.skip
			}
			b = b[k:]
			s.skip -= k
			if s.skip == 0 {
				s.state = stLength
			}
		}
	}
}

// dataHdrLen is how many bytes of a WRITE or DATA packet, or of a reply
// too long to parse, are needed to read its header, given what is
// buffered: WRITE is id, handle string, offset, data length; DATA is id,
// data length; another reply is read up to its id.
func (p *Parser) dataHdrLen(s *stream) int {
	switch {
	case !s.fromClient && s.typ == fxpData:
		return 8
	case s.typ != fxpWrite || !s.fromClient:
		return 4
	}
	if len(s.buf) < 8 {
		return 8
	}
	hl := int(binary.BigEndian.Uint32(s.buf[4:8]))
	if hl > 256 {
		return -1
	}
	return 8 + hl + 8 + 4
}

// badData reports a WRITE or DATA packet whose header cannot be read: a
// WRITE stops the stream, the rest of a DATA is skipped.
func (p *Parser) badData(s *stream, format string, args ...any) {
	p.malformed(s, Op{}, format, args...)
	s.state = stSkip
	if s.skip == 0 {
		s.state = stLength
	}
}

// dataHeader handles the header of a WRITE or DATA packet, or of a reply
// too long to parse, whose rest (s.skip bytes from here) is skipped.
func (p *Parser) dataHeader(s *stream) {
	id := binary.BigEndian.Uint32(s.buf[:4])
	if !s.fromClient && s.typ != fxpData {
		p.unanswered(id) // its outcome is not read
		return
	}
	if s.typ == fxpData {
		n := int64(binary.BigEndian.Uint32(s.buf[4:8]))
		if n > s.skip {
			p.malformed(s, Op{}, "data length %d past the packet", n)
			p.unanswered(id)
			return
		}
		p.answer(id, replyInfo{typ: fxpData, n: n})
		return
	}
	hl := int(binary.BigEndian.Uint32(s.buf[4:8]))
	handle := string(s.buf[8 : 8+hl])
	n := int64(binary.BigEndian.Uint32(s.buf[8+hl+8:]))
	if n > s.skip {
		// sftp-server would write the bytes of the packets after it.
		p.malformed(s, Op{}, "data length %d past the packet", n)
		return
	}
	if h := p.handles[handle]; h != nil {
		h.written += n
	}
	p.track(id, pending{kind: fxpWrite, handle: handle})
}

func sortedHandles(m map[string]*handleInfo) []*handleInfo {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]*handleInfo, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}
