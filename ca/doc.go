// Package ca owns Sallyport's three certificate authorities and everything
// they sign.
//
//   - The user CA signs the certificates people hold. Only the bastion trusts it.
//   - The session CA signs the short certificates the bastion presents to
//     targets for one connection. Targets trust only this key.
//   - The host CA signs host keys of targets and of the bastion; users trust it
//     with one @cert-authority line.
//
// Requests are typed values (UserRequest, HostRequest, SessionRequest); the
// Authority validates every field, allocates a serial from its Ledger, signs
// with the key of the request's kind only, and records the result before
// returning it. Who may receive which certificate is decided elsewhere
// (package policy); this package only enforces what any certificate must
// satisfy to be safe.
package ca
