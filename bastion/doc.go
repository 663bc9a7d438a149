// Package bastion will own Sallyport's SSH front door: the server users reach
// with stock OpenSSH, target selection, per-request authorisation by policy,
// the upstream connection with a session certificate, and session recording.
// It does not issue user certificates; package ca does.
package bastion
