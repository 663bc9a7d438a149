package bastion

import (
	"net"
	"sync/atomic"
	"syscall"
)

// quickAck wraps a TCP connection so that every segment it receives is
// acknowledged at once.
//
// Stock OpenSSH clients leave Nagle's algorithm on for connections without
// a pty (ssh host true, scp, git), and during every connection's key
// exchange and authentication. A client that writes two small packets in a
// row then holds the second until the first is acknowledged, and Linux
// delays acknowledgements by up to 40 ms: a connection setup through such a
// peer stalls three or four times. Re-arming TCP_QUICKACK after each read
// (Linux clears it by itself) removes those stalls; elsewhere it is a no-op.
// The cost is one setsockopt per read and an ACK segment sent at once
// instead of riding on the reply; on a keystroke's path that is measurable,
// so peerNoDelay ends it once the peer is known to have turned Nagle off.
func quickAck(nc net.Conn) net.Conn {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nc
	}
	rc, err := tc.SyscallConn()
	if err != nil || !setQuickAck(rc) {
		return nc
	}
	return &quickAckConn{TCPConn: tc, rc: rc}
}

type quickAckConn struct {
	*net.TCPConn
	rc  syscall.RawConn
	off atomic.Bool
}

func (c *quickAckConn) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	if n > 0 && !c.off.Load() {
		setQuickAck(c.rc)
	}
	return n, err
}

// peerNoDelay stops quick acknowledgements on nc, if quickAck wrapped it:
// its peer sends each packet at once. OpenSSH's client does so from the
// moment a session has a pty or "ssh -W" (ProxyJump) forwards stdio, and
// sshd from the moment a session has a pty.
func peerNoDelay(nc net.Conn) {
	if c, ok := nc.(*quickAckConn); ok {
		c.off.Store(true)
	}
}
