package sftpaudit

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// pkt builds an SFTP packet of type typ from uint32, uint64 and string
// fields.
func pkt(typ byte, fields ...any) []byte {
	var body []byte
	body = append(body, typ)
	for _, f := range fields {
		switch v := f.(type) {
		case uint32:
			body = binary.BigEndian.AppendUint32(body, v)
		case int:
			body = binary.BigEndian.AppendUint32(body, uint32(v))
		case uint64:
			body = binary.BigEndian.AppendUint64(body, v)
		case string:
			body = binary.BigEndian.AppendUint32(body, uint32(len(v)))
			body = append(body, v...)
		case []byte:
			body = append(body, v...)
		}
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

func status(id uint32, code uint32, msg string) []byte {
	return pkt(fxpStatus, id, code, msg, "")
}

// exchange is a conversation: client packets and server packets, in order.
type exchange []struct {
	client bool
	b      []byte
}

func (x exchange) feed(p *Parser, chunk int) {
	for _, m := range x {
		w := p.ServerWriter()
		if m.client {
			w = p.ClientWriter()
		}
		for b := m.b; len(b) > 0; {
			n := min(chunk, len(b))
			w.Write(b[:n])
			b = b[n:]
		}
	}
}

func c(b []byte) struct {
	client bool
	b      []byte
} {
	return struct {
		client bool
		b      []byte
	}{true, b}
}

func s(b []byte) struct {
	client bool
	b      []byte
} {
	return struct {
		client bool
		b      []byte
	}{false, b}
}

func TestParser(t *testing.T) {
	data := bytes.Repeat([]byte("x"), 100000)
	init := exchange{c(pkt(fxpInit, 3)), s(pkt(fxpVersion, 3, "posix-rename@openssh.com", "1"))}
	tests := []struct {
		name string
		x    exchange
		want []Op
	}{
		{"ok/upload", append(init[:2:2],
			c(pkt(fxpOpen, 1, "/tmp/up.bin", fxfWrite|fxfCreat|fxfTrunc, 0)), s(pkt(fxpHandle, 1, "h1")),
			c(pkt(fxpWrite, 2, "h1", uint64(0), string(data))), s(status(2, 0, "")),
			c(pkt(fxpWrite, 3, "h1", uint64(100000), "tail")), s(status(3, 0, "")),
			c(pkt(fxpClose, 4, "h1")), s(status(4, 0, ""))),
			[]Op{{Type: OpOpen, Path: "/tmp/up.bin", Mode: "write,create,truncate", OK: true},
				{Type: OpClose, Path: "/tmp/up.bin", BytesWritten: 100004, OK: true}}},
		{"ok/download", append(init[:2:2],
			c(pkt(fxpOpen, 1, "/etc/hosts", fxfRead, 0)), s(pkt(fxpHandle, 1, "h")),
			c(pkt(fxpRead, 2, "h", uint64(0), 32768)), s(pkt(fxpData, 2, string(data[:32768]))),
			c(pkt(fxpRead, 3, "h", uint64(32768), 32768)), s(status(3, 1, "EOF")),
			c(pkt(fxpClose, 4, "h")), s(status(4, 0, ""))),
			[]Op{{Type: OpOpen, Path: "/etc/hosts", Mode: "read", OK: true},
				{Type: OpClose, Path: "/etc/hosts", BytesRead: 32768, OK: true}}},
		{"ok/namespace", append(init[:2:2],
			c(pkt(fxpRemove, 5, "/a")), s(status(5, 2, "No such file")),
			c(pkt(fxpRename, 6, "/b", "/c")), s(status(6, 0, "")),
			c(pkt(fxpExtended, 7, "posix-rename@openssh.com", "/c", "/d")), s(status(7, 0, "")),
			c(pkt(fxpMkdir, 8, "/dir", 0)), s(status(8, 0, "")),
			c(pkt(fxpRmdir, 9, "/dir")), s(status(9, 0, "")),
			c(pkt(fxpSymlink, 10, "target", "/link")), s(status(10, 0, "")),
			c(pkt(fxpSetstat, 11, "/d", 4, 0o600)), s(status(11, 0, "")),
			c(pkt(fxpStat, 12, "/d")), s(pkt(fxpAttrs, 12, 0)),
			c(pkt(fxpExtended, 13, "hardlink@openssh.com", "/d", "/e")), s(status(13, 0, ""))),
			[]Op{{Type: OpRemove, Path: "/a", Status: 2, Message: "No such file"},
				{Type: OpRename, Path: "/b", NewPath: "/c", OK: true},
				{Type: OpRename, Path: "/c", NewPath: "/d", Name: "posix-rename@openssh.com", OK: true},
				{Type: OpMkdir, Path: "/dir", OK: true},
				{Type: OpRmdir, Path: "/dir", OK: true},
				{Type: OpSymlink, Path: "/link", NewPath: "target", OK: true},
				{Type: OpSetstat, Path: "/d", OK: true},
				{Type: OpLink, Path: "/e", NewPath: "/d", Name: "hardlink@openssh.com", OK: true}}},
		{"ok/open-with-every-attribute", append(init[:2:2],
			c(pkt(fxpOpen, 1, "/full", uint32(fxfWrite|fxfCreat), uint32(attrSize|attrUIDGID|attrPermissions|attrACModTime|attrExtended),
				uint64(5), uint32(0), uint32(0), uint32(0o644), uint32(1), uint32(2), uint32(1), "type", "data")), s(pkt(fxpHandle, 1, "h1"))),
			[]Op{{Type: OpOpen, Path: "/full", Mode: "write,create", OK: true}}},
		{"ok/copy-data", append(init[:2:2],
			c(pkt(fxpOpen, 1, "/src", fxfRead, 0)), s(pkt(fxpHandle, 1, "h1")),
			c(pkt(fxpOpen, 2, "/dst", fxfWrite|fxfCreat, 0)), s(pkt(fxpHandle, 2, "h2")),
			c(pkt(fxpExtended, 3, "copy-data", "h1", uint64(0), uint64(0), "h2", uint64(0))), s(status(3, 0, "")),
			c(pkt(fxpExtended, 4, "copy-data", "h9", uint64(0), uint64(0), "h2", uint64(0))), s(status(4, 4, "Failure"))),
			[]Op{{Type: OpOpen, Path: "/src", Mode: "read", OK: true},
				{Type: OpOpen, Path: "/dst", Mode: "write,create", OK: true},
				{Type: OpExtended, Name: "copy-data", Path: "/src", NewPath: "/dst", OK: true},
				{Type: OpExtended, Name: "copy-data", Path: "h9", NewPath: "/dst", Status: 4, Message: "Failure"}}},
		{"fail/not-sftp", exchange{c([]byte("SSH-2.0-OpenSSH_9.2\r\n"))},
			[]Op{{Type: OpError, Message: "packet length 1397966893 out of range"}}},
		{"fail/zero-length-stops", append(init[:2:2], c([]byte{0, 0, 0, 0, fxpRemove}), c(pkt(fxpRemove, 2, "/unseen"))),
			[]Op{{Type: OpError, Message: "packet length 0 out of range"}}},
		// Bytes after the fields sftp-server reads are allowed: it skips
		// them, and later drafts add optional fields. So are extended
		// requests it does not know, whatever their fields: it refuses
		// them unread.
		{"ok/trailing-and-optional-fields", append(init[:2:2],
			c(pkt(fxpRename, 1, "/a", "/b", 1)), s(status(1, 0, "")),
			c(pkt(fxpStat, 2, "/b", 0x1ff)), s(pkt(fxpAttrs, 2, 0)),
			c(pkt(fxpRealpath, 3, ".", []byte{1}, "sub")), s(pkt(fxpName, 3, 0)),
			c(pkt(fxpRemove, 4, "/c", []byte("xyz"))), s(status(4, 0, "")),
			c(pkt(fxpWrite, 5, "h", uint64(0), "abc", []byte("xyz"))), s(status(5, 0, "")),
			c(pkt(fxpExtended, 6, "vendor@example.com", uint32(100))), s(status(6, 8, "Unsupported")),
			c(pkt(fxpExtended, 7, "limits@openssh.com", "extra")), s(pkt(fxpExtendedReply, 7, uint64(0)))),
			[]Op{{Type: OpRename, Path: "/a", NewPath: "/b", OK: true},
				{Type: OpRemove, Path: "/c", OK: true},
				{Type: OpExtended, Name: "vendor@example.com", Status: 8, Message: "Unsupported"}}},
		// The server's malformed packets are reported and parsing goes
		// on: the server has acted already.
		{"fail/first-reply-not-version", exchange{c(pkt(fxpInit, 3)), c(pkt(fxpRemove, 1, "/x")), s(status(1, 0, ""))},
			[]Op{{Type: OpMalformed, Name: "STATUS", Message: "first packet has type 101, want 2"},
				{Type: OpRemove, Path: "/x", OK: true}}},
		// A reply that cannot be read still answers its request, which
		// is reported without an outcome; the next reply to its ID is
		// the next request's.
		{"fail/short-reply", append(init[:2:2],
			c(pkt(fxpOpen, 1, "/f", fxfRead, 0)), s(pkt(fxpHandle, 1, uint32(50))),
			c(pkt(fxpRemove, 1, "/secret")), s(status(1, 0, ""))),
			[]Op{{Type: OpMalformed, Name: "HANDLE", Message: "reply too short for its fields"},
				{Type: OpOpen, Path: "/f", Mode: "read", Incomplete: true},
				{Type: OpRemove, Path: "/secret", OK: true}}},
		{"fail/data-past-packet", append(init[:2:2],
			c(pkt(fxpRead, 1, "h", uint64(0), 10)), s(pkt(fxpData, 1, uint32(10), []byte("abc"))),
			c(pkt(fxpRemove, 1, "/secret")), s(status(1, 0, ""))),
			[]Op{{Type: OpMalformed, Name: "DATA", Message: "data length 10 past the packet"},
				{Type: OpRemove, Path: "/secret", OK: true}}},

		// Request IDs. sftp-server answers requests in order, whatever
		// their IDs: each reply is the oldest awaiting request's.
		{"ok/reused-id", append(init[:2:2],
			c(pkt(fxpRemove, 7, "/a")), c(pkt(fxpRemove, 7, "/b")), c(pkt(fxpRename, 7, "/c", "/d")),
			s(status(7, 0, "")), s(status(7, 2, "No such file")), s(status(7, 3, "Permission denied"))),
			[]Op{{Type: OpRemove, Path: "/a", OK: true},
				{Type: OpRemove, Path: "/b", Status: 2, Message: "No such file"},
				{Type: OpRename, Path: "/c", NewPath: "/d", Status: 3, Message: "Permission denied"}}},
		{"ok/reused-id-mixed-replies", append(init[:2:2],
			c(pkt(fxpOpen, 1, "/f", fxfWrite|fxfCreat, 0)), c(pkt(fxpMkdir, 1, "/dir", 0)), c(pkt(fxpStat, 2, "/f")),
			s(pkt(fxpHandle, 1, "h")), s(status(1, 0, "")), s(pkt(fxpAttrs, 2, 0)),
			c(pkt(fxpWrite, 1, "h", uint64(0), "abc")), c(pkt(fxpClose, 1, "h")),
			s(status(1, 0, "")), s(status(1, 0, ""))),
			[]Op{{Type: OpOpen, Path: "/f", Mode: "write,create", OK: true},
				{Type: OpMkdir, Path: "/dir", OK: true},
				{Type: OpClose, Path: "/f", BytesWritten: 3, OK: true}}},
		// The review's reproduction: a REMOVE and a STAT with ID 7, both
		// answered. The REMOVE is audited, and no reply is left over to
		// give a later, refused REMOVE a success.
		{"fail/reused-id-reproduction", append(init[:2:2],
			c(pkt(fxpRemove, 7, "/srv/important")), c(pkt(fxpStat, 7, "/tmp")),
			s(status(7, 0, "")), s(pkt(fxpAttrs, 7, 0)),
			c(pkt(fxpRemove, 7, "/srv/protected")), s(status(7, 3, "Permission denied"))),
			[]Op{{Type: OpRemove, Path: "/srv/important", OK: true},
				{Type: OpRemove, Path: "/srv/protected", Status: 3, Message: "Permission denied"}}},
		{"fail/orphan-reply", append(init[:2:2],
			s(status(9, 0, "")), s(pkt(fxpData, 9, "abc")), s(pkt(fxpHandle, 9, "h")),
			c(pkt(fxpRemove, 9, "/x")), s(status(9, 3, "Permission denied"))),
			[]Op{{Type: OpMalformed, Name: "STATUS", Message: "reply to request 9, which awaits none"},
				{Type: OpMalformed, Name: "DATA", Message: "reply to request 9, which awaits none"},
				{Type: OpMalformed, Name: "HANDLE", Message: "reply to request 9, which awaits none"},
				{Type: OpRemove, Path: "/x", Status: 3, Message: "Permission denied"}}},
		// sftp-server only logs a request of a type it does not know:
		// awaiting a reply to it would give its ID's next reply to it.
		{"fail/unknown-type-not-awaited", append(init[:2:2],
			c(pkt(99, 7, "/x")), c(pkt(fxpStatus, 7, 0)), c(pkt(fxpRemove, 7, "/y")), s(status(7, 0, ""))),
			[]Op{{Type: OpRemove, Path: "/y", OK: true}}},
		{"ok/long-reply-keeps-step", append(init[:2:2],
			c(pkt(fxpReaddir, 3, "h")), s(pkt(fxpName, 3, 1, strings.Repeat("n", MaxPacket), "", 0)),
			c(pkt(fxpRemove, 3, "/x")), s(status(3, 2, "No such file"))),
			[]Op{{Type: OpRemove, Path: "/x", Status: 2, Message: "No such file"}}},
	}
	for _, tc := range tests {
		for _, chunk := range []int{1, 3, 7, 4096, 1 << 20} {
			var got []Op
			p := NewParser(func(op Op) { got = append(got, op) })
			tc.x.feed(p, chunk)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s, chunks of %d:\n got %+v\nwant %+v", tc.name, chunk, got, tc.want)
			}
		}
	}
}

// TestMalformedRequestStops: a client request that cannot be read exactly
// is reported, with what could be read of its paths, and stops the stream
// in the Write that holds its end (the end of its header, for a WRITE or a
// packet too long to parse). A relay that forwards only what the parser
// took therefore never forwards it whole, and sftp-server never reads past
// it into the next packet. Nothing after it is reported.
func TestMalformedRequestStops(t *testing.T) {
	init := exchange{c(pkt(fxpInit, 3)), s(pkt(fxpVersion, 3))}
	opened := append(init[:2:2], c(pkt(fxpOpen, 1, "/f", fxfWrite, 0)), s(pkt(fxpHandle, 1, "h")))
	// shortPath is a REMOVE whose path's length counts one byte more than
	// the packet holds: sftp-server would take the NUL that starts the
	// next packet's length as the end of the path, and remove /victim.
	shortPath := pkt(fxpRemove, 1, "/victim")
	binary.BigEndian.PutUint32(shortPath[9:], uint32(len("/victim")+1))
	malformed := func(name, path, newPath, msg string) []Op {
		return []Op{{Type: OpMalformed, Name: name, Path: path, NewPath: newPath, Message: msg},
			{Type: OpError, Message: "malformed " + name + " request"}}
	}
	// onOpened wraps the ops of a malformed request after opened: Close
	// reports the file as still open.
	onOpened := func(ops []Op) []Op {
		return append(append([]Op{{Type: OpOpen, Path: "/f", Mode: "write", OK: true}}, ops...),
			Op{Type: OpClose, Path: "/f", Incomplete: true})
	}
	short := "request too short for its fields"
	tests := []struct {
		name   string
		before exchange // fed whole first
		bad    []byte   // then this, followed by a REMOVE, through the relay
		want   []Op
	}{
		{"fail/short-remove-path", init, shortPath, malformed("REMOVE", "", "", short)},
		{"fail/no-request-id", init, pkt(fxpRemove, []byte{0, 0}), malformed("REMOVE", "", "", "no request ID")},
		{"fail/unknown-type-no-id", init, pkt(99), malformed("type 99", "", "", "no request ID")},
		{"fail/init-without-version", nil, pkt(fxpInit), malformed("INIT", "", "", "no version")},
		{"fail/first-packet-not-init", nil, pkt(fxpOpen, 1, "/x", 1, 0),
			malformed("OPEN", "", "", "first packet has type 3, want 1")},
		{"fail/malformed-open", init, pkt(fxpOpen, 1, uint32(100)), malformed("OPEN", "", "", short)},
		{"fail/open-without-flags-keeps-path", init, pkt(fxpOpen, 1, "/x"), malformed("OPEN", "/x", "", short)},
		{"fail/malformed-rename-keeps-path", init, pkt(fxpRename, 1, "/old", uint32(9)), malformed("RENAME", "/old", "", short)},
		{"fail/symlink-keeps-target", init, pkt(fxpSymlink, 1, "/target", uint32(9)), malformed("SYMLINK", "", "/target", short)},
		{"fail/short-mkdir", init, pkt(fxpMkdir, 1, uint32(5), []byte("/d")), malformed("MKDIR", "", "", short)},
		{"fail/short-close", init, pkt(fxpClose, 1, uint32(2), []byte("h")), malformed("CLOSE", "", "", short)},
		{"fail/read-without-length", init, pkt(fxpRead, 1, "h", uint64(0)), malformed("READ", "", "", short)},
		{"fail/short-stat", init, pkt(fxpStat, 1, uint32(10)), malformed("STAT", "", "", short)},
		{"fail/short-fsetstat", opened, pkt(fxpFsetstat, 1, uint32(10)), onOpened(malformed("FSETSTAT", "", "", short))},
		{"fail/short-extension-name", init, pkt(fxpExtended, 1, uint32(24), []byte("posix-rename")), malformed("EXTENDED", "", "", short)},
		{"fail/posix-rename-keeps-path", init, pkt(fxpExtended, 1, "posix-rename@openssh.com", "/a", uint32(9)),
			malformed("EXTENDED", "/a", "", short)},
		{"fail/short-hardlink", init, pkt(fxpExtended, 1, "hardlink@openssh.com", "/a"), malformed("EXTENDED", "", "/a", short)},
		{"fail/short-lsetstat", init, pkt(fxpExtended, 1, "lsetstat@openssh.com", uint32(9)), malformed("EXTENDED", "", "", short)},
		{"fail/short-copy-data", init, pkt(fxpExtended, 1, "copy-data", "h1", uint64(0), uint64(0), "h2"),
			malformed("EXTENDED", "h1", "h2", short)},
		// Attributes cut short: sftp-server would take the rest from
		// the next packet.
		{"fail/open-attrs-cut", init, pkt(fxpOpen, 1, "/x", uint32(fxfWrite), uint32(attrPermissions)), malformed("OPEN", "/x", "", short)},
		{"fail/setstat-times-cut", init, pkt(fxpSetstat, 1, "/d", uint32(attrACModTime), uint32(5)), malformed("SETSTAT", "/d", "", short)},
		{"fail/mkdir-extension-cut", init, pkt(fxpMkdir, 1, "/d", uint32(attrExtended), uint32(1), "type"), malformed("MKDIR", "/d", "", short)},
		{"fail/lsetstat-owner-cut", init, pkt(fxpExtended, 1, "lsetstat@openssh.com", "/l", uint32(attrUIDGID), uint32(0)),
			malformed("EXTENDED", "/l", "", short)},
		{"fail/short-statvfs", init, pkt(fxpExtended, 1, "statvfs@openssh.com", uint32(9)), malformed("EXTENDED", "", "", short)},
		{"fail/short-write", init, pkt(fxpWrite, 1), malformed("WRITE", "", "", "packet too short for its header")},
		// sftp-server refuses a WRITE handle of 256 bytes or more, but
		// the parser could not count the data written through it.
		{"fail/oversized-write-handle", opened, pkt(fxpWrite, 2, strings.Repeat("h", 300), uint64(0), "data"),
			onOpened(malformed("WRITE", "", "", "handle of 300 bytes"))},
		{"fail/huge-write-handle", init, pkt(fxpWrite, 2, uint32(1<<31), "rest"), malformed("WRITE", "", "", "handle of 2147483648 bytes")},
		{"fail/write-data-past-packet", opened, pkt(fxpWrite, 2, "h", uint64(0), uint32(1000), []byte("abc")),
			onOpened(malformed("WRITE", "", "", "data length 1000 past the packet"))},
		{"fail/oversized-packet", init, pkt(fxpSetstat, 2, strings.Repeat("p", MaxPacket), 0),
			malformed("SETSTAT", "", "", "packet of 263181 bytes not parsed")},
	}
	for _, tc := range tests {
		for _, chunk := range []int{1, 3, 7, 4096, 1 << 20} {
			var got []Op
			p := NewParser(func(op Op) { got = append(got, op) })
			tc.before.feed(p, 1<<20)
			stream := append(slices.Clip(tc.bad), pkt(fxpRemove, 9, "/after")...)
			forwarded := 0
			var err error
			for b := stream; len(b) > 0 && err == nil; {
				n := min(chunk, len(b))
				if _, err = p.ClientWriter().Write(b[:n]); err == nil {
					forwarded += n
				}
				b = b[n:]
			}
			if !errors.Is(err, ErrBroken) || forwarded >= len(tc.bad) {
				t.Errorf("%s, chunks of %d: %d of %d bytes forwarded, then %v; want the packet not forwarded whole, ErrBroken",
					tc.name, chunk, forwarded, len(tc.bad), err)
			}
			p.Close()
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s, chunks of %d:\n got %+v\nwant %+v", tc.name, chunk, got, tc.want)
			}
		}
	}
}

// TestProbe: a probe follows a stream whose client opens with an INIT a
// client sends, exactly like NewParser; any other stream switches it off
// for good, silently, with writers that never fail.
func TestProbe(t *testing.T) {
	init := exchange{c(pkt(fxpInit, 3)), s(pkt(fxpVersion, 3))}
	remove := exchange{c(pkt(fxpRemove, 1, "/x")), s(status(1, 0, ""))}
	removed := []Op{{Type: OpRemove, Path: "/x", OK: true}}
	cat := func(xs ...exchange) exchange {
		var out exchange
		for _, x := range xs {
			out = append(out, x...)
		}
		return out
	}
	tests := []struct {
		name string
		x    exchange
		want []Op // nil: switched off
	}{
		{"ok/sftp", cat(init, remove), removed},
		{"ok/version-6-with-extensions", cat(exchange{c(pkt(fxpInit, 6, "vendor-id", "x", "a", "")), s(pkt(fxpVersion, 3))}, remove), removed},
		// From there on, exactly NewParser.
		{"ok/strict-after-init", cat(init, exchange{c(pkt(fxpOpen, 2, uint32(100))), c(pkt(fxpRemove, 3, "/x"))}),
			[]Op{{Type: OpMalformed, Name: "OPEN", Message: "request too short for its fields"},
				{Type: OpError, Message: "malformed OPEN request"}}},
		{"off/text", cat(exchange{c([]byte("SSH-2.0-OpenSSH_9.2\r\n")), s([]byte{0, 0, 0, 0})}, init, remove), nil},
		{"off/not-init", cat(exchange{c(pkt(fxpOpen, 1, "/x", 1, 0)), c([]byte{0, 0, 0, 0})}, remove), nil},
		{"off/zero-length", exchange{c([]byte{0, 0, 0, 0, fxpInit, 0, 0, 0, 3}), c(pkt(fxpRemove, 1, "/x"))}, nil},
		{"off/server-first", cat(exchange{s(pkt(fxpVersion, 3))}, init, remove), nil},
		{"off/server-before-init-ends", cat(exchange{c(pkt(fxpInit, 3)[:6]), s([]byte("x")), c(pkt(fxpInit, 3)[6:])}, remove), nil},
		{"off/init-too-long", cat(exchange{c(pkt(fxpInit, 3, "e", strings.Repeat("x", maxInit))), s(pkt(fxpVersion, 3))}, remove), nil},
		{"off/init-too-short", cat(exchange{c(pkt(fxpInit, []byte{0, 3})), s(pkt(fxpVersion, 3))}, remove), nil},
		{"off/version-0", cat(exchange{c(pkt(fxpInit, 0)), s(pkt(fxpVersion, 3))}, remove), nil},
		{"off/version-7", cat(exchange{c(pkt(fxpInit, 7)), s(pkt(fxpVersion, 3))}, remove), nil},
		// A one-image icon of 256 pixels opens with 00 00 01 00 01 00:
		// a length of 256 and the type of INIT.
		{"off/icon", exchange{c([]byte{0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 32, 0}), c(bytes.Repeat([]byte{0x89, 'P', 'N', 'G'}, 100))}, nil},
		{"off/bad-extension", cat(exchange{c(pkt(fxpInit, 3, "name-without-data")), s(pkt(fxpVersion, 3))}, remove), nil},
	}
	for _, tc := range tests {
		for _, chunk := range []int{1, 3, 4096} {
			var got []Op
			p := NewProbe(func(op Op) { got = append(got, op) })
			for _, m := range tc.x {
				w := p.ServerWriter()
				if m.client {
					w = p.ClientWriter()
				}
				for b := m.b; len(b) > 0; {
					n := min(chunk, len(b))
					if k, err := w.Write(b[:n]); (err != nil || k != n) && tc.want == nil {
						t.Fatalf("%s, chunks of %d: write: %d, %v; want %d, nil", tc.name, chunk, k, err, n)
					}
					b = b[n:]
				}
			}
			p.Close()
			if off := p.off.Load(); off != (tc.want == nil) {
				t.Errorf("%s, chunks of %d: switched off: %v; want %v", tc.name, chunk, off, tc.want == nil)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s, chunks of %d:\n got %+v\nwant %+v", tc.name, chunk, got, tc.want)
			}
		}
	}
}

// TestProbeOffCostsNothing: once switched off, a probe keeps no buffer and
// does not look at the bytes.
func TestProbeOffCostsNothing(t *testing.T) {
	p := NewProbe(func(op Op) { t.Errorf("reported %+v", op) })
	p.ClientWriter().Write([]byte{0, 0, 0, 100, fxpInit, 0, 0})
	p.ServerWriter().Write([]byte("hello"))
	if !p.off.Load() || p.client.buf != nil {
		t.Fatalf("off %v, buffer of %d bytes", p.off.Load(), cap(p.client.buf))
	}
	data := make([]byte, 1<<20)
	if n := testing.AllocsPerRun(100, func() {
		p.ClientWriter().Write(data)
		p.ServerWriter().Write(data)
	}); n != 0 {
		t.Errorf("%v allocations a write; want 0", n)
	}
}

// TestBrokenStreamFailsWriters: once the framing cannot be followed, both
// writers fail with ErrBroken, so that the caller stops the stream; before
// that, and after a malformed reply, they never fail.
func TestBrokenStreamFailsWriters(t *testing.T) {
	var ops []Op
	p := NewParser(func(op Op) { ops = append(ops, op) })
	for _, b := range [][]byte{pkt(fxpInit, 3), pkt(fxpOpen, 1, "/f", fxfRead, 0), pkt(fxpRead, 2, "h", uint64(0), 10)} {
		if _, err := p.ClientWriter().Write(b); err != nil {
			t.Fatalf("write of a request: %v", err)
		}
	}
	for _, b := range [][]byte{pkt(fxpVersion, 3), pkt(fxpHandle, 1, uint32(50)), pkt(fxpData, 2, uint32(10), []byte("abc"))} {
		if _, err := p.ServerWriter().Write(b); err != nil {
			t.Fatalf("write of a reply: %v", err)
		}
	}
	bad := []byte{0xff, 0xff, 0xff, 0xff, fxpRemove}
	if n, err := p.ClientWriter().Write(bad); !errors.Is(err, ErrBroken) || n != len(bad) {
		t.Fatalf("write of a broken frame: %d, %v; want %d, ErrBroken", n, err, len(bad))
	}
	for _, w := range []io.Writer{p.ClientWriter(), p.ServerWriter()} {
		if _, err := w.Write(pkt(fxpRemove, 3, "/x")); !errors.Is(err, ErrBroken) {
			t.Errorf("write after the break: %v; want ErrBroken", err)
		}
	}
	if last := ops[len(ops)-1]; last.Type != OpError || !strings.Contains(last.Message, "out of range") {
		t.Errorf("last op %+v; want the error", last)
	}
	p.Close()
	// Close alone does not make writes fail.
	q := NewParser(func(Op) {})
	q.Close()
	if _, err := q.ClientWriter().Write([]byte("late")); err != nil {
		t.Errorf("write after Close: %v", err)
	}
}

func TestCloseReportsOpenHandles(t *testing.T) {
	var got []Op
	p := NewParser(func(op Op) { got = append(got, op) })
	exchange{c(pkt(fxpInit, 3)), s(pkt(fxpVersion, 3)),
		c(pkt(fxpOpen, 1, "/f", fxfWrite, 0)), s(pkt(fxpHandle, 1, "h")),
		c(pkt(fxpWrite, 2, "h", uint64(0), "abc")),
		c(pkt(fxpRemove, 3, "/g"))}.feed(p, 5)
	p.Close()
	want := []Op{{Type: OpOpen, Path: "/f", Mode: "write", OK: true},
		{Type: OpRemove, Path: "/g", Incomplete: true},
		{Type: OpClose, Path: "/f", BytesWritten: 3, Incomplete: true}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestBoundedMemory(t *testing.T) {
	p := NewParser(func(Op) {})
	w := p.ClientWriter()
	w.Write(pkt(fxpInit, 3))
	// A 10 MiB WRITE is counted, not buffered; a 1 MiB reply other than
	// DATA is skipped; thousands of unanswered requests stay within the
	// limits.
	big := pkt(fxpWrite, 1, "h", uint64(0), string(make([]byte, 10<<20)))
	w.Write(big)
	p.ServerWriter().Write(pkt(fxpVersion, 3))
	p.ServerWriter().Write(pkt(fxpName, 2, 1, strings.Repeat("n", 1<<20), "", 0))
	for i := range 2*maxPending - 1 { // with the WRITE, as many as can be awaited
		w.Write(pkt(fxpStat, uint32(100+i), "/x"))
	}
	if cap(p.client.buf) > MaxPacket || cap(p.server.buf) > MaxPacket || p.pend.full > maxPending || p.pend.bare > maxPending {
		t.Errorf("buffers %d and %d bytes, %d+%d pending requests: not bounded",
			cap(p.client.buf), cap(p.server.buf), p.pend.full, p.pend.bare)
	}
	if p.broken {
		t.Errorf("parser gave up on valid input")
	}
}

// TestPendingLimit: past maxPending requests awaiting replies, a request
// is reported when seen, as incomplete, and its place is kept so that
// later replies still match their own requests; past twice that, the
// stream cannot be followed.
func TestPendingLimit(t *testing.T) {
	var got []Op
	p := NewParser(func(op Op) { got = append(got, op) })
	cw, sw := p.ClientWriter(), p.ServerWriter()
	cw.Write(pkt(fxpInit, 3))
	sw.Write(pkt(fxpVersion, 3))
	for i := range maxPending {
		cw.Write(pkt(fxpStat, uint32(i), "/x"))
	}
	cw.Write(pkt(fxpRemove, 7, "/late"))
	want := []Op{{Type: OpRemove, Path: "/late", Incomplete: true}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("past the limit: got %+v; want %+v", got, want)
	}
	// The first reply frees a place: the next request is kept whole,
	// behind /late.
	sw.Write(pkt(fxpAttrs, 0, 0))
	cw.Write(pkt(fxpRemove, 7, "/next"))
	for i := 1; i < maxPending; i++ {
		sw.Write(pkt(fxpAttrs, uint32(i), 0))
	}
	sw.Write(status(7, 0, ""))                  // /late's
	sw.Write(status(7, 3, "Permission denied")) // /next's
	want = append(want, Op{Type: OpRemove, Path: "/next", Status: 3, Message: "Permission denied"})
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after the replies: got %+v\nwant %+v", got, want)
	}
	if p.pend.full != 0 || p.pend.bare != 0 || len(p.pend.byID) != 0 {
		t.Fatalf("%d+%d requests still awaited, %d IDs", p.pend.full, p.pend.bare, len(p.pend.byID))
	}
	for i := range 2 * maxPending {
		if _, err := cw.Write(pkt(fxpStat, uint32(i), "/x")); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if _, err := cw.Write(pkt(fxpRemove, 1, "/over")); !errors.Is(err, ErrBroken) {
		t.Fatalf("request past twice the limit: %v; want ErrBroken", err)
	}
	if last := got[len(got)-1]; last.Type != OpError {
		t.Fatalf("last op %+v; want the error", last)
	}
}

// TestMain doubles as an SFTP proxy for TestRealOpenSSH: sftp -D runs this
// binary, which relays between sftp and sftp-server through a Parser and
// writes the operations it saw as JSON lines.
func TestMain(m *testing.M) {
	if out := os.Getenv("SFTPAUDIT_PROXY_OUT"); out != "" {
		os.Exit(proxy(out))
	}
	os.Exit(m.Run())
}

func proxy(outPath string) int {
	out, err := os.Create(outPath)
	if err != nil {
		return 1
	}
	defer out.Close()
	enc := json.NewEncoder(out)
	p := NewParser(func(op Op) { enc.Encode(op) })
	cmd := exec.Command(sftpServer)
	toServer, _ := cmd.StdinPipe()
	fromServer, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return 1
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Each request reaches the parser before the server, as the
		// parser requires.
		io.Copy(io.MultiWriter(p.ClientWriter(), toServer), os.Stdin)
		toServer.Close()
	}()
	// Server bytes reach the parser before the client.
	io.Copy(io.MultiWriter(p.ServerWriter(), os.Stdout), fromServer)
	cmd.Wait()
	wg.Wait()
	p.Close()
	return 0
}

const sftpServer = "/usr/lib/openssh/sftp-server"

func TestRealOpenSSH(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.bin")
	payload := bytes.Repeat([]byte("0123456789abcdef"), 300000) // 4.8 MB
	if err := os.WriteFile(src, payload, 0o600); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ops := filepath.Join(dir, "ops.jsonl")
	batch := filepath.Join(dir, "batch")
	os.WriteFile(batch, []byte(strings.Join([]string{
		"put " + src + " " + dir + "/up.bin",
		"get " + dir + "/up.bin " + dir + "/down.bin",
		"mkdir " + dir + "/sub",
		"rename " + dir + "/up.bin " + dir + "/sub/moved.bin",
		"chmod 600 " + dir + "/sub/moved.bin",
		"rm " + dir + "/sub/moved.bin",
		"rmdir " + dir + "/sub",
		"rm " + dir + "/missing",
	}, "\n")+"\n"), 0o600)
	cmd := exec.Command("sftp", "-b", batch, "-D", exe+" -test.run=^$")
	cmd.Env = append(os.Environ(), "SFTPAUDIT_PROXY_OUT="+ops)
	out, err := cmd.CombinedOutput()
	// The batch ends with a failing rm, so sftp exits 1.
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 1) {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	down, err := os.ReadFile(filepath.Join(dir, "down.bin"))
	if err != nil || !bytes.Equal(down, payload) {
		t.Fatalf("download through the proxy differs (%v)", err)
	}
	b, err := os.ReadFile(ops)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for l := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		var op Op
		if err := json.Unmarshal([]byte(l), &op); err != nil {
			t.Fatal(err)
		}
		if op.Type == OpOpendir {
			continue // sftp lists folders as it pleases
		}
		got = append(got, strings.ReplaceAll(op.String(), dir, "D"))
	}
	want := []string{
		`open "D/up.bin"`,
		`close "D/up.bin" read=0 written=4800000`,
		`open "D/up.bin"`,
		`close "D/up.bin" read=4800000 written=0`,
		`mkdir "D/sub"`,
		`rename "D/up.bin" -> "D/sub/moved.bin"`,
		`setstat "D/sub/moved.bin"`,
		`remove "D/sub/moved.bin"`,
		`rmdir "D/sub"`,
		`remove "D/missing" failed(2 "No such file")`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("operations seen:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// FuzzParser feeds arbitrary bytes to both directions, to a parser or (odd
// chunk values) a probe: no panic, no unbounded state, an error is
// reported at most once, nothing is reported after it but what Close finds
// open, and the writers fail only with ErrBroken, and only once the error
// is reported. A probe that switched off reports nothing at all, and Close
// leaves no request awaited.
func FuzzParser(f *testing.F) {
	f.Add(pkt(fxpInit, 3), pkt(fxpVersion, 3), uint8(3))
	f.Add(append(pkt(fxpInit, 3), pkt(fxpOpen, 1, "/f", fxfWrite, 0)...), append(pkt(fxpVersion, 3), pkt(fxpHandle, 1, "h")...), uint8(1))
	f.Add(append(pkt(fxpInit, 3), pkt(fxpWrite, 2, "h", uint64(0), "data")...), append(pkt(fxpVersion, 3), status(2, 0, "")...), uint8(5))
	f.Add(append(pkt(fxpInit, 3), pkt(fxpExtended, 2, "posix-rename@openssh.com", "/a")...), pkt(fxpVersion, 3), uint8(9))
	f.Add(append(pkt(fxpInit, 3), pkt(fxpWrite, 2, strings.Repeat("h", 257), uint64(0), "data")...), append(pkt(fxpVersion, 3), status(2, 4, "")...), uint8(64))
	f.Fuzz(func(t *testing.T, client, server []byte, chunk uint8) {
		n := int(chunk%64) + 1
		errs, closing, reported := 0, false, 0
		emit := func(op Op) {
			reported++
			if errs > 0 && !closing {
				t.Fatalf("%+v reported after the error", op)
			}
			if op.Type == OpError {
				errs++
			}
			if len(op.Path) > maxString || len(op.NewPath) > maxString {
				t.Fatalf("path of %d bytes kept", len(op.Path))
			}
		}
		p := NewParser(emit)
		if chunk%2 == 1 {
			p = NewProbe(emit)
		}
		write := func(w io.Writer, b []byte) {
			if _, err := w.Write(b); err != nil && (!errors.Is(err, ErrBroken) || errs != 1) {
				t.Fatalf("write: %v after %d errors", err, errs)
			}
		}
		for len(client) > 0 || len(server) > 0 {
			k := min(n, len(client))
			write(p.ClientWriter(), client[:k])
			client = client[k:]
			k = min(n, len(server))
			write(p.ServerWriter(), server[:k])
			server = server[k:]
		}
		awaited := 0
		for _, l := range p.pend.byID {
			awaited += len(l)
		}
		if awaited != p.pend.full+p.pend.bare {
			t.Fatalf("%d requests awaited, %d+%d counted", awaited, p.pend.full, p.pend.bare)
		}
		if p.pend.full > maxPending || p.pend.bare > maxPending || len(p.handles) > maxHandles || cap(p.client.buf) > MaxPacket || cap(p.server.buf) > MaxPacket {
			t.Fatal("state not bounded")
		}
		closing = true
		p.Close()
		if errs > 1 {
			t.Fatalf("%d errors reported", errs)
		}
		if p.off.Load() && reported > 0 {
			t.Fatalf("a probe switched off reported %d operations", reported)
		}
		if len(p.pend.byID) != 0 || p.pend.full != 0 || p.pend.bare != 0 {
			t.Fatal("requests still awaited after Close")
		}
	})
}

// FuzzParserFramed sends packets of arbitrary content but sane framing
// (each length prefix right): the parser gives up only on a request it
// reported as malformed just before, and otherwise a REMOVE sent after
// them is always audited.
func FuzzParserFramed(f *testing.F) {
	f.Add([]byte{10, fxpWrite, 0, 0, 0, 1, 0, 0, 1, 0, 'h'}, uint8(3))
	f.Add([]byte{4, fxpOpen, 0, 0, 0}, uint8(1))
	f.Add([]byte{0, 0, 1, fxpInit}, uint8(7))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		n := int(chunk%64) + 1
		// data is a series of bodies, each preceded by its length byte.
		var stream []byte
		for packets := 0; len(data) > 0 && packets < maxPending; packets++ {
			l := min(int(data[0]), len(data)-1)
			body := data[1 : 1+l]
			data = data[1+l:]
			if len(body) == 0 {
				continue // a zero length is a framing error
			}
			stream = binary.BigEndian.AppendUint32(stream, uint32(len(body)))
			stream = append(stream, body...)
		}
		canary := pkt(fxpRemove, uint32(0xfffffff0), "/canary")
		stream = append(stream, canary...)
		var seen, stopped bool
		var last Op
		p := NewParser(func(op Op) {
			if op.Type == OpError {
				if last.Type != OpMalformed || op.Message != "malformed "+last.Name+" request" {
					t.Fatalf("parser gave up on framed packets: %+v after %+v", op, last)
				}
				stopped = true
			}
			if op.Type == OpRemove && op.Path == "/canary" {
				seen = true
			}
			last = op
		})
		for len(stream) > 0 {
			k := min(n, len(stream))
			if _, err := p.ClientWriter().Write(stream[:k]); err != nil {
				if !errors.Is(err, ErrBroken) || !stopped {
					t.Fatalf("write: %v, the parser stopped: %v", err, stopped)
				}
				break
			}
			stream = stream[k:]
		}
		p.ServerWriter().Write(pkt(fxpVersion, 3))
		p.ServerWriter().Write(status(0xfffffff0, 0, ""))
		p.Close()
		if !seen && !stopped {
			t.Fatal("a REMOVE after the fuzzed packets was not audited")
		}
	})
}

// FuzzParserIDs plays requests and in-order replies with few, reused IDs,
// as sftp-server answers them, plus replies no request awaits: every
// REMOVE is reported exactly once, with the outcome of its own reply (or
// as incomplete if it had none), and every reply without a request is
// reported as malformed.
func FuzzParserIDs(f *testing.F) {
	// IDs are b&3; b>>6 picks REMOVE, STAT or a status of code (b>>2)&3.
	f.Add([]byte{0x03, 0x43, 0x83, 0x83, 0x03, 0x8f}) // the review's reproduction
	f.Add([]byte{0x80, 0x01, 0x01, 0x81, 0x85})       // an orphan; two REMOVEs with one ID, answered
	f.Add([]byte{0x02, 0x83, 0x82, 0x42})             // an orphan between a request and its reply
	f.Fuzz(func(t *testing.T, script []byte) {
		type req struct {
			path   string // "" for a STAT, which is not reported
			status uint32
			done   bool
		}
		var reqs []*req
		queue := map[uint32][]*req{} // awaiting, oldest first
		orphans, malformed := 0, 0
		got := map[string][]Op{}
		p := NewParser(func(op Op) {
			switch op.Type {
			case OpRemove:
				got[op.Path] = append(got[op.Path], op)
			case OpMalformed:
				malformed++
			default:
				t.Fatalf("unexpected %+v", op)
			}
		})
		cw, sw := p.ClientWriter(), p.ServerWriter()
		cw.Write(pkt(fxpInit, 3))
		sw.Write(pkt(fxpVersion, 3))
		for i, b := range script {
			id := uint32(b & 3)
			switch b >> 6 {
			case 0: // REMOVE
				r := &req{path: "/r" + strconv.Itoa(i)}
				reqs = append(reqs, r)
				queue[id] = append(queue[id], r)
				cw.Write(pkt(fxpRemove, id, r.path))
			case 1: // STAT
				queue[id] = append(queue[id], &req{})
				cw.Write(pkt(fxpStat, id, "/s"))
			default: // a status for the oldest request with this ID, if any
				code := uint32(b>>2) & 3
				sw.Write(status(id, code, "m"))
				if len(queue[id]) == 0 {
					orphans++
					continue
				}
				r := queue[id][0]
				queue[id] = queue[id][1:]
				r.status, r.done = code, true
			}
		}
		p.Close()
		for _, r := range reqs {
			want := Op{Type: OpRemove, Path: r.path, Incomplete: !r.done}
			if r.done {
				want.OK = r.status == 0
				if r.status != 0 {
					want.Status, want.Message = r.status, "m"
				}
			}
			if ops := got[r.path]; len(ops) != 1 || ops[0] != want {
				t.Fatalf("%s reported as %+v; want %+v", r.path, ops, want)
			}
		}
		if malformed != orphans {
			t.Fatalf("%d malformed reported; want %d orphan replies", malformed, orphans)
		}
	})
}
