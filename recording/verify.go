package recording

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/store"
)

// VerifyOptions configures Verify.
type VerifyOptions struct {
	// Key is the public key the chain is signed with (the session CA); nil
	// checks the chain only, which proves nothing against someone who can
	// rewrite the whole file.
	Key ssh.PublicKey
	// Digest is the final digest the index holds; "" means not compared.
	// When it is set the recording was completed, so a file without its
	// final record was truncated afterwards, not cut short by a crash.
	Digest string
	// ID is the recording ID the index holds; "" means not compared.
	ID string
	// Index is the recording's row in the index; nil means none. Its ID and
	// final digest stand in for ID and Digest when those are "". What else
	// both the row and the file carry is compared, each difference a
	// Mismatch: who, where, what and when (with the header), and, once the
	// row has its final digest, the exit status, signal and reason, the
	// byte counts and SHA-256s (with the end record), the file size and
	// the final signature. The end time is not: the file holds the
	// duration by the monotonic clock, which may differ from the wall
	// clock's.
	Index *store.Recording
}

// Mismatch is a field on which the index row and the recording disagree:
// the index was altered, or the file is another recording's.
type Mismatch struct {
	Field string
	// Index and File are the values, escaped for display; "(none)" for an
	// empty string.
	Index, File string
}

func (m Mismatch) String() string {
	return "index says " + m.Field + " " + m.Index + ", recording says " + m.File
}

// Problem says where a recording is damaged or altered. Lines are 1-based
// and inclusive; bytes are the half-open range [Offset, End).
type Problem struct {
	Line, EndLine int
	Offset, End   int64
	// Block is the chain block concerned; -1 when the problem is not about
	// one block's digest.
	Block  int
	Reason string
}

func (p *Problem) Error() string {
	where := fmt.Sprintf("line %d", p.Line)
	if p.EndLine > p.Line {
		where = fmt.Sprintf("lines %d-%d", p.Line, p.EndLine)
	}
	if p.Block >= 0 {
		where = fmt.Sprintf("block %d, %s", p.Block, where)
	}
	return fmt.Sprintf("%s, bytes %d-%d: %s", where, p.Offset, p.End, p.Reason)
}

// Report is the result of Verify.
type Report struct {
	Header Header
	// Lines and Bytes are how much of the file was read.
	Lines int
	Bytes int64
	// Blocks is how many blocks matched their chain records.
	Blocks int
	// Digest is the last matching chain digest (the final digest when
	// Final).
	Digest string
	// Final says the final record was found and matched.
	Final bool
	// Signed says the final record's signature verified with
	// VerifyOptions.Key.
	Signed bool
	// SignedBlocks is how many leading blocks a verified signature
	// (checkpoint or final) covers.
	SignedBlocks int
	// Problem is the first damage or alteration found in the file; nil if
	// there is none.
	Problem *Problem
	// Mismatches are the fields on which VerifyOptions.Index disagrees with
	// the file, in the order they were found; they are found also when
	// the file itself is intact.
	Mismatches []Mismatch
}

// Intact reports whether the recording is whole, unaltered, (when a key
// was given) signed and (when an index row was given) agrees with the
// index.
func (r *Report) Intact() bool { return r.Problem == nil && len(r.Mismatches) == 0 }

// Verify reads a recording and checks its chain, signatures and end, and
// compares it with its index row if one is given. It returns an error only
// when reading fails; what is wrong with the content is in Report.Problem
// and Report.Mismatches.
func Verify(r io.Reader, opts VerifyOptions) (*Report, error) {
	if row := opts.Index; row != nil {
		if opts.ID == "" {
			opts.ID = row.ID
		}
		if opts.Digest == "" {
			opts.Digest = row.Digest
		}
	}
	rd := &Reader{br: bufio.NewReaderSize(r, 64<<10)}
	rep := &Report{}
	v := verifier{rd: rd, rep: rep, opts: opts, prev: chainSeed, blockLine: 1}
	err := v.run()
	rep.Lines, rep.Bytes = rd.line, rd.off
	if err != nil {
		return nil, err
	}
	v.compareEnd()
	return rep, nil
}

type verifier struct {
	rd   *Reader
	rep  *Report
	opts VerifyOptions
	id   string

	prev      [sha256.Size]byte
	block     int
	blockLine int
	blockOff  int64

	end      *endRecord // the file's end record, once read
	finalSig string     // the final record's signature, once read
}

func (v *verifier) problem(line int, off, end int64, format string, args ...any) {
	if v.rep.Problem == nil {
		v.rep.Problem = &Problem{Line: line, EndLine: line, Offset: off, End: end, Block: -1, Reason: fmt.Sprintf(format, args...)}
	}
}

// truncatedAfterSigned is said of a file that ends before its final record
// when the index holds the final digest: the recording was completed, then
// cut.
const truncatedAfterSigned = "the index holds the final digest of the completed recording, so it was truncated after it was completed and signed (altered)"

// cutShort says why a file ends early: what is wrong, then the likely
// cause, crash (if not "") or, when the index holds the final digest,
// alteration.
func (v *verifier) cutShort(what, crash string) string {
	switch {
	case v.opts.Digest != "":
		return what + ": " + truncatedAfterSigned
	case crash != "":
		return what + ": " + crash
	}
	return what
}

func (v *verifier) run() error {
	rd, rep := v.rd, v.rep
	h := sha256.New()
	h.Write(v.prev[:])
	off := rd.off
	line, err := rd.readLine()
	if err != nil {
		if err == io.EOF {
			v.problem(1, 0, 0, "%s", v.cutShort("empty file", ""))
			return nil
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			v.problem(1, 0, rd.off, "%s", v.cutShort(err.Error(), ""))
			return nil
		}
		if errors.Is(err, ErrFormat) {
			v.problem(1, 0, rd.off, "%v", err)
			return nil
		}
		return err
	}
	hdr, err := parseHeader(line)
	if err != nil {
		v.problem(1, off, rd.off, "%v", err)
		return nil
	}
	rep.Header = hdr
	if hdr.Sallyport == nil || !ValidID(hdr.Sallyport.ID) {
		v.problem(1, off, rd.off, "header has no Sallyport recording ID: not a Sallyport recording")
		return nil
	}
	if hdr.Sallyport.Format != formatVersion {
		v.problem(1, off, rd.off, "header says recording format %d; this Sallyport reads format %d", hdr.Sallyport.Format, formatVersion)
		return nil
	}
	if !bytes.HasSuffix(line, []byte("}")) {
		v.problem(1, off, rd.off, "%v: data after the header", ErrFormat)
		return nil
	}
	v.id = hdr.Sallyport.ID
	v.compareHeader(hdr)
	if v.opts.ID != "" && v.opts.ID != v.id {
		v.problem(1, off, rd.off, "header names recording %q, the index %q", v.id, v.opts.ID)
		return nil
	}
	if v.opts.Key != nil && hdr.Sallyport.Signer != ssh.FingerprintSHA256(v.opts.Key) {
		v.problem(1, off, rd.off, "header says it is signed by %s, verifying with %s", Escape(hdr.Sallyport.Signer, 80), ssh.FingerprintSHA256(v.opts.Key))
		return nil
	}
	h.Write(line)
	h.Write([]byte{'\n'})
	lastChainEnd := int64(0)
	for {
		off := rd.off
		raw, err := rd.readLine()
		if err == io.EOF {
			break
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				v.problem(rd.line, off, rd.off, "%s", v.cutShort(err.Error(), ""))
				return nil
			}
			if errors.Is(err, ErrFormat) {
				v.problem(rd.line, off, rd.off, "%v", err)
				return nil
			}
			return err
		}
		if rep.Final {
			v.problem(rd.line, off, rd.off, "data after the final record")
			return nil
		}
		e, err := parseEvent(raw)
		if err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) {
				err = fmt.Errorf("%w (at byte %d of the line)", err, se.Offset)
			}
			v.problem(rd.line, off, rd.off, "%v", err)
			return nil
		}
		if !bytes.HasSuffix(raw, []byte("]")) {
			// Sallyport ends every event line with its array.
			v.problem(rd.line, off, rd.off, "%v: data after the event", ErrFormat)
			return nil
		}
		verb, rest, _ := strings.Cut(e.Data, " ")
		if e.Type == "sallyport" && verb == "end" {
			if end, ok := parseEndRecord(e.Data); ok {
				v.end = &end
			}
		}
		if e.Type != "sallyport" || (verb != "chain" && verb != "final") {
			h.Write(raw)
			h.Write([]byte{'\n'})
			continue
		}
		f := strings.Fields(rest)
		if !(len(f) == 2 || (len(f) == 4 && f[2] == "sig")) {
			v.problem(rd.line, off, rd.off, "malformed chain record")
			return nil
		}
		n, err := strconv.Atoi(f[0])
		if err != nil || n != v.block {
			// Either a chain record in this block was altered (and read as
			// data) or blocks were removed, added or reordered.
			rep.Problem = &Problem{Line: v.blockLine, EndLine: rd.line, Offset: v.blockOff, End: rd.off, Block: v.block,
				Reason: fmt.Sprintf("chain record at line %d is numbered %q where block %d was expected: a chain record in this range was altered, or blocks were removed, added or reordered", rd.line, Escape(f[0], 20), v.block)}
			return nil
		}
		// The digest covers the chain line up to the digest and the
		// signature covers the digest; what follows them, and how the line
		// is written, is covered by neither. So the line must be exactly
		// the one Sallyport writes for its parts, or any byte of it could
		// be changed unnoticed.
		want := appendEventStart(nil, secondsDuration(e.Time), "sallyport")
		want = append(want, verb+" "+strconv.Itoa(n)+" "...)
		covered := len(want)
		want = append(want, f[1]...)
		if len(f) == 4 {
			want = append(want, " sig "+f[3]...)
		}
		want = append(want, "\"]"...)
		if !bytes.Equal(raw, want) {
			v.problem(rd.line, off, rd.off, "chain record is not in the form Sallyport writes (altered)")
			return nil
		}
		h.Write(raw[:covered])
		var d [sha256.Size]byte
		h.Sum(d[:0])
		hexd := hex.EncodeToString(d[:])
		if f[1] != hexd {
			rep.Problem = &Problem{Line: v.blockLine, EndLine: rd.line, Offset: v.blockOff, End: rd.off, Block: v.block,
				Reason: fmt.Sprintf("block %d does not match the digest in its chain record at line %d: the block or the record was altered", v.block, rd.line)}
			return nil
		}
		if n == 0 && len(f) != 4 {
			// Start signs block 0 always, so that the header is
			// authenticated as soon as it is written.
			v.problem(rd.line, off, rd.off, "the chain record of block 0 (the header) is not signed: Sallyport always signs it, so its signature was removed (altered)")
			return nil
		}
		if len(f) == 4 && v.opts.Key != nil {
			kind := sigCheckpoint
			if verb == "final" {
				kind = sigFinal
			}
			if err := verifySignature(v.opts.Key, kind, v.id, n, hexd, f[3]); err != nil {
				v.problem(rd.line, off, rd.off, "%v", err)
				return nil
			}
			rep.SignedBlocks = v.block + 1
			if verb == "final" {
				rep.Signed = true
			}
		}
		if verb == "final" {
			rep.Final = true
			if len(f) != 4 {
				v.problem(rd.line, off, rd.off, "the final record is not signed")
				return nil
			}
			v.finalSig = f[3]
		}
		rep.Blocks++
		rep.Digest = hexd
		v.prev = d
		h.Reset()
		h.Write(d[:])
		v.block++
		v.blockLine = rd.line + 1
		v.blockOff = rd.off
		lastChainEnd = rd.off
	}
	if !rep.Final {
		if rd.off > lastChainEnd {
			rep.Problem = &Problem{Line: v.blockLine, EndLine: rd.line, Offset: lastChainEnd, End: rd.off, Block: v.block,
				Reason: v.cutShort("no chain record covers the end of the file, and there is no final record",
					"the recording was cut short (a crash loses at most its last second) or lines were appended")}
		} else {
			v.problem(rd.line, rd.off, rd.off, "%s", v.cutShort(fmt.Sprintf("no final record after block %d", v.block-1),
				"the recording was cut short (bastion crash or truncation) or is still being written"))
		}
		return nil
	}
	if v.opts.Digest != "" && v.opts.Digest != rep.Digest {
		v.problem(rd.line, lastChainEnd, rd.off, "final digest %s differs from the index's %s", rep.Digest, Escape(v.opts.Digest, 80))
	}
	if v.opts.Key != nil && !rep.Signed {
		v.problem(rd.line, lastChainEnd, rd.off, "the final record is not signed")
	}
	return nil
}

// secondsDuration is the event time t (seconds) as a duration, to the
// microsecond Sallyport writes.
func secondsDuration(t float64) time.Duration {
	return time.Duration(math.Round(t*1e6)) * time.Microsecond
}

// parseEndRecord parses the data of an "end" record. Its bytes are the verb
// and JSON (stored as event text, see EncodeBytes), whose strings are
// stored the same way: both are decoded.
func parseEndRecord(data string) (endRecord, bool) {
	var rec endRecord
	_, arg, _ := strings.Cut(string(DecodeBytes(data)), " ")
	if json.Unmarshal([]byte(arg), &rec) != nil {
		return endRecord{}, false
	}
	rec.ExitSignal = string(DecodeBytes(rec.ExitSignal))
	rec.Reason = string(DecodeBytes(rec.Reason))
	return rec, true
}

// shown is a value of a Mismatch.
func shown(s string) string {
	if s == "" {
		return "(none)"
	}
	return Escape(s, 128)
}

func (v *verifier) mismatch(field, index, file string) {
	if index != file {
		v.rep.Mismatches = append(v.rep.Mismatches, Mismatch{Field: field, Index: shown(index), File: shown(file)})
	}
}

// compareHeader compares the index row, if any, with the header.
func (v *verifier) compareHeader(h Header) {
	row := v.opts.Index
	if row == nil {
		return
	}
	info := h.Sallyport
	v.mismatch("session ID", row.SessionID, info.SessionID)
	v.mismatch("identity", row.Identity, info.Identity)
	v.mismatch("user", row.User, info.User)
	v.mismatch("login", row.Login, info.Login)
	v.mismatch("host", row.Host, info.Host)
	v.mismatch("command", row.Command, h.Command)
	v.mismatch("pty", strconv.FormatBool(row.PTY), strconv.FormatBool(info.PTY))
	v.mismatch("input recorded", strconv.FormatBool(row.InputRecorded), strconv.FormatBool(info.Input))
	// The header holds the start to the second.
	start := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	v.mismatch("start", start(row.Start.Truncate(time.Second)), start(time.Unix(h.Timestamp, 0)))
	if row.SignerFingerprint != "" {
		v.mismatch("signer", row.SignerFingerprint, info.Signer)
	}
}

// compareEnd compares the index row, if it has its final digest, with the
// end record, the file's size (if it was read to its end) and its final
// signature: the recorder writes them all from the same values.
func (v *verifier) compareEnd() {
	row := v.opts.Index
	if row == nil || row.Digest == "" || v.rep.Header.Sallyport == nil {
		return
	}
	if e := v.end; e != nil {
		itoa := func(n int64) string { return strconv.FormatInt(n, 10) }
		v.mismatch("exit status", strconv.Itoa(row.ExitStatus), strconv.Itoa(e.ExitStatus))
		v.mismatch("exit signal", row.ExitSignal, e.ExitSignal)
		v.mismatch("reason", row.Reason, e.Reason)
		v.mismatch("bytes out", itoa(row.BytesOut), itoa(e.Stdout.Bytes+e.Stderr.Bytes))
		v.mismatch("bytes in", itoa(row.BytesIn), itoa(e.Stdin.Bytes))
		v.mismatch("stdout SHA-256", row.StdoutSHA256, e.Stdout.SHA256)
		v.mismatch("stdin SHA-256", row.StdinSHA256, e.Stdin.SHA256)
	}
	if v.rep.Problem == nil {
		// Only then was the whole file read.
		v.mismatch("file size", strconv.FormatInt(row.FileBytes, 10), strconv.FormatInt(v.rep.Bytes, 10))
	}
	if v.rep.Final {
		v.mismatch("final signature", row.Signature, v.finalSig)
	}
}
