package bastion

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/policy"
	"github.com/sallyport/sallyport/recording"
	"github.com/sallyport/sallyport/sftpaudit"
)

// session relays one session channel between the user and the target.
type session struct {
	t      *targetConn
	id     string
	user   ssh.Channel
	ureqs  <-chan *ssh.Request
	up     ssh.Channel
	upReqs <-chan *ssh.Request

	// Set by the user request loop before the command starts.
	pty           bool
	term          string
	width, height int
	sftp          *sftpaudit.Parser
	env           []string // NAME=value passed on to the target

	mu         sync.Mutex
	rec        Recording
	started    bool
	start      time.Time
	command    string
	exitStatus int
	exitSignal string
	reason     string
	starting   chan struct{} // closed when the last start request has been answered
	held       []heldRequest // exit status and signal, passed on after the output
	outputDone bool          // the output has been passed on: held requests go at once
	cutOff     string        // why the output was not all delivered

	bytesIn, bytesOut atomic.Int64
	outputs           sync.WaitGroup
	outDone           chan struct{} // closed when the target's output is relayed
	exited            chan struct{} // closed when the exit status is passed on, or cannot come
	exitOnce          sync.Once
	relayed           chan struct{} // closed when the session ends
	stopOnce          sync.Once
	upClosed          chan struct{} // closed when the target has closed the channel
	targetDone        chan struct{} // closed when the target's side is done: output delivered or cut off
	gaveUp            chan struct{} // closed when a client that stopped reading was cut off
	userDone          chan struct{} // closed when the user has closed the channel
}

// heldRequest is a request from the target passed on to the user later.
type heldRequest struct {
	typ     string
	payload []byte
}

func newSession(t *targetConn, user ssh.Channel, ureqs <-chan *ssh.Request, up ssh.Channel, upReqs <-chan *ssh.Request) *session {
	return &session{
		t: t, id: newID(), user: user, ureqs: ureqs, up: up, upReqs: upReqs, exitStatus: -1,
		outDone: make(chan struct{}), exited: make(chan struct{}), relayed: make(chan struct{}),
		upClosed: make(chan struct{}), targetDone: make(chan struct{}), gaveUp: make(chan struct{}),
		userDone: make(chan struct{}),
	}
}

// run relays the session until both sides have closed it, or the target
// has and the user stopped taking its output (see drain).
func (se *session) run() {
	go se.targetRequests()
	go func() {
		defer close(se.userDone)
		se.userRequests()
	}()
	select {
	case <-se.userDone:
		// The user closed the channel (or the connection): close the
		// target's. sshd acknowledges the close only once the command
		// exits, which a command ignoring its closed pipes never does;
		// the connection's end releases whatever is still waiting then.
		se.up.Close()
		wait(se.targetDone, closeGrace)
	case <-se.gaveUp:
		// The session is over, but the client acknowledges the close only
		// once it has written out what it holds, which it may never do:
		// its channel is released (below) when it does, or with its
		// connection.
	}
	close(se.relayed)
	se.finish()
	<-se.userDone
}

// closeGrace is how long a closing session waits for the target to
// acknowledge the close and for the output already sent to drain.
const closeGrace = 2 * time.Second

// wait waits for ch to close, at most d.
func wait(ch <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

// waitOutput waits, at most d, for the target's output to be relayed.
func (se *session) waitOutput(d time.Duration) {
	if se.isStarted() {
		wait(se.outDone, d)
	}
}

// stop ends the session, telling the user why when reason is not empty.
func (se *session) stop(reason string) {
	se.stopOnce.Do(func() {
		se.mu.Lock()
		if se.reason == "" {
			se.reason = reason
		}
		se.mu.Unlock()
		if reason != "" {
			// A client that stopped reading must not hold the caller (the
			// sweeper, Shutdown) on a full window.
			told := make(chan struct{})
			go func() {
				defer close(told)
				_, _ = fmt.Fprintf(se.user.Stderr(), "\r\nsallyport: session ended: %s\r\n", reason)
			}()
			wait(told, time.Second)
		}
		se.up.Close()
		se.user.Close()
	})
}

// userRequests handles the user's channel requests in order, forwarding
// what the terms allow.
func (se *session) userRequests() {
	t := se.t
	// Agent and X11 requests come from the client's configuration, on
	// every session of a multiplexed connection: each refusal is audited
	// once per channel and does not count toward closing the connection.
	refused := map[string]bool{}
	refuseOnce := func(kind, reason string) {
		if !refused[kind] {
			refused[kind] = true
			_ = t.srv.auditDenial(context.Background(), t.info, t.conn.RemoteAddr(), reason)
		}
	}
	for r := range se.ureqs {
		ok := false
		var err error
		switch r.Type {
		case "pty-req":
			ok, err = se.ptyReq(r, refuseOnce)
		case "env":
			ok, err = se.setEnv(r, refuseOnce)
		case "shell", "exec", "subsystem":
			ok = se.begin(r)
		case "window-change":
			var w struct{ Cols, Rows, PW, PH uint32 }
			if ssh.Unmarshal(r.Payload, &w) == nil {
				se.resize(w.Cols, w.Rows)
				ok, err = se.forward(r)
			}
		case "signal", "break", "eow@openssh.com":
			ok, err = se.forward(r)
		case "auth-agent-req@openssh.com":
			if t.currentTerms().perms.Has(policy.AgentForwarding) {
				t.agentAsked.Store(true)
				ok, err = se.forward(r)
			} else {
				refuseOnce("agent", fmt.Sprintf("agent forwarding is not permitted for %s@%s", t.info.login, t.info.host))
			}
		case "x11-req":
			refuseOnce("x11", "X11 forwarding is not supported by the bastion")
		}
		if err != nil {
			ok = false
		}
		if r.WantReply {
			_ = r.Reply(ok, nil)
		}
	}
}

// maxEnv bounds the environment variables passed on for one session.
const maxEnv = 32

// setEnv passes an environment variable on to the target if checkEnv
// allows it, before the session starts and up to maxEnv of them. Others
// are refused, the first on the channel audited through refuse (a client
// sends its SendEnv on every session, like agent requests).
func (se *session) setEnv(r *ssh.Request, refuse func(kind, reason string)) (bool, error) {
	var e struct{ Name, Value string }
	if ssh.Unmarshal(r.Payload, &e) != nil {
		return false, nil
	}
	reason := checkEnv(e.Name, e.Value)
	switch {
	case reason != "":
	case se.isStarted():
		reason = fmt.Sprintf("environment variable %s refused: the session has started", quoteName(e.Name))
	case len(se.env) >= maxEnv:
		reason = fmt.Sprintf("environment variable %s refused: at most %d are passed on", quoteName(e.Name), maxEnv)
	}
	if reason != "" {
		refuse("env", reason)
		return false, nil
	}
	// Sent as checked, whatever else the payload held.
	ok, err := se.up.SendRequest(r.Type, r.WantReply, ssh.Marshal(&e))
	if err == nil && (ok || !r.WantReply) {
		se.env = append(se.env, e.Name+"="+e.Value)
	}
	return ok, err
}

// checkEnv says why the environment variable name=value is not passed on
// to targets, or "". Only the locale (LANG, LC_*) and the terminal type
// (TERM) are, and only with values that name one: anything else could
// carry a command past the audit and the recording (eval "$LC_X"), and a
// name sshd cannot take (a NUL) ends its whole connection.
func checkEnv(name, value string) string {
	switch {
	case name == "LANG" || strings.HasPrefix(name, "LC_") && len(name) > len("LC_") && len(name) <= 32 && envName(name):
		if len(value) > maxEnvValue || !onlyBytes(value, "_.@-") {
			return fmt.Sprintf("environment variable %s refused: its value is not a locale name", quoteName(name))
		}
	case name == "TERM":
		if !terminalName(value) {
			return fmt.Sprintf("environment variable %s refused: its value is not a terminal name", quoteName(name))
		}
	default:
		return fmt.Sprintf("environment variable %s refused: only LANG, LC_* and TERM are passed on", quoteName(name))
	}
	return ""
}

// maxEnvValue bounds the length of a locale or terminal name.
const maxEnvValue = 64

// terminalName reports whether s can name a terminal type, as terminfo
// names do (xterm-256color, screen.xterm-256color).
func terminalName(s string) bool {
	return s != "" && len(s) <= maxEnvValue && isAlnum(s[0]) && onlyBytes(s, "_.+-")
}

// envName reports whether s has only upper-case ASCII letters, digits and
// underscores.
func envName(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '_' && (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// onlyBytes reports whether s has only ASCII letters, digits and bytes of
// extra.
func onlyBytes(s, extra string) bool {
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && strings.IndexByte(extra, s[i]) < 0 {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// quoteName quotes a name from the client for a message or the audit
// trail: escaped and cut short.
func quoteName(s string) string { return `"` + recording.Escape(s, 64) + `"` }

// escapeAll escapes s for the audit trail, whole: bytes that are not
// UTF-8 stay distinct (JSON would turn each into U+FFFD), and control
// characters cannot act on whoever reads it.
func escapeAll(s string) string { return recording.Escape(s, len(s)+1) }

func (se *session) isStarted() bool {
	se.mu.Lock()
	defer se.mu.Unlock()
	return se.started
}

func (se *session) recording() Recording {
	se.mu.Lock()
	defer se.mu.Unlock()
	return se.rec
}

// resize records a window change. A size the recording cannot hold (zero,
// which RFC 4254 lets a client send, or absurdly large) is not recorded,
// but it is no reason to end the session: the request is still forwarded.
func (se *session) resize(cols, rows uint32) {
	w, h, ok := termSize(cols, rows)
	if !ok {
		se.t.srv.logger().Debug("bastion: window size not recorded", "session", se.id, "cols", cols, "rows", rows)
		return
	}
	rec := se.recording()
	if rec == nil {
		// Before the shell starts: the size the recording will start with.
		se.width, se.height = w, h
		return
	}
	if err := rec.Resize(w, h); errors.Is(err, recording.ErrFailed) {
		se.recordingFailed()
	}
}

// termSize converts a terminal size from the client; ok is false for one
// that cannot be recorded (zero, or over recording.MaxTermSize).
func termSize(cols, rows uint32) (w, h int, ok bool) {
	if cols == 0 || rows == 0 || cols > recording.MaxTermSize || rows > recording.MaxTermSize {
		return 0, 0, false
	}
	return int(cols), int(rows), true
}

// forward sends r to the target and returns its answer.
func (se *session) forward(r *ssh.Request) (bool, error) {
	return se.up.SendRequest(r.Type, r.WantReply, r.Payload)
}

// ptyRequest is the payload of "pty-req" (RFC 4254 6.2).
type ptyRequest struct {
	Term          string
	Cols, Rows    uint32
	Width, Height uint32
	Modes         string
}

// ptyReq forwards a pty request the terms permit. Its terminal type
// becomes TERM on the target, as from an env request: one that is not a
// terminal name (see terminalName) is refused, the first on the channel
// audited through refuse. An empty one, which OpenSSH sends when it has no
// TERM, is passed on.
func (se *session) ptyReq(r *ssh.Request, refuse func(kind, reason string)) (bool, error) {
	t := se.t
	if se.isStarted() {
		return false, nil
	}
	if !t.currentTerms().perms.Has(policy.PTY) {
		_, _ = fmt.Fprintf(se.user.Stderr(), "sallyport: no terminal: the policy does not permit a pty for %s@%s\r\n", t.info.login, t.info.host)
		return false, nil
	}
	var p ptyRequest
	if err := ssh.Unmarshal(r.Payload, &p); err != nil {
		return false, nil
	}
	if p.Term != "" && !terminalName(p.Term) {
		reason := fmt.Sprintf("terminal type %s refused: it is not a terminal name", quoteName(p.Term))
		refuse("pty", reason)
		_, _ = fmt.Fprintf(se.user.Stderr(), "sallyport: no terminal: %s\r\n", reason)
		return false, nil
	}
	// The target's answer is asked for even when the client did not ask:
	// a pty the target allocated decides how the session is recorded, and
	// SendRequest without a reply reports false whatever the target did.
	ok, err := se.up.SendRequest(r.Type, true, r.Payload)
	if ok && err == nil {
		// A size that cannot be recorded (zero means "use the pixel size"
		// in RFC 4254) is recorded as the recorder's default.
		w, h, _ := termSize(p.Cols, p.Rows)
		se.pty, se.term, se.width, se.height = true, p.Term, w, h
		// Both OpenSSH peers turn Nagle's algorithm off for a session
		// with a pty: quick acknowledgements would only cost time on
		// every keystroke.
		peerNoDelay(t.c.nc)
		peerNoDelay(t.upNC)
	}
	return ok, err
}

// refuse answers a shell, exec or subsystem request the bastion will not
// run. OpenSSH does not show what arrives on stderr before the request is
// answered, so the request is accepted and the session then ends at once
// with the reason on stderr and exit status 255.
func (se *session) refuse(r *ssh.Request, format string, args ...any) bool {
	if r.WantReply {
		_ = r.Reply(true, nil)
		r.WantReply = false
	}
	_, _ = fmt.Fprintf(se.user.Stderr(), "sallyport: "+format+"\r\n", args...)
	_, _ = se.user.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{255}))
	_ = se.user.CloseWrite()
	se.user.Close()
	return true
}

// begin handles shell, exec and subsystem: audit, start the recording,
// then ask the target, and start relaying data once it agreed.
func (se *session) begin(r *ssh.Request) bool {
	t := se.t
	s := t.srv
	if se.isStarted() {
		return false
	}
	// A channel opened before the certificate expired starts nothing
	// after (see admitChannel).
	if err := s.checkCert(t.info.cert, t.info.login, t.conn.RemoteAddr()); err != nil {
		reason := denialReason(err)
		if !t.expired.Swap(true) {
			_ = s.auditDenial(context.Background(), t.info, t.conn.RemoteAddr(), reason)
		}
		return se.refuse(r, "%s", reason)
	}
	tm := t.currentTerms()
	kind, command, subsystem := r.Type, "", ""
	switch r.Type {
	case "exec":
		var e struct{ Command string }
		if ssh.Unmarshal(r.Payload, &e) != nil {
			return false
		}
		command = e.Command
	case "subsystem":
		var e struct{ Name string }
		if ssh.Unmarshal(r.Payload, &e) != nil {
			return false
		}
		if e.Name != "sftp" {
			// The name is the client's: escaped and cut short.
			reason := fmt.Sprintf("subsystem \"%s\" is not supported", recording.Escape(e.Name, maxSubsystemName))
			_ = s.auditDeny(context.Background(), t.info, t.conn.RemoteAddr(), reason)
			_, _ = fmt.Fprintf(se.user.Stderr(), "sallyport: %s\r\n", reason)
			return false
		}
		subsystem = e.Name
	}
	reqType, payload := r.Type, r.Payload
	if tm.forceCommand != "" {
		// Enforced here, not only by the target: whatever was asked for,
		// the forced command runs.
		reqType, payload = "exec", ssh.Marshal(struct{ Command string }{tm.forceCommand})
		subsystem = ""
	}
	ctx := context.Background()
	meta := recording.Meta{
		SessionID: t.id, Identity: t.info.identity, User: t.info.who.Login,
		Login: t.info.login, Host: t.info.host,
		PTY: se.pty, Term: se.term, Width: se.width, Height: se.height,
		Command: command, RecordInput: tm.recordInput,
	}
	switch {
	case tm.forceCommand != "":
		meta.Command = tm.forceCommand
	case subsystem != "":
		meta.Command = "subsystem: " + subsystem
	}
	subject := t.info.login + "@" + t.info.host
	rec, err := s.Recorder.Start(ctx, meta)
	if err != nil {
		s.logger().Error("bastion: cannot start recording", "session", se.id, "err", err)
		_ = s.auditDeny(ctx, t.info, t.conn.RemoteAddr(), "session refused: its recording could not be started")
		return se.refuse(r, "session refused: it cannot be recorded")
	}
	fields := map[string]string{
		"session": se.id, "connection": t.id, "recording": rec.ID(), "login": t.info.login, "host": t.info.host,
		"kind": kind, "pty": strconv.FormatBool(se.pty), "serial": strconv.FormatUint(t.info.cert.Serial, 10),
		"remote": t.conn.RemoteAddr().String(),
	}
	if command != "" {
		fields["command"] = escapeAll(command)
	}
	if len(se.env) > 0 {
		env := slices.Sorted(slices.Values(se.env))
		fields["env"] = escapeAll(strings.Join(env, " "))
	}
	if t.info.glass != nil {
		fields["breakglass"] = "true"
		s.logger().Warn("bastion: BREAK-GLASS session", "session", se.id, "identity", t.info.identity, "target", subject, "kind", kind)
	}
	if subsystem != "" {
		fields["subsystem"] = subsystem
	}
	if tm.forceCommand != "" {
		fields["force_command"] = escapeAll(tm.forceCommand)
	}
	t.info.addCarrier(fields)
	abort := func() bool {
		_, _ = rec.Close(ctx, recording.End{ExitStatus: -1, Reason: "not started"})
		return se.refuse(r, "session refused: the bastion cannot write its audit log")
	}
	if err := s.audit(ctx, audit.Event{Type: audit.TypeSessionStart, Actor: t.info.identity, Subject: subject, Outcome: audit.OutcomeOK, Fields: fields}); err != nil {
		return abort()
	}
	if kind == "exec" || tm.forceCommand != "" {
		if err := s.audit(ctx, audit.Event{Type: audit.TypeExec, Actor: t.info.identity, Subject: subject, Outcome: audit.OutcomeOK, Fields: fields}); err != nil {
			return abort()
		}
	}
	switch {
	case subsystem == "sftp" || sftpServerCommand(meta.Command):
		se.sftp = sftpaudit.NewParser(se.auditSFTP)
	case !se.pty && (kind == "exec" || tm.forceCommand != ""):
		// Any command may start an SFTP server (sudo -u with options,
		// env -i, sh -c): the stream tells. A probe that finds no SFTP
		// switches itself off and never ends the session.
		se.sftp = sftpaudit.NewProbe(se.auditSFTP)
	}
	// Until the target has answered, its end of the channel does not
	// decide what happens to the output (see targetRequests).
	answered := make(chan struct{})
	defer close(answered)
	se.mu.Lock()
	se.starting = answered
	se.mu.Unlock()
	ok, err := se.up.SendRequest(reqType, true, payload)
	if err != nil || !ok {
		_, _ = rec.Close(ctx, recording.End{ExitStatus: -1, Reason: "the target refused the request"})
		return false
	}
	se.mu.Lock()
	se.rec, se.started, se.start, se.command = rec, true, s.now(), meta.Command
	se.mu.Unlock()
	se.relay(rec)
	return true
}

// maxSubsystemName bounds the runes of a refused subsystem name copied into
// the audit log and the user's message.
const maxSubsystemName = 64

// sftpServerCommand reports whether an exec command runs an SFTP server
// directly, as `sftp -s /usr/lib/openssh/sftp-server` asks: its first word,
// after any `exec`, `env`, `sudo` or `doas` and NAME=value assignments, with
// quotes removed, has the base name sftp-server. Such a session is known to
// carry SFTP and is parsed as strictly as the sftp subsystem: whatever its
// first packet, it is audited. Other commands without a pty (sudo with
// options, env -i, sh -c) are probed instead (sftpaudit.NewProbe): audited
// the same way when the client opens with an SFTP INIT.
func sftpServerCommand(command string) bool {
	for _, w := range strings.Fields(command) {
		w = strings.Trim(w, `'"`)
		if name, _, ok := strings.Cut(w, "="); ok && shellName(name) {
			continue
		}
		switch w {
		case "exec", "env", "sudo", "doas":
			continue
		}
		return path.Base(w) == "sftp-server"
	}
	return false
}

// shellName reports whether s can name a shell variable.
func shellName(s string) bool {
	for i, c := range s {
		if c != '_' && (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return s != ""
}

// auditSFTP records one SFTP operation seen in the stream. A malformed
// reply is audited as an error and parsing goes on; a malformed request,
// or a stream that cannot be followed, is audited as an error and logged,
// and the relay ends the session (see sftpLost).
func (se *session) auditSFTP(op sftpaudit.Op) {
	t := se.t
	// Paths are the client's bytes, names the client's and messages the
	// server's: escaped, so that /x/\xff and /x/\xfe stay apart.
	f := map[string]string{"session": se.id, "op": op.Type, "path": escapeAll(op.Path), "login": t.info.login, "host": t.info.host}
	if op.NewPath != "" {
		f["new_path"] = escapeAll(op.NewPath)
	}
	if op.Mode != "" {
		f["mode"] = op.Mode
	}
	if op.BytesRead > 0 || op.BytesWritten > 0 || op.Type == sftpaudit.OpClose {
		f["bytes_read"] = strconv.FormatInt(op.BytesRead, 10)
		f["bytes_written"] = strconv.FormatInt(op.BytesWritten, 10)
	}
	if op.Name != "" {
		f["name"] = recording.Escape(op.Name, maxSubsystemName)
	}
	if op.Incomplete {
		f["incomplete"] = "true"
	}
	outcome, reason := audit.OutcomeOK, ""
	switch {
	case op.Type == sftpaudit.OpError || op.Type == sftpaudit.OpMalformed:
		outcome, reason = audit.OutcomeError, recording.Escape(op.Message, 200)
		if op.Type == sftpaudit.OpError {
			t.srv.logger().Error("bastion: SFTP stream refused", "session", se.id, "err", op.Message)
		}
	case !op.OK && !op.Incomplete:
		outcome, reason = audit.OutcomeError, recording.Escape(op.Message, 200)
		f["status"] = strconv.FormatUint(uint64(op.Status), 10)
	}
	_ = t.srv.audit(context.Background(), audit.Event{Type: audit.TypeSFTP, Actor: t.info.identity,
		Subject: t.info.login + "@" + t.info.host, Outcome: outcome, Reason: reason, Fields: f})
}

// relay starts copying data: target output and errors to the user, user
// input to the target, each through its recording stream (and through the
// SFTP parser for sftp sessions and probed commands).
func (se *session) relay(rec Recording) {
	touch := se.t.c.touch
	tap := func(w io.Writer, extra io.Writer) func([]byte) error {
		return func(p []byte) error {
			var perr error
			if extra != nil {
				// Parsed before it is forwarded, so that the parser has
				// each SFTP request before the server can answer it. An
				// operation is audited when its reply is parsed, before
				// the reply reaches the client (or as incomplete when
				// the session ends): after the server acted on it.
				_, perr = extra.Write(p)
			}
			if _, err := w.Write(p); err != nil {
				se.recordingFailed()
				return err
			}
			if perr != nil {
				// Recorded, but not forwarded.
				se.sftpLost()
				return perr
			}
			return nil
		}
	}
	var toServer, toClient io.Writer
	if se.sftp != nil {
		toServer, toClient = se.sftp.ClientWriter(), se.sftp.ServerWriter()
	}
	// The counts grow as data is delivered: drain tells a client that
	// takes output slowly from one that stopped by them.
	se.outputs.Add(2)
	go func() {
		defer se.outputs.Done()
		_ = copyBuffer(se.user, se.up, touch, tap(rec.Stdout(), toClient), &se.bytesOut)
	}()
	go func() {
		defer se.outputs.Done()
		_ = copyBuffer(se.user.Stderr(), se.up.Stderr(), touch, tap(rec.Stderr(), nil), &se.bytesOut)
	}()
	go func() {
		se.outputs.Wait()
		se.endOutput()
	}()
	go func() {
		_ = copyBuffer(se.up, se.user, touch, tap(rec.Stdin(), toServer), &se.bytesIn)
		_ = se.up.CloseWrite()
	}()
	go func() {
		select {
		case <-rec.Failed():
			se.recordingFailed()
		case <-se.relayed:
		}
	}()
}

// endOutput tells the user the target's output has ended, once all of it
// reached them: the exit status (or signal), then EOF. The status comes
// before EOF because a client whose input is done closes the channel on
// EOF: OpenSSH's ControlMaster does, and a status arriving after its close
// is lost, so the multiplexed client exits 255. It is held until the
// output has been delivered (see passExit), and waited for at most
// closeGrace, for a command that closes its output and keeps running.
func (se *session) endOutput() {
	wait(se.exited, closeGrace)
	se.releaseHeld()
	_ = se.user.CloseWrite()
	close(se.outDone)
}

// passExit passes an exit status or signal from the target on to the
// user, after the output the target sent before it: sshd may send the
// status while its last output is still on the way, and a client that got
// the status and then lost the rest of the output (a client cut off for
// not reading, see drain) would report success.
func (se *session) passExit(typ string, payload []byte) {
	se.mu.Lock()
	now := se.outputDone
	if !now {
		se.held = append(se.held, heldRequest{typ, payload})
	}
	se.mu.Unlock()
	if now {
		_, _ = se.user.SendRequest(typ, false, payload)
	}
}

// releaseHeld passes on what passExit held; from then on it passes
// requests on at once.
func (se *session) releaseHeld() {
	se.mu.Lock()
	held := se.held
	se.held, se.outputDone = nil, true
	se.mu.Unlock()
	for _, r := range held {
		_, _ = se.user.SendRequest(r.typ, false, r.payload)
	}
}

// markExited records that no exit status is still to be passed on.
func (se *session) markExited() {
	se.exitOnce.Do(func() { close(se.exited) })
}

// recordingFailed ends a session whose recording broke: it may not go on
// unrecorded.
func (se *session) recordingFailed() {
	if rec := se.recording(); rec != nil {
		se.t.srv.logger().Error("bastion: recording failed; ending session", "session", se.id, "err", rec.Err())
	}
	se.stop("the session can no longer be recorded")
}

// sftpLost ends a session whose SFTP stream can no longer be followed (a
// packet length no SFTP peer sends, more requests awaiting replies than
// the parser can place, or a request it cannot read exactly, which
// sftp-server would complete with bytes of the next packet): from there on
// its file operations would go unaudited. The request that did it was not
// forwarded; the parser has already audited why.
func (se *session) sftpLost() {
	se.t.srv.logger().Error("bastion: SFTP stream cannot be audited; ending session", "session", se.id)
	se.stop("its SFTP operations can no longer be audited")
}

// targetRequests forwards the target's requests (exit status and signal,
// flow control) to the user, until the target closes the channel.
func (se *session) targetRequests() {
	for r := range se.upReqs {
		switch r.Type {
		case "exit-status":
			var e struct{ Status uint32 }
			if ssh.Unmarshal(r.Payload, &e) == nil {
				se.mu.Lock()
				se.exitStatus = int(e.Status)
				se.mu.Unlock()
			}
		case "exit-signal":
			var e struct {
				Signal     string
				CoreDumped bool
				Message    string
				Lang       string
			}
			if ssh.Unmarshal(r.Payload, &e) == nil {
				se.mu.Lock()
				se.exitSignal = e.Signal
				se.mu.Unlock()
			}
		}
		switch r.Type {
		case "exit-status", "exit-signal":
			se.passExit(r.Type, r.Payload)
			se.markExited()
		case "xon-xoff", "eow@openssh.com":
			_, _ = se.user.SendRequest(r.Type, false, r.Payload)
		}
		if r.WantReply {
			_ = r.Reply(false, nil)
		}
	}
	close(se.upClosed)
	se.markExited()
	// A start request still unanswered decides whether there is output
	// to deliver: its answer was read before the channel's end.
	se.mu.Lock()
	answered := se.starting
	se.mu.Unlock()
	if answered != nil {
		<-answered
	}
	if !se.isStarted() {
		se.releaseHeld()
	}
	// The target closed its side: let its output reach the user, then
	// close.
	delivered := se.drain()
	se.user.Close()
	if !delivered {
		close(se.gaveUp)
	}
	close(se.targetDone)
}

// drain waits for the target's output to reach the user, once the target
// has closed the channel, for as long as the user keeps taking it. A
// client may read slowly (a slow link, a pager the user pages through);
// sshd would wait for it indefinitely, with the whole window of output
// held. The bastion gives up on a client that took nothing for
// IdleTimeout, as it would end a connection moving no data (the session
// still counts against the limits until the client lets go of the
// channel), and never if IdleTimeout is negative. It reports whether all
// the output was delivered.
func (se *session) drain() bool {
	if !se.isStarted() {
		return true
	}
	idle := durationOr(se.t.srv.IdleTimeout, DefaultIdleTimeout)
	if idle < 0 {
		<-se.outDone
		return true
	}
	timer := time.NewTimer(idle)
	defer timer.Stop()
	last := se.bytesOut.Load()
	for {
		select {
		case <-se.outDone:
			return true
		case <-timer.C:
		}
		n := se.bytesOut.Load()
		if n == last {
			break
		}
		last = n
		timer.Reset(idle)
	}
	reason := fmt.Sprintf("the client took no output for %s after the command ended", idle)
	se.t.srv.logger().Info("bastion: output not delivered; ending session", "session", se.id, "reason", reason)
	se.mu.Lock()
	se.cutOff = reason
	se.mu.Unlock()
	return false
}

// finish closes the recording and audits the end of the session.
func (se *session) finish() {
	t := se.t
	s := t.srv
	se.waitOutput(closeGrace)
	if se.sftp != nil {
		se.sftp.Close()
	}
	se.mu.Lock()
	rec, started, start, cutOff := se.rec, se.started, se.start, se.cutOff
	end := recording.End{ExitStatus: se.exitStatus, ExitSignal: se.exitSignal, Reason: se.reason}
	se.mu.Unlock()
	if !started {
		return
	}
	ctx := context.Background()
	sum, err := rec.Close(ctx, end)
	if err != nil {
		s.logger().Error("bastion: close recording", "session", se.id, "err", err)
	}
	fields := map[string]string{
		"session": se.id, "connection": t.id, "recording": rec.ID(), "login": t.info.login, "host": t.info.host,
		"duration":    s.now().Sub(start).String(),
		"bytes_in":    strconv.FormatInt(se.bytesIn.Load(), 10),
		"bytes_out":   strconv.FormatInt(se.bytesOut.Load(), 10),
		"exit_status": strconv.Itoa(end.ExitStatus),
		"digest":      sum.Digest,
	}
	if end.ExitSignal != "" {
		fields["exit_signal"] = end.ExitSignal
	}
	if t.info.glass != nil {
		fields["breakglass"] = "true"
	}
	if sum.Failure != "" {
		fields["recording_failure"] = sum.Failure
	}
	if cutOff != "" {
		fields["cut_off"] = cutOff
	}
	outcome := audit.OutcomeOK
	if end.Reason != "" {
		outcome = audit.OutcomeDenied
	}
	_ = s.audit(ctx, audit.Event{Type: audit.TypeSessionEnd, Actor: t.info.identity,
		Subject: t.info.login + "@" + t.info.host, Outcome: outcome, Reason: end.Reason, Fields: fields})
}
