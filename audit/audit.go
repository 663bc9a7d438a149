// Package audit owns the audit record: the Event type every part of
// Sallyport reports what it did with, and a Writer that renders events as
// JSON lines (one object per line, RFC 3339 UTC timestamps).
//
// The durable copy of the audit trail is kept by the store, which commits an
// event before the action it records is answered; a Writer produces the
// line-oriented copy for log shippers and humans.
package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// Event types.
const (
	TypeIssue        = "issue"         // a certificate was issued
	TypeRefuse       = "refuse"        // a certificate request was refused
	TypeRevoke       = "revoke"        // a serial or key was revoked
	TypeLogin        = "login"         // a sign-in (web, CLI or CI token)
	TypeDeny         = "deny"          // access to a target was denied
	TypeSessionStart = "session.start" // a bastion session began
	TypeSessionEnd   = "session.end"   // a bastion session ended
	TypeExec         = "exec"          // a command was run in a session
	TypeSFTP         = "sftp"          // an SFTP operation
	TypePortForward  = "port.forward"  // a port forward was opened
	TypePolicyLoad   = "policy.load"   // a policy was loaded or refused
	TypeCAInit       = "ca.init"       // a CA key was created
)

// Outcomes.
const (
	OutcomeOK     = "ok"     // the action was done
	OutcomeDenied = "denied" // the action was refused by policy or revocation
	OutcomeError  = "error"  // the action failed
)

// Event is one audit record.
type Event struct {
	// Time is when the action happened. It is marshalled as RFC 3339 in UTC
	// with up to nanosecond precision.
	Time time.Time `json:"time"`
	// Type is what happened, one of the Type constants.
	Type string `json:"type"`
	// Actor is who acted, e.g. "github:12345" or "offline:ca-cli".
	Actor string `json:"actor"`
	// Subject is what the action was done to, e.g. a key ID or a serial;
	// empty when there is none.
	Subject string `json:"subject,omitempty"`
	// Outcome is one of the Outcome constants.
	Outcome string `json:"outcome"`
	// Reason explains a refusal or failure in plain words; may be empty.
	Reason string `json:"reason,omitempty"`
	// Fields carries event-specific details; nil means none.
	Fields map[string]string `json:"fields,omitempty"`
}

// Validate reports an error if e lacks a time, type, actor or outcome.
func (e Event) Validate() error {
	switch {
	case e.Time.IsZero():
		return fmt.Errorf("audit: event %q has no time", e.Type)
	case e.Type == "":
		return fmt.Errorf("audit: event has no type")
	case e.Actor == "":
		return fmt.Errorf("audit: %s event has no actor", e.Type)
	case e.Outcome == "":
		return fmt.Errorf("audit: %s event has no outcome", e.Type)
	}
	return nil
}

// Writer writes events to an io.Writer as JSON lines. It is safe for
// concurrent use: each event reaches the underlying writer in a single Write
// call, so lines never interleave.
//
// All strings are escaped by encoding/json, so a value containing a newline
// or other control characters cannot start a forged line. Writer does not
// sync the underlying writer; the store's database is the durable record.
type Writer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriter returns a Writer writing to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w}
}

// Write writes e as one line, with its time converted to UTC.
func (w *Writer) Write(e Event) error {
	e.Time = e.Time.UTC()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil { // Encode appends the newline.
		return fmt.Errorf("audit: encode %s event: %w", e.Type, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("audit: write %s event: %w", e.Type, err)
	}
	return nil
}
