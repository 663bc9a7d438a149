package recording

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// PlayOptions configures Play.
type PlayOptions struct {
	// Speed multiplies the recorded pace; 0 means 1. Negative is an error.
	Speed float64
	// IdleLimit caps each pause; 0 means the header's idle_time_limit, or
	// no cap.
	IdleLimit time.Duration
	// Sleep waits d or until ctx ends; nil means a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Notes, if not nil, receives a line per Sallyport record worth telling
	// the viewer (output kept only in part, how the session ended).
	Notes io.Writer
	// NoReset leaves out the reset at the end (SafeWriter.Reset), for w
	// that is not a terminal, such as a file or a pipe; false resets.
	NoReset bool
	// ASCII shows every character that is not ASCII as '?' (see
	// SafeWriter.ASCII), in the output and in Notes, for a terminal that
	// does not decode UTF-8; false writes UTF-8.
	ASCII bool
}

// Play writes the output events of rd to w at their recorded pace, through
// a SafeWriter, and restores the terminal at the end (also when ctx ends)
// unless opts.NoReset is set. Stored bytes that are not UTF-8 are shown as
// U+FFFD. Of an exec or subsystem channel without a pty (the header's
// command set and pty false), whose recording keeps only the head of its
// output, the head is shown only if it is text (UTF-8 without NUL bytes):
// otherwise (a file copied by scp or sftp) one line instead names the
// command, the bytes each way and their SHA-256.
func Play(ctx context.Context, w io.Writer, rd *Reader, opts PlayOptions) (err error) {
	if opts.Speed < 0 {
		return fmt.Errorf("recording: play: negative speed %v", opts.Speed)
	}
	if opts.Speed == 0 {
		opts.Speed = 1
	}
	if opts.IdleLimit == 0 && rd.Header.IdleTimeLimit > 0 {
		opts.IdleLimit = time.Duration(rd.Header.IdleTimeLimit * float64(time.Second))
	}
	if opts.Sleep == nil {
		opts.Sleep = sleep
	}
	sw := NewSafeWriter(w)
	sw.ASCII = opts.ASCII
	if opts.ASCII {
		// Sallyport's own lines too: they quote the command and reason.
		w = asciiWriter{w}
		if opts.Notes != nil {
			opts.Notes = asciiWriter{opts.Notes}
		}
	}
	if !opts.NoReset {
		defer func() {
			if rerr := sw.Reset(); err == nil {
				err = rerr
			}
		}()
	}
	var last float64
	show := func(e Event) error {
		d := time.Duration((e.Time - last) * float64(time.Second))
		last = max(last, e.Time)
		if opts.IdleLimit > 0 && d > opts.IdleLimit {
			d = opts.IdleLimit
		}
		d = time.Duration(float64(d) / opts.Speed)
		if d > 0 {
			if err := opts.Sleep(ctx, d); err != nil {
				return err
			}
		}
		if _, err := sw.Write(displayText(e.Data)); err != nil {
			return fmt.Errorf("recording: play: %w", err)
		}
		return nil
	}
	note := func(e Event) {
		if opts.Notes != nil {
			if note := noteFor(e.Data, rd.Header); note != "" {
				fmt.Fprintln(opts.Notes, note)
			}
		}
	}
	if h := rd.Header; h.Sallyport != nil && !h.Sallyport.PTY && h.Command != "" {
		return playBulk(w, rd, show, note)
	}
	for {
		e, err := rd.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("recording: play: %w", err)
		}
		switch e.Type {
		case "o":
			if err := show(e); err != nil {
				return err
			}
		case "sallyport":
			note(e)
		}
	}
}

// maxBulkPlay bounds the output of a bulk channel that Play holds while it
// finds out whether it is text: well over the heads of stdout and stderr
// that the bastion keeps whatever they hold (DefaultBulkHead each). Past
// it, what the bastion kept is text (it keeps more only of text), and Play
// shows it as it comes.
const maxBulkPlay = 1 << 20

// playBulk plays the recording of an exec or subsystem channel without a
// pty: its output events if they are all text, else a line summing it up
// (to w, not through the SafeWriter: it is Sallyport's own, escaped).
func playBulk(w io.Writer, rd *Reader, show func(Event) error, note func(Event)) error {
	var out []Event
	held, text, streaming := 0, true, false
	var end *Event
	for {
		e, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("recording: play: %w", err)
		}
		switch {
		case e.Type == "o" && streaming:
			// Only an altered file has anything but text here.
			if isText(DecodeBytes(e.Data)) {
				if err := show(e); err != nil {
					return err
				}
			}
		case e.Type == "o" && text:
			if !isText(DecodeBytes(e.Data)) {
				text, out = false, nil
				continue
			}
			held += len(e.Data)
			out = append(out, e)
			if held > maxBulkPlay {
				for _, e := range out {
					if err := show(e); err != nil {
						return err
					}
				}
				out, streaming = nil, true
			}
		case e.Type == "sallyport" && strings.HasPrefix(e.Data, "end "):
			end = &e
		}
	}
	if text {
		for _, e := range out {
			if err := show(e); err != nil {
				return err
			}
		}
	} else if _, err := fmt.Fprintln(w, binarySummary(rd.Header, end)); err != nil {
		return fmt.Errorf("recording: play: %w", err)
	}
	if end != nil {
		note(*end)
	}
	return nil
}

// binarySummary is the line shown instead of a bulk channel's output that
// is not text: the command, the bytes each way and their SHA-256 from the
// end record (end; nil if there is none).
func binarySummary(h Header, end *Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[sallyport: binary output not shown: %s", Escape(h.Command, 256))
	var rec endRecord
	ok := false
	if end != nil {
		rec, ok = parseEndRecord(end.Data)
	}
	if !ok {
		b.WriteString("; no end record, so no byte counts or SHA-256]")
		return b.String()
	}
	fmt.Fprintf(&b, "; %d bytes out", rec.Stdout.Bytes+rec.Stderr.Bytes)
	for _, s := range []struct {
		name string
		sum  StreamSummary
	}{{"stdout", rec.Stdout}, {"stderr", rec.Stderr}} {
		if s.sum.SHA256 != "" && s.sum.Bytes > 0 {
			fmt.Fprintf(&b, ", %s sha256 %s", s.name, Escape(s.sum.SHA256, 64))
		}
	}
	fmt.Fprintf(&b, "; %d bytes in", rec.Stdin.Bytes)
	if rec.Stdin.SHA256 != "" {
		fmt.Fprintf(&b, ", sha256 %s", Escape(rec.Stdin.SHA256, 64))
	}
	b.WriteString("]")
	return b.String()
}

// ASCIIWriter returns a writer that writes to w what it is given with each
// character that is not ASCII as '?' (see ASCII), for a terminal that does
// not decode UTF-8.
func ASCIIWriter(w io.Writer) io.Writer { return asciiWriter{w} }

type asciiWriter struct{ w io.Writer }

func (a asciiWriter) Write(p []byte) (int, error) {
	if _, err := a.w.Write(ASCII(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// noteFor describes an "end" record for the viewer; "" for other records.
func noteFor(data string, h Header) string {
	verb, _, _ := strings.Cut(data, " ")
	if verb != "end" {
		return ""
	}
	rec, ok := parseEndRecord(data)
	if !ok {
		return "[sallyport: unreadable end record]"
	}
	var b strings.Builder
	b.WriteString("[sallyport: session ended")
	switch {
	case rec.ExitSignal != "":
		fmt.Fprintf(&b, ", signal %s", Escape(rec.ExitSignal, 32))
	case rec.ExitStatus >= 0:
		fmt.Fprintf(&b, ", exit status %d", rec.ExitStatus)
	}
	if rec.Reason != "" {
		fmt.Fprintf(&b, ", %s", Escape(rec.Reason, 200))
	}
	fmt.Fprintf(&b, " after %.1fs]", rec.Duration)
	for _, s := range []struct {
		name string
		sum  StreamSummary
	}{{"stdout", rec.Stdout}, {"stderr", rec.Stderr}, {"stdin", rec.Stdin}} {
		if s.sum.Bytes == 0 || (s.sum.Kept == s.sum.Bytes && s.sum.SHA256 == "") {
			continue
		}
		fmt.Fprintf(&b, "\n[sallyport: %s: %d bytes, %d kept", s.name, s.sum.Bytes, s.sum.Kept)
		if s.sum.SHA256 != "" {
			fmt.Fprintf(&b, ", sha256 %s", Escape(s.sum.SHA256, 64))
		}
		b.WriteString("]")
	}
	return b.String()
}
