// Package bastion owns Sallyport's SSH front door: the server users reach
// with stock OpenSSH, target selection, per-request authorisation by the
// current policy, the upstream connection made with a session certificate,
// the relay of sessions, forwards and file transfers, session recording
// hooks, and continuous authorisation of live sessions. It does not issue
// user certificates; package ca does.
//
// # Naming the target
//
// Users name the target in one of two ways, both with stock OpenSSH:
//
//   - In the user name: ssh -p 2222 root@web1@bastion. The bastion parses
//     "root@web1" with ParseUser, authenticates the certificate for login
//     root and connects to web1.
//   - With ProxyJump: ssh -J bastion root@web1. The client opens a
//     direct-tcpip channel to web1:22; the bastion answers that channel
//     with an SSH server of its own that presents a host certificate for
//     "web1" signed by the host CA (minted on demand and cached), and
//     authenticates the user again, with a certificate of the carrier's
//     identity. The bastion accepts a tunnel only if the carrier's
//     identity is granted at least one login on that host now; otherwise
//     the tunnel is refused and audited. It dials the target once the
//     inner client offers the carrier's certificate (or after the inner
//     login), so that a tunnel alone makes it dial nothing.
//
// Everything else addressed to the bastion itself is refused: remote
// forwarding (ssh -R), Unix socket forwarding, tun devices, X11, sessions
// on a connection that names no target, and every subsystem but sftp.
//
// # Authentication contract
//
// The x/crypto PublicKeyCallback may run for keys the client never proves
// it holds (CVE-2024-45337). The bastion keeps no state from it: what it
// learns travels only in the *ssh.Permissions returned for that key, which
// x/crypto hands to VerifiedPublicKeyCallback only after the signature of
// that very key verified, and then to ServerConn.Permissions. Checks that
// need the store or the policy, and every audited refusal, happen in
// VerifiedPublicKeyCallback, so nothing is written on behalf of a key
// nobody proved to hold.
//
// A certificate is accepted only if its signature key is exactly the user
// CA key (not itself a certificate), it is a user certificate, its
// signature verifies, it is inside its validity window by the server's
// clock, it lists at least one principal and the requested login among
// them, it carries no critical option but force-command and
// source-address, the client address matches its source-address, the
// store holds the very same certificate under its serial, and neither the
// serial nor the key is revoked. Identity comes from the store's record of
// the serial, never from the key ID text (break-glass certificates, below,
// additionally have their key ID checked against that record).
//
// # Identities
//
// The store's identity of a certificate decides how it is authorised:
//
//   - "github:ID": a person. The directory must know GitHub user ID as a
//     current member; the policy decides for their login and teams.
//   - "github-actions:QUERY", as made by policy.CIClaims.IdentityString: a
//     GitHub Actions workload. policy.ParseCIIdentity must accept it
//     (the older "github-actions:REPO:REF[:ENV]" form, which lost the
//     workflow claim, is refused); the current policy decides for
//     policy.Identity{CI: &claims} like for a person, with every check
//     above and the same auditing. The directory is not asked: CI has no
//     teams.
//   - "breakglass:ID": an emergency certificate made by trust.BreakGlass
//     from a request signed by an admin, for when GitHub is down.
//   - Anything else is refused.
//
// A person or workload an admin suspended (standing.Check) is refused at
// login, on every new channel and in every sweep, so their live sessions
// end. A person whose current GitHub login is pinned to another user ID
// (the login changed hands) is decided for without that login: the
// policy's "users:" entries naming it do not apply, their teams do.
//
// # Break-glass
//
// A break-glass certificate must have exactly the shape trust.BreakGlass
// issues, or it is refused: request ID of 32 lower-case hexadecimal
// digits, key ID exactly "breakglass:ID host=HOST by=github:N serial=S"
// with the store's identity, a valid host name and the certificate's own
// serial, exactly one principal, no extension but permit-pty, and a
// validity window of at most trust.MaxBreakGlassTTL (plus the CA's
// backdating). It is then accepted only for its one principal on exactly
// HOST, which must be a host of the current policy (the policy gives its
// address; its roles are not consulted). The session gets a terminal and
// nothing else: no port, agent or X11 forwarding, whatever the
// certificate says; the forced command of the certificate, if any, is
// enforced; input is recorded along with output. The directory is never
// asked (GitHub is assumed down), but the validity window, the store's
// record and revocation apply as for every certificate, and, unlike other
// live sessions, a break-glass session is ended once its certificate
// expires. A ProxyJump
// carrier authenticated with a break-glass certificate may open tunnels to
// HOST only.
//
// Every break-glass login is audited as a "login" event with
// breakglass=true before it is answered (a login that cannot be audited is
// refused) and logged as a warning; its session start, exec and end
// events and every refusal of a break-glass certificate carry
// breakglass=true too.
//
// # Authorisation
//
// Each connection to a target, and each new session on it, is decided by
// the policy as it stands (Server.Policy) for the identity as the
// directory knows it now (Server.Directory), not by what the certificate
// says. The certificate can only narrow: the permissions in force are
// those both the policy decision and the certificate's permit-* extensions
// allow, and a force-command in either is enforced by the bastion itself
// (two different forced commands deny). Every new channel on a
// connection, and every re-evaluation (Reevaluate on a policy reload,
// directory change or revocation, and at least every SweepInterval),
// checks the store's revocations, the directory and the policy in one
// decision. A connection no longer allowed, or whose new terms take away a
// permission or input recording an open channel relies on, or whose
// forced command differs from the one minted into its session certificate
// (which the target enforces), is ended with a message and audited. A new channel also needs the
// certificate to be inside its validity window; open sessions outlive it,
// as with OpenSSH, so that a long transfer is not cut off (break-glass
// sessions excepted).
//
// # Limits
//
// Connections in their handshake are bounded in total (MaxStartups) and
// per source address or IPv6 /64 (MaxStartupsPerSource), like OpenSSH's
// MaxStartups, so that holding handshakes open from one place cannot lock
// others out. A connection over a bound waits for a slot instead of being
// refused, so that a burst of logins from one machine (ansible with many
// forks) gets through; a source may have only as many waiting as in their
// handshake. One identity may hold at most MaxConnectionsPerUser
// authenticated connections (the login through a ProxyJump tunnel is not
// counted again; logins through ProxyJump are bounded by the same number
// apart); one more is refused, with its reason on the first channel it
// opens. ProxyJump
// tunnels whose inner login has not succeeded are bounded per identity
// (MaxPendingTunnelsPerUser; more wait for a slot, at most
// HandshakeTimeout), as are the connections to targets opened ahead for
// them, and tunnel opens are paced per identity; a tunnel waits on a
// goroutine of its own, so that its connection's other channels keep
// moving. Sessions and port forwards are bounded per identity across
// connections (MaxSessionsPerUser, MaxForwardsPerUser):
// each may hold up to x/crypto's 2 MiB channel window each way of data a
// slow peer has not taken, so these bound what one person can make the
// bastion hold. A connection whose requests are refused too
// often (a burst of 16, then one a minute) is closed, and audited once,
// instead of filling the audit trail. A proven key refused on a
// connection is not decided again there (the client may go on to its next
// key, up to MaxAuthTries); refused logins are audited within a budget per key
// and per source across connections, and ProxyJump tunnel events within
// one per identity, the rest summed up in one event a minute later.
// A target may open at most 8 agent channels at once on a connection, and
// they do not count as activity. When a command ends, its remaining output
// is delivered however slowly the client takes it; a client that takes
// none for IdleTimeout is cut off without the exit status, so that it
// cannot mistake a truncated output for a complete one.
//
// # Recording
//
// Every session channel is recorded through Server.Recorder. A session
// whose recording cannot be started is refused; a session whose recording
// fails while it runs is ended. Nothing is left unrecorded.
//
// A channel with a pty, and a shell without one (ssh -T), has its output
// recorded in full. Exec and subsystem channels (and forced commands)
// without a pty keep the command, byte counts, the SHA-256 of the output
// and its head: all of it up to 8 MiB while it is text (a script piped to
// `ssh host sh`); from its first binary write, nothing more past what is
// kept or past 64 KiB (scp, rsync, sftp).
// Input is recorded only when the policy's record_input asks, with or
// without a pty: in full on a pty or a shell, its head (by the same rule)
// and its SHA-256 on exec and subsystem channels; its byte count is kept
// always. SFTP is audited for the
// sftp subsystem, an exec of sftp-server, and any exec or forced command
// without a pty whose client opens with an SFTP INIT; each reply is
// matched to its own request even when IDs are reused; a stream the audit
// cannot follow ends the session. A window size of 0 or over 10000
// is forwarded but not recorded.
//
// # Speed
//
// Both sides acknowledge TCP segments at once (TCP_QUICKACK) until the
// peer is known to send each packet at once: stock ssh leaves Nagle's
// algorithm on outside pty sessions, and a second small packet would wait
// up to 40 ms for a delayed ACK, several times per connection setup. The
// bastion offers AES-GCM only on machines with AES instructions, so that
// OpenSSH clients, which prefer ChaCha20-Poly1305, choose the cheaper
// cipher. The bench directory compares it with OpenSSH used as a ProxyJump
// bastion.
package bastion
