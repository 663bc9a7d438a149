package bastion

import (
	"net"
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
// The cost is one setsockopt per read and a few more ACK segments.
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
	rc syscall.RawConn
}

func (c *quickAckConn) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	if n > 0 {
		setQuickAck(c.rc)
	}
	return n, err
}
