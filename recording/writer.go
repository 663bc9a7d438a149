package recording

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"
)

// A Session's writer goroutine (run) does all of its file I/O: it writes
// the pending events block by block, fsyncs, checks that the file is still
// in place, and at Close writes the end and closes the file. A watchdog
// over that I/O fails the recording when the disk stops answering.

// writtenState is the state of the file after the last block written to it.
type writtenState struct {
	blocks  int    // blocks in the file
	bytes   int64  // size of the file
	digest  string // hex digest of the last block
	lastSig string // base64 signature of the last signed chain record
}

// noteWritten records, for Close, that the blocks chained so far are in
// the file. Writer goroutine (or Start) only.
func (s *Session) noteWritten() {
	w := writtenState{blocks: s.chain.n, bytes: s.fileBytes, digest: s.chain.hex(), lastSig: s.chain.lastSig}
	s.mu.Lock()
	s.written = w
	s.mu.Unlock()
}

// fail records the first failure, wakes everything waiting and ends the
// hasher, since no more writes are accepted.
func (s *Session) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = fmt.Errorf("%w: %s: %w", ErrFailed, s.meta.ID, err)
	}
	s.mu.Unlock()
	s.cond.Broadcast()
	s.stopHash()
	s.failedOnce.Do(func() { close(s.failed) })
}

// watch arms the watchdog over one stretch of file I/O by the writer and
// returns the function that disarms it. Once the I/O has taken a quarter
// of FlushTimeout, bulk writes wait for it (countBulk); once it has taken
// FlushTimeout, the recording fails and Close stops waiting for the writer,
// which may never come back from a hung disk.
func (s *Session) watch() (disarm func()) {
	o := s.rc.opts
	s.mu.Lock()
	s.ioGen++
	gen := s.ioGen
	s.mu.Unlock()
	slow := time.AfterFunc(o.FlushTimeout/4, func() {
		s.mu.Lock()
		if s.ioGen == gen {
			s.overdue = true
		}
		s.mu.Unlock()
	})
	hung := time.AfterFunc(o.FlushTimeout, func() {
		s.mu.Lock()
		current := s.ioGen == gen
		s.mu.Unlock()
		if current {
			s.fail(fmt.Errorf("%w: a write, fsync or check of %s has not returned for %v", errStalled, s.path, o.FlushTimeout))
			s.stalledOnce.Do(func() { close(s.stalled) })
		}
	})
	return func() {
		slow.Stop()
		hung.Stop()
		s.mu.Lock()
		s.ioGen++
		wake := s.overdue
		s.overdue = false
		s.mu.Unlock()
		if wake {
			s.cond.Broadcast()
		}
	}
}

// run is the writer: every write, fsync and close of the file happens on
// it, watched by the watchdog.
func (s *Session) run() {
	defer close(s.done)
	t := time.NewTicker(s.rc.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.flush(true)
		case <-s.kick:
			s.flush(false)
		case <-s.stop:
			s.finish()
			return
		}
	}
}

// flush writes the pending events as one block with its chain line, in one
// write call; timed flushes also fsync.
func (s *Session) flush(timed bool) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	pend, evs := s.pend, s.evs
	s.pend, s.evs = s.spare[:0], s.spareEvs[:0]
	now := s.sinceLocked()
	var counts [numStreams]int64
	for i := range s.streams {
		counts[i] = s.streams[i].bytes
	}
	h := s.hasher
	s.mu.Unlock()
	s.cond.Broadcast()
	if timed && h != nil {
		h.kick()
	}

	out := s.out[:0]
	off := 0
	for _, e := range evs {
		data := pend[off : off+e.n]
		off += e.n
		if e.kind == 'r' {
			out = appendEventStart(out, e.t, "r")
			out = append(out, data...)
			out = append(out, "\"]\n"...)
			continue
		}
		st := &s.streams[e.stream]
		start := len(out)
		out = appendEventStart(out, e.t, string(e.kind))
		mark := len(out)
		out, st.carry = appendText(out, st.carry, data, e.last)
		if len(out) == mark {
			out = out[:start] // only an incomplete sequence: it waits for more
			continue
		}
		out = append(out, "\"]\n"...)
	}
	if s.bulk && timed && counts != s.lastProg {
		s.lastProg = counts
		out = s.appendRecord(out, now, "progress", progress{Stdout: counts[streamOut], Stderr: counts[streamErr], Stdin: counts[streamIn]})
	}
	s.spare, s.spareEvs = pend[:0], evs[:0]
	// A timed flush signs its block once SignInterval has passed since the
	// last signature, and signs an empty block when the last one written
	// went unsigned: output followed by silence is authenticated within
	// SignInterval and a flush, not left unsigned until the next output.
	sign := false
	if timed && (len(out) > 0 || s.unsigned) {
		sign = s.rc.opts.Now().Sub(s.lastSig) >= s.rc.opts.SignInterval
	}
	if len(out) == 0 && !sign && !(timed && (s.unsynced || s.unchecked)) {
		s.out = out
		return // no I/O
	}
	defer s.watch()()
	if len(out) > 0 || sign {
		if err := s.writeBlock(out, now, sign, timed); err != nil {
			s.fail(err)
			return
		}
	} else {
		s.out = out
		// A block written early, by a burst of output, is made durable
		// by the next tick even if nothing followed it.
		if timed && s.unsynced {
			if err := s.f.Sync(); err != nil {
				s.fail(err)
				return
			}
			s.unsynced = false
		}
	}
	// What was written since the last tick went to a file still in place;
	// an idle session has written nothing that could be lost.
	if timed && s.unchecked {
		s.unchecked = false
		if err := s.checkFile(); err != nil {
			s.fail(err)
		}
	}
}

// writeBlock closes the block out with its chain line and writes it in one
// call, fsyncing when sync is set.
func (s *Session) writeBlock(out []byte, t time.Duration, sign, sync bool) error {
	out, err := s.appendChain(out, s.start.Add(t), sign)
	s.out = out
	if err != nil {
		return err
	}
	if _, err := s.f.Write(out); err != nil {
		return err
	}
	s.fileBytes += int64(len(out))
	s.noteWritten()
	s.unsigned, s.unsynced, s.unchecked = !sign, !sync, true
	if sync {
		return s.f.Sync()
	}
	return nil
}

// finish ends the file when Close stops the writer: what is pending, the
// carried incomplete characters, the end record and the signed final
// digest, fsynced and checked, then closes it. If the recording has
// failed, it only closes the file.
func (s *Session) finish() {
	s.flush(false)
	at := s.rc.opts.Now()
	s.closeAt = at
	complete := false
	if s.Err() == nil {
		t := at.Sub(s.start)
		s.closeRec.Duration = t.Seconds()
		var out []byte
		for i := range s.streams {
			if c := s.streams[i].carry; len(c) > 0 {
				kind := "o"
				if i == streamIn {
					kind = "i"
				}
				out, _ = appendText(appendEventStart(out, t, kind), nil, c, true)
				out = append(out, "\"]\n"...)
			}
		}
		out = s.appendRecord(out, t, "end", s.closeRec)
		out, err := s.appendFinal(out, at)
		if err != nil {
			s.fail(err)
		} else {
			disarm := s.watch()
			err := s.writeFinal(out)
			disarm()
			if err != nil {
				s.fail(err)
			} else {
				complete = true
			}
		}
	}
	disarm := s.watch()
	err := s.f.Close()
	disarm()
	if err != nil && complete {
		s.fail(err)
		complete = false
	}
	if complete {
		s.noteWritten()
	}
}

// writeFinal writes the last block, fsyncs it and checks that the file is
// still the one at its path.
func (s *Session) writeFinal(out []byte) error {
	if _, err := s.f.Write(out); err != nil {
		return err
	}
	s.fileBytes += int64(len(out))
	if err := s.f.Sync(); err != nil {
		return err
	}
	return s.checkFile()
}

// checkFile fails if the recording file is no longer at its path: writes
// and fsyncs to an open file that was removed (with its folder, say)
// succeed, and the session would go on unrecorded. It costs one fstat and
// one stat, so it runs on timed flushes that follow a write and at Close,
// not on every write nor on the ticks of an idle session.
func (s *Session) checkFile() error {
	sf, ok := s.f.(interface{ Stat() (os.FileInfo, error) })
	if !ok {
		return nil // a test's stand-in for the file
	}
	open, err := sf.Stat()
	if err != nil {
		return err
	}
	if n, ok := linkCount(open); ok && n == 0 {
		return fmt.Errorf("%w: %s was removed", errFileGone, s.path)
	}
	at, err := os.Stat(s.path)
	if err != nil {
		return fmt.Errorf("%w: %w", errFileGone, err)
	}
	if !os.SameFile(open, at) {
		return fmt.Errorf("%w: %s is another file", errFileGone, s.path)
	}
	return nil
}

func appendEventStart(b []byte, t time.Duration, kind string) []byte {
	b = append(b, '[')
	b = appendSeconds(b, t)
	b = append(b, ", \""...)
	b = append(b, kind...)
	return append(b, "\", \""...)
}

func appendSeconds(b []byte, t time.Duration) []byte {
	if t < 0 {
		t = 0
	}
	us := t.Microseconds()
	b = strconv.AppendInt(b, us/1e6, 10)
	b = append(b, '.')
	frac := us % 1e6
	for d := int64(100000); d > 0; d /= 10 {
		b = append(b, byte('0'+frac/d%10))
	}
	return b
}

// appendRecord appends a "sallyport" event whose data is verb + " " + JSON.
func (s *Session) appendRecord(b []byte, t time.Duration, verb string, v any) []byte {
	j, err := json.Marshal(v)
	if err != nil {
		panic(err) // only fixed types are marshalled
	}
	b = appendEventStart(b, t, "sallyport")
	b, _ = appendText(b, nil, []byte(verb+" "+string(j)), true)
	return append(b, "\"]\n"...)
}

type progress struct {
	Stdout int64 `json:"stdout"`
	Stderr int64 `json:"stderr"`
	Stdin  int64 `json:"stdin"`
}
