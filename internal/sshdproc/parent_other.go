//go:build !linux

package sshdproc

import "syscall"

// dieWithParent does nothing where the kernel offers no parent-death
// signal: a killed parent leaves sshd running there.
func dieWithParent(*syscall.SysProcAttr) {}
