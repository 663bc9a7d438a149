package bastion

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// setQuickAck asks Linux to acknowledge received segments without delay
// until it next decides the connection is interactive; it reports whether
// the option could be set.
func setQuickAck(rc syscall.RawConn) bool {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1)
	})
	return err == nil && serr == nil
}
