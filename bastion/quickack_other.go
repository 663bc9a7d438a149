//go:build !linux

package bastion

import "syscall"

// setQuickAck does nothing where TCP_QUICKACK does not exist.
func setQuickAck(syscall.RawConn) bool { return false }
