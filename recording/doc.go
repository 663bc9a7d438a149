// Package recording owns session recordings: asciicast v2 files written while
// a bastion session runs, their tamper-evident digest chain and signature,
// verification, and safe replay to a terminal.
//
// # File format
//
// A recording is an asciicast v2 file (newline-delimited JSON) that
// `asciinema play` and `asciinema cat` accept unchanged. The header carries
// the terminal size, the start timestamp, env TERM and SHELL, a title naming
// user, login and host (control characters escaped), the exec command if any,
// and a "sallyport" object with the recording ID and the fingerprint of the
// signing key. Events are [seconds, "o"|"i"|"r", data]; input ("i") as
// described under "What is kept". Sallyport's own records are events of type
// "sallyport", which asciinema 2.x ignores (it plays only "o" events; tested),
// as does any player that acts only on the event types it knows:
//
//	[t, "sallyport", "chain N HEX"]             digest of block N
//	[t, "sallyport", "chain N HEX sig BASE64"]  the same, signed (checkpoint)
//	[t, "sallyport", "progress {JSON}"]         byte counts of a bulk channel
//	[t, "sallyport", "end {JSON}"]              exit status, counts, SHA-256s
//	[t, "sallyport", "final N HEX sig BASE64"]  last digest, signed
//
// # Digest chain
//
// The file is cut into blocks: block 0 is the header line, and each later
// block is every line written by one flush (at most FlushInterval apart)
// before its chain line. With d(-1) = SHA-256("sallyport recording chain
// v1"), d(N) = SHA-256(d(N-1) || bytes of block N || its chain line up to
// the digest), so the chain line's time and number are covered too. The
// chain line after block N holds hex d(N). Verify recomputes the chain and names the first
// block (lines and byte offsets) whose digest does not match. What follows
// the digest (the signature, the end of the line) is covered by no digest,
// so Verify requires each chain line to be exactly the one Sallyport
// writes for its time, number, digest and signature, and every event line
// to end with its JSON array: changing any byte of a recording makes Verify
// fail at that place. The chain alone
// only localises damage (anyone can recompute SHA-256): authenticity comes
// from signatures with the CA key given as Options.Signer. The final digest
// is always signed, and so is block 0 (the header), by Start: Verify reports
// a missing signature there as an alteration. The chain line of a timed flush
// is signed as a
// checkpoint once SignInterval has passed since the last signature; if the
// last chain line written is unsigned and nothing new has come, a timed flush
// then writes a signed chain line over an empty block. So everything on disk
// is signed at most SignInterval and a flush interval after it was written,
// and a recording cut short by a crash is authenticated up to its last
// checkpoint, which is at most that far behind its end. The signed
// message is "sallyport-recording-v1\x00" + ("final"|"checkpoint") + "\x00" +
// ID + "\x00" + block number + "\x00" + hex digest; the domain prefix keeps
// it from being mistaken for an SSH certificate or authentication signature.
// A signature is one SSH signature blob with nothing after it, in the one
// format expected for the key: ssh-ed25519, the key's ECDSA algorithm, or
// rsa-sha2-512 for RSA (never SHA-1 ssh-rsa, which the key itself would
// accept). Verify also requires the header's sallyport.format to be 1.
// Sallyport signs with the session CA (the key the bastion already holds to
// reach targets, and the one that vouches for sessions); verify with its
// public key.
//
// # What is kept
//
// A channel with a pty, and a shell (no command) without one, is recorded in
// full: a shell is interactive whether or not the client asked for a
// terminal (ssh -T), and its output must not escape the recording. A shell
// without a terminal does not echo the commands it reads: they are input,
// kept as below. The bulk rule below applies only to exec and subsystem
// channels (and forced commands) without a pty.
//
// Input is kept only when the policy's record_input (Meta.RecordInput)
// asks, with or without a pty: then in full on a pty or a shell, and its
// head (see Bulk output) on exec and subsystem channels without a pty.
// Without record_input no input event is written: input holds
// passwords typed without echo (on a terminal, or to sudo -S), files
// uploaded by sftp, scp or rsync (private keys, .env files) and scripts
// piped into ssh -T. Its byte count is kept always; its SHA-256 (on exec
// and subsystem channels without a pty) only with record_input, since an
// unsalted digest of a short input, a password, can be found from a
// dictionary. The header's sallyport.input says whether input events are
// present, and its bulk_head and bulk_text (0 when absent) how much of each
// kept stream a bulk channel keeps.
//
// # Bulk output
//
// An exec or subsystem channel without a pty (scp, rsync, a 1 GiB `cat`)
// keeps a bounded, cheap, faithful record: the command (header), the head
// of stdout and of stderr as ordinary "o" events (and of stdin as "i"
// events when record_input asks), the byte count and SHA-256 of each
// stream (stdout, stderr, and stdin when record_input asks) in the "end"
// record, and "progress" counts once per flush interval while data flows.
// A stream's head is all of it up to Options.BulkText (8 MiB) while every
// write of it is text (UTF-8 without NUL bytes, an incomplete character
// allowed where it is cut between writes), so that `ssh host sh < script`,
// or `journalctl`, is kept as a shell's output is; from its first write
// that is not text, nothing more is kept past what already is or past
// Options.BulkHead bytes (64 KiB), whichever is more, so a binary stream
// (scp, rsync, sftp, an archive) costs at most the head. Output
// past the head is counted and hashed, never stored. SHA-256 runs on a
// goroutine of the session's own, beside the relay rather than on it: Write
// copies the data into a bounded queue (at most 256 KiB in flight per
// session; a full queue makes Write wait, it never drops data), and Close,
// like a failure, waits until every accepted byte is hashed and ends that
// goroutine.
//
// # Text
//
// asciicast holds text; terminal output is bytes. Valid UTF-8 is stored as
// is, also across write boundaries (an incomplete sequence at the end of a
// write waits for the next). Each byte that is not part of valid UTF-8 is
// stored as the private-use code point U+10FE00+byte; a genuine code point in
// U+10FE00..U+10FEFF is stored as its four bytes escaped the same way, so the
// mapping is a bijection and DecodeBytes recovers the exact bytes. Players
// show such bytes as one unknown glyph each. Strings from the client or the
// target that go into the header (command, env values, and the sallyport
// object's session ID, identity, user, login and host) and the end record
// (exit signal, reason) are stored the same way, so that a command that is
// not UTF-8 is kept exactly and agrees with the index; NewReader decodes
// the header's, and Verify the end record's.
//
// # Failure rule
//
// A recording that cannot be started (folder missing or unwritable, disk
// full, index unavailable) makes Recorder.Start fail: the bastion must refuse
// the session. A recording that fails while the session runs (write or fsync
// error, or its file removed or replaced) closes Session.Failed() and makes
// every later Write return an error wrapping ErrFailed: the bastion must end
// the session, telling the user why, and the index row gets the reason and no
// digest. Writes to a removed file (its folder deleted, say) still succeed,
// so the first timed flush after a write, and Close before it calls the
// recording complete, check that the open file still has a name and is the
// one at its path. A disk that stops answering (a write, fsync, file
// check or close that has not returned within Options.FlushTimeout, by
// default twice FlushInterval and 5 seconds) fails the recording the same
// way; from a flush interval into such a wait, writes of a bulk channel
// wait too, so its output does not run ahead of the disk, and Close waits
// no longer than FlushTimeout before it records the failure in the index.
// A session is never left running unrecorded. A terminal size the
// client sends that cannot be recorded (zero, or over MaxTermSize) is not a
// failure: Start uses 80x24 and Resize skips the event, returning an error
// that wraps ErrSize. Writes never block on a
// slow disk for long: memory per session is bounded by MaxPending, past which
// Write waits for the disk (back-pressure on the relay) rather than grow.
//
// # Replay
//
// Of a channel kept by the bulk rule (no pty), Play shows the kept head only
// if it is UTF-8 text without NUL bytes, and otherwise one line with the
// command, the bytes each way and their SHA-256.
//
// Play and SafeWriter neutralise what a recorded program could do to the
// viewer's terminal while keeping the stored bytes unchanged: every OSC
// (clipboard writes with OSC 52, titles, hyperlinks, colour queries), DCS,
// SOS, PM and APC string, CSI sequences that make the terminal answer or act
// outside the screen (device status and attribute reports, window operations
// such as CSI 21 t, DECRQM), mouse and focus reporting modes, ESC Z, ENQ and
// C1 control characters are dropped, and so is erasing the scrollback (CSI
// 3 J and CSI ? 3 J), where a warning about the recording may stand; a full
// reset (RIS, ESC c), which would clear it too, becomes a soft one: what
// Reset writes, then the screen cleared. So is everything that changes how the
// terminal decodes later bytes, since text that is harmless UTF-8 can hold
// C1 controls once the terminal has left UTF-8: every ESC % (DOCS) sequence,
// ESC SP (7/8-bit controls, conformance levels), DECSCL, VT52 mode, locking
// shifts. Ordinary text, colours, cursor movement, charset designations and
// screen editing pass.
//
// Modes are let through only if replay needs them to look right and Reset
// undoes them: of the standard modes (SM/RM, CSI Pm h/l) insert (4) alone,
// so keyboard lock (KAM, 2), local echo (SRM, 12) and new-line mode (LNM,
// 20) are dropped; of the private ones (CSI ? Pm h/l) autowrap (7), cursor
// visibility (25), the alternate screens (47, 1047, 1049) and 1048 (save
// cursor). Everything else is dropped: cursor keys and keypad modes
// (DECCKM, ESC = and ESC >) change what the viewer's keys send; mouse and
// focus reporting and bracketed paste make the terminal send input; origin
// mode, reverse video and column mode (which resizes the window) are not
// needed. A sequence naming several modes keeps only those that pass. At the
// end of a replay (also when it is cut short) Reset leaves the alternate
// screen, resets the scroll region (keeping the cursor in place), the
// character sets, attributes and insert mode, turns autowrap on and shows
// the cursor, and restores the cursor style and tab stops if they changed.
// For a terminal that does not decode UTF-8 (PlayOptions.ASCII), every
// character that is not ASCII is shown as '?': a terminal reading Latin-1
// would take byte 0x9B of "Û" for CSI.
//
// Snapshot reads a recording once, so that what is played is exactly what
// was verified.
package recording
