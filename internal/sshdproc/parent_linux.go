package sshdproc

import "syscall"

// dieWithParent has the kernel stop sshd when the process that started it
// ends, even by SIGKILL, so that a killed `sallyport dev` or test leaves no
// sshd behind. (The signal is sent when the starting OS thread exits; Go
// ends threads only under LockOSThread, which this package's callers do
// not use.)
func dieWithParent(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGTERM }
