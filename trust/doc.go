// Package trust owns who Sallyport's admins are and what their OpenPGP
// signatures can authorise: the trust folder (pinned root fingerprints and a
// keyring of admin candidates), the web-of-trust computation of the admin
// set, verification of detached signatures over exact bytes (signed policy),
// clear-signed break-glass requests, and encryption to every admin (backups,
// sealed CA keys).
//
// # Admin set
//
// The admins are the root keys named by full fingerprint in the trust
// folder's roots file, plus, repeatedly until nothing changes, every key
// whose GitHub user ID carries valid certifications from at least Threshold
// distinct admins already admitted. A certification counts only if it is a
// cryptographically valid certification (signature types 0x10-0x13) by the
// certifier's primary key over that exact key and user ID, is not expired,
// not dated in the future, not revoked by its maker, and made with SHA-224 or
// stronger (never SHA-1, MD5 or RIPEMD-160). A key that is expired, revoked,
// has no valid self-signature, or uses a weak algorithm is never admitted,
// roots included. The computation starts from the roots every time, so a
// key that loses support drops out together with every key that depended
// on it.
//
// "Distinct admins" means distinct GitHub accounts, not distinct keys: one
// person holding two admitted keys counts once, both when certifying and
// when signing a policy.
//
// # Admin user IDs
//
// Every admin key names its GitHub account in a user ID of the form
//
//	Full Name (github:LOGIN/ID) <email@example.org>
//
// where LOGIN is the GitHub login and ID is the account's immutable numeric
// user ID (https://api.github.com/users/LOGIN shows it); the e-mail part is
// optional. The admin role is bound to the numeric ID, because logins can be
// renamed and then registered by someone else; the login is shown to people
// and may be compared with GitHub's answer to spot a stale user ID. A key
// naming two different GitHub accounts is rejected. Certifications count
// only on that user ID: certifying an admin candidate means vouching that
// the key belongs to that GitHub account.
//
// # Signatures
//
// Detached signatures (signed policy, trust verify) must be binary-mode
// OpenPGP signatures over the exact bytes of the file, as written by
// `gpg --detach-sign [--armor]`; inline-signed messages, clear-signed
// documents and text-mode signatures are refused. Signed requests
// (break-glass) are clear-signed with `gpg --clearsign`; their text names
// their purpose, a random ID and their creation time, so a valid signature
// over any other document does not count, and a request is accepted once
// and only while fresh.
//
// The package uses github.com/ProtonMail/go-crypto's v2 API and reads
// signatures at the packet level itself, so that every rule above is
// checked here rather than left to library defaults.
package trust
