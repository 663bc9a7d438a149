// Package web owns Sallyport's HTTP side: GitHub and generic OIDC sign-in
// for browsers and for `sallyport login` (loopback redirect with PKCE, or a
// device-style code), sessions, the certificate issuance API for people and
// for GitHub Actions jobs, the pages (sign in, your access, paste a key,
// ssh_config and known_hosts lines), policy reloading, /metrics and
// /healthz. It does not speak SSH.
//
// # Sessions
//
// Sessions live in this process's memory only: a restart signs everyone
// out, which costs a volunteer one click, and keeps no bearer secrets on
// disk. A session token is "ID.SECRET"; the server keeps the ID and the
// SHA-256 of the secret and compares hashes in constant time. Browser
// sessions ride in an HttpOnly, SameSite=Lax cookie (Secure, with the
// __Host- prefix, when the base URL is https); the CLI gets a short-lived
// bearer token. Several replicas would need a shared session store.
//
// # Certificates
//
// A user certificate carries every principal some role grants the identity
// on at least one host, the grant's lifetime, and the union of the
// permissions granted on those pairs. It is a credential for the bastion,
// the only party trusting the user CA, and the bastion re-evaluates the
// policy for each principal@host and enforces that pair's own permissions,
// forced command and source addresses. So that a deployment letting a
// target trust the user CA directly (documented as unrecorded access) gets
// no more than the policy says, a forced command is written into the
// certificate when every granted pair forces the same one, and
// source-address when every granted pair restricts sources (their union).
//
// Before the policy decides, every sign-in and issuance makes the check of
// package standing, the same one the bastion makes: a suspended identity
// is refused (and RecordIssued refuses it again, atomically with the
// record), and a GitHub login pinned to another numeric user ID than the
// signed-in person's is left out of the decision, so that the policy's
// `users:` entries naming it do not apply; the narrowing is audited.
//
// # Admins
//
// The admin role comes from the OpenPGP web of trust only (AdminSet, see
// package trust): a person signed in with GitHub is an admin while an
// admitted key names their numeric GitHub ID, checked afresh on every admin
// request; team membership never makes an admin. Admins revoke
// certificates (one, or everything of a user, which also suspends the
// identity), lift suspensions, re-pin or release GitHub logins, read the
// audit log and see every session recording; everyone else sees only
// their own recordings.
// Every admin decision is logged and audited with its reason. A
// PolicyFile can require admin signatures (RequireSignatures), and
// BreakGlassPath turns admin-signed requests into certificates without
// asking GitHub.
//
// # Security
//
// Every form carries a per-session CSRF token, and cross-origin browser
// POSTs are refused (net/http CrossOriginProtection). OAuth callbacks are
// built from the configured base URL, never from the request; return_to
// accepts only same-origin relative paths. Bodies are size-limited,
// sign-in and signing are rate-limited per client address, and GitHub
// tokens and authorization codes are never logged, never kept, and never
// left in a URL: the callback answers with a redirect, and pages set
// Referrer-Policy: no-referrer.
package web
