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
// A client must not be able to switch the audit off. A packet that cannot
// be read (too short for its fields, a WRITE handle longer than 256 bytes,
// a first packet that is not INIT, a request other than WRITE longer than
// MaxPacket) is reported as a "malformed" operation and skipped, and
// parsing goes on with the next packet: sftp-server answers some of these
// (the long handle) with an error status and carries on, so the audit must
// carry on too. Only a framing that cannot
// be followed, a packet length of zero or over 16 MiB (sftp-server itself
// gives up past 256 KiB), stops parsing: it is reported once as an "error"
// operation, and from then on both writers fail with ErrBroken so that the
// caller can stop the stream rather than let it go on unaudited.
package sftpaudit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
)

// ErrBroken is returned by a Parser's writers once the stream can no longer
// be followed (see the package doc): nothing after that point is audited.
var ErrBroken = errors.New("sftpaudit: stream cannot be followed")

// MaxPacket is the longest packet buffered for parsing: the largest READ or
// WRITE OpenSSH uses (256 KiB) plus headers. Longer packets other than
// WRITE and DATA are skipped, a request reported as malformed.
const MaxPacket = 256<<10 + 1024

// maxLength is the largest packet length accepted at all; anything longer
// means the stream is not SFTP (or is out of step).
const maxLength = 16 << 20

// Limits on state kept per stream.
const (
	maxPending = 4096 // requests awaiting a reply
	maxHandles = 4096 // open handles
	maxString  = 4096 // bytes of a path kept
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
	// OpMalformed is a packet that could not be read and was skipped;
	// Name is its type (e.g. "WRITE") and Message what was wrong.
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
	// Incomplete says no reply was seen: the stream ended first, or the
	// reply was not tracked because of the limits.
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

// pending is a request awaiting its reply.
type pending struct {
	op     Op
	kind   byte   // request type
	handle string // for READ and CLOSE
	emit   bool   // report op when the reply comes
}

// Parser follows one SFTP session. Its two writers may be used from
// different goroutines.
type Parser struct {
	mu      sync.Mutex
	emit    func(Op)
	pend    map[uint32]pending
	early   map[uint32]replyInfo // replies seen before their requests
	handles map[string]*handleInfo
	broken  bool // the stream could not be followed, or Close was called
	err     error
	client  stream
	server  stream
}

// NewParser returns a parser calling emit for each completed operation.
// emit is called synchronously, with the parser locked, from the Write that
// completes the operation (usually on the server-to-client stream, when the
// reply arrives): feeding server bytes to the parser before relaying them
// means each operation is reported before the client sees its outcome.
func NewParser(emit func(Op)) *Parser {
	p := &Parser{emit: emit, pend: map[uint32]pending{}, early: map[uint32]replyInfo{}, handles: map[string]*handleInfo{}}
	p.client.fromClient = true
	return p
}

// ClientWriter takes the client-to-server bytes. Feeding them before they
// are forwarded keeps requests ahead of their replies, and audits each one
// before the server acts on it; a reply seen first is held (within limits)
// until its request. Write fails with ErrBroken, and only with it, once the
// stream cannot be followed: the caller should then stop relaying.
func (p *Parser) ClientWriter() io.Writer { return writer{p, &p.client} }

// ServerWriter takes the server-to-client bytes. It fails like ClientWriter.
func (p *Parser) ServerWriter() io.Writer { return writer{p, &p.server} }

type writer struct {
	p *Parser
	s *stream
}

func (w writer) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	if w.p.err != nil {
		return 0, w.p.err
	}
	if !w.p.broken {
		w.p.feed(w.s, b)
	}
	return len(b), w.p.err
}

// Close reports what is still open or unanswered as incomplete: handles
// as "close" with their counts, and requests without replies.
func (p *Parser) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pd := range sortedPending(p.pend) {
		if pd.emit {
			pd.op.Incomplete = true
			p.emit(pd.op)
		}
	}
	p.pend = map[uint32]pending{}
	for _, h := range sortedHandles(p.handles) {
		if h.dir {
			continue
		}
		p.emit(Op{Type: OpClose, Path: h.path, BytesRead: h.read, BytesWritten: h.written, Incomplete: true})
	}
	p.handles = map[string]*handleInfo{}
	p.early = map[uint32]replyInfo{}
	p.broken = true
}

// stream is the parsing state of one direction.
type stream struct {
	fromClient bool
	hdr        [4 + 1 + 4 + 4 + maxString + 8 + 4]byte
	n          int    // bytes of hdr or buf filled
	length     uint32 // current packet length (after the length field)
	typ        byte
	buf        []byte // whole packet body (after the type byte) when buffered
	state      int
	skip       int64 // bytes of the current packet still to skip
	need       int   // bytes wanted in hdr for the current state
	started    bool  // first packet seen
}

// Stream states.
const (
	stLength  = iota // reading the 4-byte length and 1-byte type
	stBody           // buffering a whole packet body
	stDataHdr        // reading the header of a WRITE or DATA packet
	stSkip           // skipping bytes
)

// fail stops parsing for good: the framing cannot be followed.
func (p *Parser) fail(why string) {
	if p.broken {
		return
	}
	p.broken = true
	p.err = fmt.Errorf("%w: %s", ErrBroken, why)
	p.emit(Op{Type: OpError, Message: why})
}

// malformed reports a packet of type typ that could not be read; the caller
// skips it and parsing goes on.
func (p *Parser) malformed(typ byte, format string, args ...any) {
	p.emit(Op{Type: OpMalformed, Name: typeName(typ), Message: fmt.Sprintf(format, args...)})
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
					// sftp-server exits on it; the packets that reach it
					// first are still audited.
					p.malformed(s.typ, "first packet has type %d, want %d", s.typ, want)
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
				// Unparsed: a reply to it is not reported. A request
				// this long is one sftp-server refuses (past 256 KiB);
				// a long reply (a NAME of long names) is only skipped.
				if s.fromClient {
					p.malformed(s.typ, "packet of %d bytes not parsed", s.length)
				}
				s.state = stSkip
				s.skip = body
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
				// status and carries on: so does the parser.
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

// dataHdrLen is how many bytes of a WRITE or DATA packet are needed to read
// its header, given what is buffered: WRITE is id, handle string, offset,
// data length; DATA is id, data length.
func (p *Parser) dataHdrLen(s *stream) int {
	if s.typ == fxpData {
		return 8
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

// badData reports a WRITE or DATA packet whose header cannot be read and
// skips the rest of it. A WRITE's reply, if its ID was read, is awaited
// quietly: the request is already reported.
func (p *Parser) badData(s *stream, format string, args ...any) {
	p.malformed(s.typ, format, args...)
	if s.fromClient && len(s.buf) >= 4 {
		p.track(binary.BigEndian.Uint32(s.buf[:4]), pending{kind: s.typ})
	}
	s.state = stSkip
	if s.skip == 0 {
		s.state = stLength
	}
}

// dataHeader handles the header of a WRITE or DATA packet, whose data
// (s.skip bytes from here) is skipped.
func (p *Parser) dataHeader(s *stream) {
	id := binary.BigEndian.Uint32(s.buf[:4])
	if s.typ == fxpData {
		n := int64(binary.BigEndian.Uint32(s.buf[4:8]))
		if n > s.skip {
			p.malformed(s.typ, "data length %d past the packet", n)
			return
		}
		p.answer(id, replyInfo{typ: fxpData, n: n})
		return
	}
	hl := int(binary.BigEndian.Uint32(s.buf[4:8]))
	handle := string(s.buf[8 : 8+hl])
	n := int64(binary.BigEndian.Uint32(s.buf[8+hl+8:]))
	if n > s.skip {
		p.malformed(s.typ, "data length %d past the packet", n)
		p.track(id, pending{kind: fxpWrite})
		return
	}
	if h := p.handles[handle]; h != nil {
		h.written += n
	}
	p.track(id, pending{kind: fxpWrite, handle: handle})
}

// track remembers a request until its reply, within the limit.
func (p *Parser) track(id uint32, pd pending) {
	if ri, ok := p.early[id]; ok {
		delete(p.early, id)
		p.resolve(pd, ri)
		return
	}
	if len(p.pend) >= maxPending {
		if pd.emit {
			pd.op.Incomplete = true
			p.emit(pd.op)
		}
		return
	}
	p.pend[id] = pd
}

// packet handles one whole packet of type s.typ with body b (after the
// type byte).
func (p *Parser) packet(s *stream, b []byte) {
	r := reader{b: b}
	if s.fromClient {
		p.request(s.typ, &r)
	} else {
		p.reply(s.typ, &r)
	}
}

// request handles a client packet. One that cannot be read is reported as
// malformed, with what could be read of its paths, and its reply is
// awaited quietly.
func (p *Parser) request(typ byte, r *reader) {
	if typ == fxpInit {
		return
	}
	id := r.u32()
	if r.bad {
		p.malformed(typ, "no request ID")
		return
	}
	pd := p.requestOp(typ, r)
	if r.bad {
		m := Op{Type: OpMalformed, Name: typeName(typ), Path: pd.op.Path, NewPath: pd.op.NewPath,
			Message: "request too short for its fields"}
		p.emit(m)
		pd = pending{kind: typ}
	}
	p.track(id, pd)
}

// requestOp reads the fields of a request after its ID and returns what to
// await. On a short packet r.bad is set and the fields read so far are in
// the result.
func (p *Parser) requestOp(typ byte, r *reader) pending {
	switch typ {
	case fxpOpen:
		path := r.str()
		flags := r.u32()
		return pending{kind: typ, op: Op{Type: OpOpen, Path: path, Mode: openMode(flags)}, emit: true}
	case fxpOpendir:
		return pending{kind: typ, op: Op{Type: OpOpendir, Path: r.str()}, emit: true}
	case fxpClose:
		h := r.rawStr()
		pd := pending{kind: typ, handle: h}
		if info := p.handles[h]; info != nil && !info.dir && !r.bad {
			pd.op = Op{Type: OpClose, Path: info.path}
			pd.emit = true
		}
		return pd
	case fxpRead:
		return pending{kind: typ, handle: r.rawStr()}
	case fxpRemove:
		return pending{kind: typ, op: Op{Type: OpRemove, Path: r.str()}, emit: true}
	case fxpMkdir:
		return pending{kind: typ, op: Op{Type: OpMkdir, Path: r.str()}, emit: true}
	case fxpRmdir:
		return pending{kind: typ, op: Op{Type: OpRmdir, Path: r.str()}, emit: true}
	case fxpSetstat:
		return pending{kind: typ, op: Op{Type: OpSetstat, Path: r.str()}, emit: true}
	case fxpFsetstat:
		h := r.rawStr()
		path := "(unknown handle)"
		if info := p.handles[h]; info != nil {
			path = info.path
		}
		return pending{kind: typ, op: Op{Type: OpSetstat, Path: path}, emit: true}
	case fxpRename:
		old := r.str()
		return pending{kind: typ, op: Op{Type: OpRename, Path: old, NewPath: r.str()}, emit: true}
	case fxpSymlink:
		// OpenSSH sends targetpath before linkpath, the reverse of the
		// draft; we follow OpenSSH, the only implementation in use.
		target := r.str()
		return pending{kind: typ, op: Op{Type: OpSymlink, Path: r.str(), NewPath: target}, emit: true}
	case fxpExtended:
		name := r.str()
		op := Op{Type: OpExtended, Name: name}
		switch name {
		case "posix-rename@openssh.com":
			op.Type = OpRename
			op.Path = r.str()
			op.NewPath = r.str()
		case "hardlink@openssh.com":
			op.Type = OpLink
			op.NewPath = r.str() // old path: the existing file
			op.Path = r.str()
		case "statvfs@openssh.com", "fstatvfs@openssh.com", "limits@openssh.com", "expand-path@openssh.com",
			"home-directory", "fsync@openssh.com", "users-groups-by-id@openssh.com":
			return pending{kind: typ}
		default:
			if !r.bad && len(r.b) > 0 {
				op.Path = r.str() // most extensions start with a path; best effort
				r.bad = false
			}
		}
		return pending{kind: typ, op: op, emit: true}
	default:
		// Look-ups (stat, realpath, readdir...) change nothing and would
		// flood the audit log.
		return pending{kind: typ}
	}
}

// replyInfo is what a reply says.
type replyInfo struct {
	typ    byte
	code   uint32 // STATUS
	msg    string // STATUS
	handle string // HANDLE
	n      int64  // DATA length
}

// reply handles a server packet. One that cannot be read is reported as
// malformed; its request stays unanswered (reported as incomplete).
func (p *Parser) reply(typ byte, r *reader) {
	if typ == fxpVersion {
		return
	}
	id := r.u32()
	ri := replyInfo{typ: typ}
	switch typ {
	case fxpStatus:
		ri.code = r.u32()
		if !r.bad && len(r.b) > 0 {
			ri.msg = r.str()
			r.bad = false // message and language tag are optional in practice
		}
	case fxpHandle:
		ri.handle = r.rawStr()
	}
	if r.bad {
		p.malformed(typ, "reply too short for its fields")
		return
	}
	p.answer(id, ri)
}

// answer matches a reply to its request. A reply may be seen before its
// request when the caller feeds the two directions from different
// goroutines; it then waits (within the limit) for the request.
func (p *Parser) answer(id uint32, ri replyInfo) {
	pd, ok := p.pend[id]
	if !ok {
		if len(p.early) < maxPending {
			p.early[id] = ri
		}
		return
	}
	delete(p.pend, id)
	p.resolve(pd, ri)
}

func (p *Parser) resolve(pd pending, ri replyInfo) {
	switch ri.typ {
	case fxpStatus:
		pd.op.OK = ri.code == 0
		if ri.code != 0 {
			pd.op.Status, pd.op.Message = ri.code, ri.msg
		}
		if pd.kind == fxpClose {
			if info := p.handles[pd.handle]; info != nil {
				pd.op.BytesRead, pd.op.BytesWritten = info.read, info.written
				delete(p.handles, pd.handle)
			}
		}
	case fxpHandle:
		if pd.kind == fxpOpen || pd.kind == fxpOpendir {
			pd.op.OK = true
			if len(p.handles) < maxHandles {
				p.handles[ri.handle] = &handleInfo{path: pd.op.Path, dir: pd.kind == fxpOpendir}
			}
		}
	case fxpData:
		pd.op.OK = true
		if h := p.handles[pd.handle]; h != nil && pd.kind == fxpRead {
			h.read += ri.n
		}
	default:
		pd.op.OK = true
	}
	if pd.emit {
		p.emit(pd.op)
	}
}

// typeName names an SFTP packet type for a malformed operation.
func typeName(typ byte) string {
	names := map[byte]string{
		fxpInit: "INIT", fxpVersion: "VERSION", fxpOpen: "OPEN", fxpClose: "CLOSE", fxpRead: "READ",
		fxpWrite: "WRITE", fxpLstat: "LSTAT", fxpFstat: "FSTAT", fxpSetstat: "SETSTAT", fxpFsetstat: "FSETSTAT",
		fxpOpendir: "OPENDIR", fxpReaddir: "READDIR", fxpRemove: "REMOVE", fxpMkdir: "MKDIR", fxpRmdir: "RMDIR",
		fxpRealpath: "REALPATH", fxpStat: "STAT", fxpRename: "RENAME", fxpReadlink: "READLINK",
		fxpSymlink: "SYMLINK", fxpStatus: "STATUS", fxpHandle: "HANDLE", fxpData: "DATA", fxpName: "NAME",
		fxpAttrs: "ATTRS", fxpExtended: "EXTENDED", fxpExtendedReply: "EXTENDED_REPLY",
	}
	if n, ok := names[typ]; ok {
		return n
	}
	return fmt.Sprintf("type %d", typ)
}

func openMode(flags uint32) string {
	var m string
	switch flags & (fxfRead | fxfWrite) {
	case fxfRead:
		m = "read"
	case fxfWrite:
		m = "write"
	case fxfRead | fxfWrite:
		m = "read,write"
	default:
		m = "none"
	}
	for _, f := range []struct {
		bit  uint32
		name string
	}{{fxfCreat, "create"}, {fxfTrunc, "truncate"}, {fxfAppend, "append"}, {fxfExcl, "excl"}} {
		if flags&f.bit != 0 {
			m += "," + f.name
		}
	}
	return m
}

// reader decodes SSH wire types from a packet body, recording (not
// panicking on) a short packet.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) u32() uint32 {
	if len(r.b) < 4 {
		r.bad = true
		r.b = nil
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

// rawStr reads a string whole (handles are at most 256 bytes in the draft).
func (r *reader) rawStr() string {
	n := r.u32()
	if r.bad || uint64(n) > uint64(len(r.b)) {
		r.bad = true
		r.b = nil
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// str reads a path, keeping at most maxString bytes of it.
func (r *reader) str() string {
	s := r.rawStr()
	if len(s) > maxString {
		s = s[:maxString]
	}
	return s
}

func sortedPending(m map[uint32]pending) []pending {
	ids := make([]uint32, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]pending, len(ids))
	for i, id := range ids {
		out[i] = m[id]
	}
	return out
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
