package sftpaudit

import (
	"encoding/binary"
	"fmt"
)

// packet handles one whole packet of type s.typ with body b (after the
// type byte).
func (p *Parser) packet(s *stream, b []byte) {
	r := reader{b: b}
	if s.fromClient {
		p.request(s, &r)
	} else {
		p.reply(s, &r)
	}
}

// request handles a client packet. One too short for the fields
// sftp-server reads before acting is reported as malformed, with what
// could be read of its paths, and stops the stream. One of a type
// sftp-server does not answer is not awaited.
func (p *Parser) request(s *stream, r *reader) {
	typ := s.typ
	if typ == fxpInit {
		if p.probing {
			p.probeInit(r)
		} else if r.u32(); r.bad {
			p.malformed(s, Op{}, "no version")
		}
		return
	}
	id := r.u32()
	if r.bad {
		p.malformed(s, Op{}, "no request ID")
		return
	}
	if !answered(typ) {
		return // sftp-server only logs it
	}
	pd := p.requestOp(typ, r)
	if r.bad {
		p.malformed(s, Op{Path: pd.op.Path, NewPath: pd.op.NewPath}, "request too short for its fields")
		return
	}
	p.track(id, pd)
}

// probeInit decides a probe on the body of the client's first packet, an
// INIT of a length a client sends: it is SFTP if the body is a version
// that clients speak and well-formed extension pairs.
func (p *Parser) probeInit(r *reader) {
	v := r.u32()
	for len(r.b) > 0 && !r.bad {
		r.rawStr() // name
		r.rawStr() // data
	}
	if r.bad || v < minProbeVersion || v > maxProbeVersion {
		p.switchOff()
		return
	}
	p.probing = false
}

// requestOp reads the fields of a request after its ID, as sftp-server
// reads them (see the package doc), and returns what to await. On a short packet r.bad is set and the paths read so far are in
// the result. WRITE is not parsed here (see dataHeader).
func (p *Parser) requestOp(typ byte, r *reader) pending {
	switch typ {
	case fxpOpen:
		path := r.str()
		flags := r.u32()
		r.attrs()
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
		h := r.rawStr()
		r.u64() // offset
		r.u32() // length
		return pending{kind: typ, handle: h}
	case fxpRemove:
		return pending{kind: typ, op: Op{Type: OpRemove, Path: r.str()}, emit: true}
	case fxpMkdir:
		pd := pending{kind: typ, op: Op{Type: OpMkdir, Path: r.str()}, emit: true}
		r.attrs()
		return pd
	case fxpRmdir:
		return pending{kind: typ, op: Op{Type: OpRmdir, Path: r.str()}, emit: true}
	case fxpSetstat:
		pd := pending{kind: typ, op: Op{Type: OpSetstat, Path: r.str()}, emit: true}
		r.attrs()
		return pd
	case fxpFsetstat:
		h := r.rawStr()
		path := "(unknown handle)"
		if info := p.handles[h]; info != nil {
			path = info.path
		}
		if r.bad {
			path = ""
		}
		r.attrs()
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
		return p.extendedOp(r)
	default:
		// Look-ups change nothing and would flood the audit log; their
		// path or handle is read all the same.
		r.strBytes()
		return pending{kind: typ}
	}
}

// extendedOp reads an EXTENDED request after its ID: its name, then the
// fields of the extensions sftp-server knows, as OpenSSH's PROTOCOL file
// defines them. Others sftp-server refuses without reading further.
func (p *Parser) extendedOp(r *reader) pending {
	name := r.str()
	pd := pending{kind: fxpExtended, op: Op{Type: OpExtended, Name: name}, emit: true}
	switch name {
	case "posix-rename@openssh.com":
		pd.op.Type = OpRename
		pd.op.Path = r.str()
		pd.op.NewPath = r.str()
	case "hardlink@openssh.com":
		pd.op.Type = OpLink
		pd.op.NewPath = r.str() // old path: the existing file
		pd.op.Path = r.str()
	case "lsetstat@openssh.com":
		pd.op.Path = r.str()
		r.attrs()
	case "copy-data":
		// A copy between two open handles, inside the server: Path is the
		// file read from and NewPath the one written to, by the paths the
		// handles were opened with (the raw handle when unknown). The
		// bytes copied pass through no packet and are not counted.
		pd.op.Path = p.handlePath(r.str()) // handle read from
		r.u64()                            // read offset
		r.u64()                            // read length
		pd.op.NewPath = p.handlePath(r.str())
		r.u64() // write offset
	case "statvfs@openssh.com", "expand-path@openssh.com", "fstatvfs@openssh.com", "fsync@openssh.com",
		"home-directory":
		r.strBytes() // a path, a handle or a user name
		return pending{kind: fxpExtended}
	case "users-groups-by-id@openssh.com":
		r.strBytes() // user IDs
		r.strBytes() // group IDs
		return pending{kind: fxpExtended}
	case "limits@openssh.com":
		return pending{kind: fxpExtended}
	default:
		if !r.bad && len(r.b) > 0 {
			pd.op.Path = r.str() // most extensions start with a path; best effort
			r.bad = false
		}
	}
	return pd
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
// malformed, and the request it answers (if its ID can be read) as
// incomplete.
func (p *Parser) reply(s *stream, r *reader) {
	typ := s.typ
	if typ == fxpVersion {
		return
	}
	id := r.u32()
	if r.bad {
		p.malformed(s, Op{}, "reply too short for its fields")
		return
	}
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
		p.malformed(s, Op{}, "reply too short for its fields")
		p.unanswered(id)
		return
	}
	p.answer(id, ri)
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

// take returns the next n bytes, not copied, or nil and sets r.bad when
// fewer are left.
func (r *reader) take(n uint64) []byte {
	if r.bad || n > uint64(len(r.b)) {
		r.bad = true
		r.b = nil
		return nil
	}
	b := r.b[:n]
	r.b = r.b[n:]
	return b
}

func (r *reader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if b := r.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// strBytes reads a string and returns its bytes, not copied.
func (r *reader) strBytes() []byte {
	n := r.u32()
	return r.take(uint64(n))
}

// Attribute flags of SFTP version 3, the one OpenSSH speaks.
const (
	attrSize        = 0x00000001
	attrUIDGID      = 0x00000002
	attrPermissions = 0x00000004
	attrACModTime   = 0x00000008
	attrExtended    = 0x80000000
)

// attrs reads file attributes as sftp-server decodes them (decode_attrib
// in OpenSSH's sftp-common.c), without keeping them: a block cut short
// would make sftp-server take a mode or owner from the next packet.
func (r *reader) attrs() {
	flags := r.u32()
	if flags&attrSize != 0 {
		r.u64()
	}
	if flags&attrUIDGID != 0 {
		r.u32()
		r.u32()
	}
	if flags&attrPermissions != 0 {
		r.u32()
	}
	if flags&attrACModTime != 0 {
		r.u32()
		r.u32()
	}
	if flags&attrExtended != 0 {
		// Each pair takes at least 8 bytes, so a short block ends the
		// loop long before a large count would.
		for n := r.u32(); n > 0 && !r.bad; n-- {
			r.strBytes() // type
			r.strBytes() // data
		}
	}
}

// rawStr reads a string whole (handles are at most 256 bytes in the draft).
func (r *reader) rawStr() string { return string(r.strBytes()) }

// str reads a path, keeping at most maxString bytes of it.
func (r *reader) str() string {
	b := r.strBytes()
	if len(b) > maxString {
		b = b[:maxString]
	}
	return string(b)
}

// handlePath is the path the open handle h was opened with, or h itself
// when the parser does not know it.
func (p *Parser) handlePath(h string) string {
	if info := p.handles[h]; info != nil {
		return info.path
	}
	return h
}
