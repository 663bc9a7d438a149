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
		{"fail/not-sftp", exchange{c([]byte("SSH-2.0-OpenSSH_9.2\r\n"))},
			[]Op{{Type: OpError, Message: "packet length 1397966893 out of range"}}},
		{"fail/zero-length-stops", append(init[:2:2], c([]byte{0, 0, 0, 0, fxpRemove}), c(pkt(fxpRemove, 2, "/unseen"))),
			[]Op{{Type: OpError, Message: "packet length 0 out of range"}}},
		{"fail/first-packet-not-init", exchange{c(pkt(fxpOpen, 1, "/x", 1, 0)), s(pkt(fxpVersion, 3)), s(pkt(fxpHandle, 1, "h"))},
			[]Op{{Type: OpMalformed, Name: "OPEN", Message: "first packet has type 3, want 1"},
				{Type: OpOpen, Path: "/x", Mode: "read", OK: true}}},
		{"fail/short-write", append(init[:2:2], c(pkt(fxpWrite, 1)), c(pkt(fxpRemove, 2, "/after")), s(status(2, 0, ""))),
			[]Op{{Type: OpMalformed, Name: "WRITE", Message: "packet too short for its header"},
				{Type: OpRemove, Path: "/after", OK: true}}},
		{"fail/malformed-open", append(init[:2:2], c(pkt(fxpOpen, 1, uint32(100))), s(status(1, 4, "Failure")),
			c(pkt(fxpRemove, 2, "/after")), s(status(2, 0, ""))),
			[]Op{{Type: OpMalformed, Name: "OPEN", Message: "request too short for its fields"},
				{Type: OpRemove, Path: "/after", OK: true}}},
		{"fail/malformed-rename-keeps-path", append(init[:2:2], c(pkt(fxpRename, 1, "/old", uint32(9))), s(status(1, 4, "Failure"))),
			[]Op{{Type: OpMalformed, Name: "RENAME", Path: "/old", Message: "request too short for its fields"}}},
		// sftp-server answers a WRITE with a handle of 256 bytes or more
		// with an error status and carries on: the audit must too.
		{"fail/oversized-write-handle", append(init[:2:2],
			c(pkt(fxpOpen, 1, "/f", fxfWrite, 0)), s(pkt(fxpHandle, 1, "h")),
			c(pkt(fxpWrite, 2, strings.Repeat("h", 300), uint64(0), string(data[:5000]))), s(status(2, 4, "Failure")),
			c(pkt(fxpRemove, 3, "/secret")), s(status(3, 0, "")),
			c(pkt(fxpRename, 4, "/a", "/b")), s(status(4, 0, "")),
			c(pkt(fxpWrite, 5, "h", uint64(0), "abc")), s(status(5, 0, "")),
			c(pkt(fxpClose, 6, "h")), s(status(6, 0, ""))),
			[]Op{{Type: OpOpen, Path: "/f", Mode: "write", OK: true},
				{Type: OpMalformed, Name: "WRITE", Message: "handle of 300 bytes"},
				{Type: OpRemove, Path: "/secret", OK: true},
				{Type: OpRename, Path: "/a", NewPath: "/b", OK: true},
				{Type: OpClose, Path: "/f", BytesWritten: 3, OK: true}}},
		{"fail/huge-write-handle", append(init[:2:2],
			c(pkt(fxpWrite, 2, uint32(1<<31), "rest")), s(status(2, 4, "Failure")),
			c(pkt(fxpRemove, 3, "/secret")), s(status(3, 0, ""))),
			[]Op{{Type: OpMalformed, Name: "WRITE", Message: "handle of 2147483648 bytes"},
				{Type: OpRemove, Path: "/secret", OK: true}}},
		{"fail/write-data-past-packet", append(init[:2:2],
			c(pkt(fxpWrite, 2, "h", uint64(0), uint32(1000), []byte("abc"))), s(status(2, 4, "Failure")),
			c(pkt(fxpRemove, 3, "/secret")), s(status(3, 0, ""))),
			[]Op{{Type: OpMalformed, Name: "WRITE", Message: "data length 1000 past the packet"},
				{Type: OpRemove, Path: "/secret", OK: true}}},
		{"fail/oversized-packet", append(init[:2:2],
			c(pkt(fxpSetstat, 2, strings.Repeat("p", MaxPacket), 0)), s(status(2, 4, "Failure")),
			c(pkt(fxpRemove, 3, "/secret")), s(status(3, 0, ""))),
			[]Op{{Type: OpMalformed, Name: "SETSTAT", Message: "packet of 263181 bytes not parsed"},
				{Type: OpRemove, Path: "/secret", OK: true}}},
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
		{"ok/strict-after-init", cat(init, exchange{c(pkt(fxpOpen, 2, uint32(100))), c([]byte{0, 0, 0, 0, fxpRemove})}),
			[]Op{{Type: OpMalformed, Name: "OPEN", Message: "request too short for its fields"},
				{Type: OpError, Message: "packet length 0 out of range"}}},
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
// that, and after a malformed packet, they never fail.
func TestBrokenStreamFailsWriters(t *testing.T) {
	var ops []Op
	p := NewParser(func(op Op) { ops = append(ops, op) })
	for _, b := range [][]byte{pkt(fxpInit, 3), pkt(fxpOpen, 1, uint32(100)), pkt(fxpWrite, 2, strings.Repeat("h", 300), uint64(0), "x")} {
		if _, err := p.ClientWriter().Write(b); err != nil {
			t.Fatalf("write of a framed packet: %v", err)
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
	// A 10 MiB WRITE is counted, not buffered; a 1 MiB other packet is
	// skipped; thousands of unanswered requests stay within the limits.
	big := pkt(fxpWrite, 1, "h", uint64(0), string(make([]byte, 10<<20)))
	w.Write(big)
	w.Write(pkt(fxpSetstat, 2, strings.Repeat("p", 1<<20)))
	for i := range 2*maxPending - 2 { // with the two above, as many as can be awaited
		w.Write(pkt(fxpStat, uint32(100+i), "/x"))
	}
	if cap(p.client.buf) > MaxPacket || p.pend.full > maxPending || p.pend.bare > maxPending {
		t.Errorf("buffer %d bytes, %d+%d pending requests: not bounded", cap(p.client.buf), p.pend.full, p.pend.bare)
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
// (each length prefix right): the client can never make the parser give up,
// so a REMOVE sent after them is always audited.
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
		var seen bool
		p := NewParser(func(op Op) {
			if op.Type == OpError {
				t.Fatalf("parser gave up on framed packets: %+v", op)
			}
			if op.Type == OpRemove && op.Path == "/canary" {
				seen = true
			}
		})
		for len(stream) > 0 {
			k := min(n, len(stream))
			if _, err := p.ClientWriter().Write(stream[:k]); err != nil {
				t.Fatal(err)
			}
			stream = stream[k:]
		}
		p.ServerWriter().Write(pkt(fxpVersion, 3))
		p.ServerWriter().Write(status(0xfffffff0, 0, ""))
		p.Close()
		if !seen {
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
