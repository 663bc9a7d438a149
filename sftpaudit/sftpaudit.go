// Package sftpaudit reads SFTP (draft-ietf-secsh-filexfer-02, protocol
// version 3 as OpenSSH speaks it) from both directions of a relayed stream
// and reports the file operations in it — open, close with bytes read and
// written, remove, rename, mkdir, rmdir, setstat, symlink, link — for the
// audit log.
//
// It is a passive observer: it never changes, delays or refuses the bytes,
// and its memory is bounded whatever the peers send. A packet longer than
// MaxPacket is skipped unread, except that the data of WRITE requests and
// DATA replies is counted, never buffered. A stream that stops making sense
// (a length too large to be SFTP, an INIT that is not first) is reported
// once as an "error" operation and no longer parsed.
package sftpaudit

import (
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"sync"
)

// MaxPacket is the longest packet buffered for parsing: the largest READ or
// WRITE OpenSSH uses (256 KiB) plus headers. Longer packets other than
// WRITE and DATA are skipped.
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
	OpError    = "error" // the stream could not be parsed from here on
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
	// Name is the request name of an extended operation.
	Name string
	// OK says the server reported success; Status is the SFTP status code
	// and Message its text when it did not.
	OK      bool
	Status  uint32
	Message string
	// Incomplete says no reply was seen: the stream ended first, or the
	// reply was not tracked because of the limits.
	Incomplete bool
}

func (o Op) String() string {
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
	broken  bool
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

// ClientWriter takes the client-to-server bytes. Its Write never fails.
// Feeding them before they are forwarded keeps requests ahead of their
// replies; a reply seen first is held (within limits) until its request.
func (p *Parser) ClientWriter() io.Writer { return writer{p, &p.client} }

// ServerWriter takes the server-to-client bytes. Its Write never fails.
func (p *Parser) ServerWriter() io.Writer { return writer{p, &p.server} }

type writer struct {
	p *Parser
	s *stream
}

func (w writer) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	if !w.p.broken {
		w.p.feed(w.s, b)
	}
	return len(b), nil
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

func (p *Parser) fail(why string) {
	if p.broken {
		return
	}
	p.broken = true
	p.emit(Op{Type: OpError, Message: why})
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
					p.fail(fmt.Sprintf("first packet has type %d, want %d", s.typ, want))
					return
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
				// Unparsed: a reply to it is not reported.
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
				p.fail("WRITE with an oversized handle")
				return
			}
			if int64(want-len(s.buf)) > s.skip {
				p.fail(fmt.Sprintf("packet of type %d too short for its header", s.typ))
				return
			}
			k := min(len(b), want-len(s.buf))
			s.buf = append(s.buf, b[:k]...)
			b = b[k:]
			s.skip -= int64(k)
			if w := p.dataHdrLen(s); w < 0 || len(s.buf) < w {
				continue // an oversized handle fails at the top
			}
			p.dataHeader(s)
			if p.broken {
				return
			}
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

func (p *Parser) dataHeader(s *stream) {
	if len(s.buf) < 8 {
		p.fail("short data packet")
		return
	}
	id := binary.BigEndian.Uint32(s.buf[:4])
	if s.typ == fxpData {
		n := int64(binary.BigEndian.Uint32(s.buf[4:8]))
		if n > s.skip {
			p.fail("DATA length past the packet")
			return
		}
		p.answer(id, replyInfo{typ: fxpData, n: n})
		return
	}
	hl := int(binary.BigEndian.Uint32(s.buf[4:8]))
	handle := string(s.buf[8 : 8+hl])
	n := int64(binary.BigEndian.Uint32(s.buf[8+hl+8:]))
	if n > s.skip {
		p.fail("WRITE length past the packet")
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
	if r.bad {
		p.fail(fmt.Sprintf("malformed packet of type %d", s.typ))
	}
}

func (p *Parser) request(typ byte, r *reader) {
	if typ == fxpInit {
		return
	}
	id := r.u32()
	switch typ {
	case fxpOpen:
		path := r.str()
		flags := r.u32()
		p.track(id, pending{kind: typ, op: Op{Type: OpOpen, Path: path, Mode: openMode(flags)}, emit: true})
	case fxpOpendir:
		p.track(id, pending{kind: typ, op: Op{Type: OpOpendir, Path: r.str()}, emit: true})
	case fxpClose:
		h := r.rawStr()
		pd := pending{kind: typ, handle: h}
		if info := p.handles[h]; info != nil && !info.dir {
			pd.op = Op{Type: OpClose, Path: info.path}
			pd.emit = true
		}
		p.track(id, pd)
	case fxpRead:
		p.track(id, pending{kind: typ, handle: r.rawStr()})
	case fxpRemove:
		p.track(id, pending{kind: typ, op: Op{Type: OpRemove, Path: r.str()}, emit: true})
	case fxpMkdir:
		p.track(id, pending{kind: typ, op: Op{Type: OpMkdir, Path: r.str()}, emit: true})
	case fxpRmdir:
		p.track(id, pending{kind: typ, op: Op{Type: OpRmdir, Path: r.str()}, emit: true})
	case fxpSetstat:
		p.track(id, pending{kind: typ, op: Op{Type: OpSetstat, Path: r.str()}, emit: true})
	case fxpFsetstat:
		h := r.rawStr()
		path := "(unknown handle)"
		if info := p.handles[h]; info != nil {
			path = info.path
		}
		p.track(id, pending{kind: typ, op: Op{Type: OpSetstat, Path: path}, emit: true})
	case fxpRename:
		old := r.str()
		p.track(id, pending{kind: typ, op: Op{Type: OpRename, Path: old, NewPath: r.str()}, emit: true})
	case fxpSymlink:
		// OpenSSH sends targetpath before linkpath, the reverse of the
		// draft; we follow OpenSSH, the only implementation in use.
		target := r.str()
		p.track(id, pending{kind: typ, op: Op{Type: OpSymlink, Path: r.str(), NewPath: target}, emit: true})
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
			p.track(id, pending{kind: typ})
			return
		default:
			if !r.bad && len(r.b) > 0 {
				op.Path = r.str() // most extensions start with a path; best effort
				r.bad = false
			}
		}
		p.track(id, pending{kind: typ, op: op, emit: true})
	case fxpLstat, fxpStat, fxpRealpath, fxpReadlink, fxpFstat, fxpReaddir:
		// Look-ups change nothing and would flood the audit log.
		p.track(id, pending{kind: typ})
	default:
		p.track(id, pending{kind: typ})
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

func (p *Parser) reply(typ byte, r *reader) {
	if typ == fxpVersion {
		return
	}
	id := r.u32()
	if r.bad {
		return
	}
	ri := replyInfo{typ: typ}
	switch typ {
	case fxpStatus:
		ri.code = r.u32()
		if len(r.b) > 0 {
			ri.msg = r.str()
		}
		r.bad = false // message and language tag are optional in practice
	case fxpHandle:
		ri.handle = r.rawStr()
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
