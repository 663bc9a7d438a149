package bastion

import (
	"io"
	"net"
	"runtime"
	"testing"
)

func TestQuickAck(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		for _, s := range []string{"one ", "two ", "three"} {
			c.Write([]byte(s))
		}
	}()
	nc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c := quickAck(nc)
	defer c.Close()
	if _, wrapped := c.(*quickAckConn); wrapped != (runtime.GOOS == "linux") {
		t.Errorf("quickAck on %s: wrapped = %t", runtime.GOOS, wrapped)
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "one two three" {
		t.Errorf("read %q, %v; want %q", got, err, "one two three")
	}
	// The wrapper keeps the TCP connection's half-close.
	if _, ok := c.(interface{ CloseWrite() error }); !ok {
		t.Error("wrapped connection lost CloseWrite")
	}

	// Once the peer sends at once, quick acknowledgements stop.
	if q, ok := c.(*quickAckConn); ok {
		peerNoDelay(c)
		if !q.off.Load() {
			t.Error("peerNoDelay left quick acknowledgements on")
		}
	}

	// Anything but TCP passes through unchanged.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if quickAck(a) != a {
		t.Error("quickAck wrapped a net.Pipe")
	}
	peerNoDelay(a)   // no-op
	peerNoDelay(nil) // no upstream connection yet
}
