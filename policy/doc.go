// Package policy owns Sallyport's access policy: the YAML file format, its
// validation with file:line:col diagnostics, evaluation of an identity into
// a Grant, the decision whether a Grant allows principal@host, the tests
// kept with a policy, and the access diff between two versions.
//
// Evaluation is a pure function of (policy, identity, request): the package
// reads no clock, no environment and no network, and talks to no GitHub.
// The caller vouches for the Identity it passes in.
//
// # Format
//
// The file names the GitHub organisation, default and maximum certificate
// lifetimes, the hosts (name, address host:port, labels, optionally pinned
// host keys) and the roles. A
// role names its members (GitHub team slugs, logins, and GitHub Actions
// workloads by repository, ref and optionally environment and workflow),
// the principals it grants, the hosts it grants them on (exact names, globs
// over names, "label:NAME", or an explicit "*"), a ttl, permissions (pty,
// port-forwarding, agent-forwarding, x11-forwarding, user-rc), and
// optionally a forced command, source addresses and input recording.
// Unknown keys, duplicate keys or names, selectors or labels matching no
// host, invalid principals, bad CIDRs, ttls over max_ttl and addresses
// without a port are errors. A role that can never match anyone, or grants
// nothing, is a warning.
//
// Deny by default: anything not granted is denied, and an empty list grants
// nothing; "every host" is written "*".
//
// # Host keys
//
// The bastion accepts a target whose host certificate is signed by the
// host CA. A host that has no such certificate may instead list its plain
// host keys under host_keys, one OpenSSH public key per entry as in
// /etc/ssh/ssh_host_ed25519_key.pub ("ssh-ed25519 AAAA... comment"); the
// bastion then also accepts exactly those keys from it, never any other
// (no trust on first use). Keys that do not parse, certificates (pin the
// plain key; certificates are trusted only from the host CA), DSA keys,
// RSA keys under 2048 bits and a key listed twice for one host are errors.
// The same key may be pinned for several hosts, since one machine may have
// several names. `sallyport policy diff` reports every change of a host's
// pinned keys, by fingerprint.
//
// # Combining roles
//
// An identity may match several roles. They combine by these rules, which
// `sallyport policy explain` prints too:
//
//  1. Pairs: the allowed principal@host pairs are the union of each
//     matching role's own pairs (its principals on its hosts). Roles never
//     combine into a cross product: one role's principals are never granted
//     on another role's hosts.
//  2. Lifetime: the certificate lifetime is the shortest ttl of all
//     matching roles (a role without ttl counts as defaults.ttl), capped by
//     defaults.max_ttl. One certificate serves every pair, so the most
//     cautious role sets it.
//  3. Permissions: for a pair granted by several roles, only the
//     permissions every one of those roles grants (the intersection). A
//     role that grants a pair with few permissions was written to restrict
//     that pair, and a broader role must not undo it.
//  4. Forced command: if any role granting a pair forces a command, the
//     session runs that command. If two roles force different commands, the
//     pair is denied: neither command is known to be safe in the other's
//     place.
//  5. Source addresses: a role without source_addresses does not restrict;
//     each role with them does, so the allowed sources are the intersection
//     of the restricting roles' lists. If that intersection is empty, the
//     pair is denied.
//  6. Recording input: keystrokes are recorded if any role granting the
//     pair asks for it.
//
// Roles granting a principal on other hosts do not affect a pair; only the
// roles granting that exact principal@host combine under rules 3 to 6.
//
// # Principals
//
// Principals are user names on targets. They are limited to ASCII letters,
// digits, '.', '_' and '-', may not start with '-' or '.', and are at most
// MaxPrincipalLength (32) bytes: this excludes everything OpenSSH treats
// specially in user names and certificate principals (wildcards '*' and
// '?', ',', whitespace, control characters, '@', '%').
//
// # Performance
//
// Validate precomputes each role's set of hosts as a bitset and indexes
// roles by team, login and CI repository. Policy.Grant then touches only
// the roles that name the identity, and Grant.Allows is one map lookup for
// the host plus one bit test per role granting the principal.
package policy

// CombinationRules is the short form of the rules above, as printed by
// `sallyport policy explain`.
const CombinationRules = `How matching roles combine:
  1. pairs: the union of each role's own principal@host pairs; never one role's principals on another role's hosts
  2. ttl: the shortest ttl of the matching roles (defaults.ttl when a role sets none), capped by defaults.max_ttl
  3. permissions: for a pair granted by several roles, only what every one of them grants (intersection)
  4. force_command: applies if any granting role sets it; roles forcing different commands deny the pair
  5. source_addresses: the intersection of the restricting roles' lists; an empty intersection denies the pair
  6. record_input: on if any granting role asks for it
`
