package recording

import (
	"context"
	"encoding/json"
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
}

// Play writes the output events of rd to w at their recorded pace, through
// a SafeWriter, and restores the terminal at the end (also when ctx ends).
// Stored bytes that are not UTF-8 are shown as U+FFFD.
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
	defer func() {
		if rerr := sw.Reset(); err == nil {
			err = rerr
		}
	}()
	var last float64
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
		case "sallyport":
			if opts.Notes != nil {
				if note := noteFor(e.Data, rd.Header); note != "" {
					fmt.Fprintln(opts.Notes, note)
				}
			}
		}
	}
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
	verb, arg, _ := strings.Cut(data, " ")
	if verb != "end" {
		return ""
	}
	var rec endRecord
	if err := json.Unmarshal([]byte(arg), &rec); err != nil {
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
