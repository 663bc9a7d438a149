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
// unrecorded.
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
