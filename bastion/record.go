package bastion

import (
	"context"
	"io"

	"github.com/sallyport/sallyport/recording"
)

// Recorder starts the recording of one session channel. NewRecorder adapts
// a *recording.Recorder.
//
// The rule for recording failures: a session whose recording cannot be
// started is refused (the shell, exec or subsystem request fails and the
// refusal is audited); a session whose recording fails while it runs
// (Recording.Failed) is ended with a message to the user. No session runs
// unrecorded. A window size the recording cannot hold (zero, or over
// recording.MaxTermSize) is not recorded and is no failure: the request is
// forwarded all the same.
//
// What is kept follows package recording: a channel with a pty, and a shell
// without one (ssh -T), in full; an exec or subsystem channel (or a forced
// command) without a pty by the bulk rule. Input is kept only when the
// policy's record_input asks, with or without a pty (in full on a pty or a
// shell, its first 64 KiB for exec and subsystem channels without a pty);
// its byte count, and for those channels its SHA-256, are kept always.
//
// SFTP is parsed and audited for the sftp subsystem and for an exec of
// sftp-server (sftp -s /usr/lib/openssh/sftp-server). A malformed packet is
// audited as an error and skipped; a stream whose framing cannot be
// followed is audited and the session ended, since its file operations
// could no longer be audited.
type Recorder interface {
	Start(ctx context.Context, m recording.Meta) (Recording, error)
}

// Recording is one session channel's recording: what *recording.Session
// offers. Its writers are on the relay's hot path and must be cheap (copy
// into a buffer, write asynchronously).
type Recording interface {
	ID() string
	Stdout() io.Writer
	Stderr() io.Writer
	Stdin() io.Writer
	Resize(width, height int) error
	// Failed is closed when the recording can no longer be written.
	Failed() <-chan struct{}
	Err() error
	Close(ctx context.Context, end recording.End) (recording.Summary, error)
}

// NewRecorder returns a Recorder writing recordings with r.
func NewRecorder(r *recording.Recorder) Recorder { return recorder{r} }

type recorder struct{ r *recording.Recorder }

func (r recorder) Start(ctx context.Context, m recording.Meta) (Recording, error) {
	s, err := r.r.Start(ctx, m)
	if err != nil {
		return nil, err
	}
	return s, nil
}
