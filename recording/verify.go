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
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
)

// VerifyOptions configures Verify.
type VerifyOptions struct {
	// Key is the public key the chain is signed with (the session CA); nil
	// checks the chain only, which proves nothing against someone who can
	// rewrite the whole file.
	Key ssh.PublicKey
	// Digest is the final digest the index holds; "" means not compared.
	Digest string
	// ID is the recording ID the index holds; "" means not compared.
	ID string
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
	// Problem is the first damage or alteration found; nil if the recording
	// is intact.
	Problem *Problem
}

// Intact reports whether the recording is whole, unaltered and (when a key
// was given) signed.
func (r *Report) Intact() bool { return r.Problem == nil }

// Verify reads a recording and checks its chain, signatures and end. It
// returns an error only when reading fails; what is wrong with the content
// is in Report.Problem.
func Verify(r io.Reader, opts VerifyOptions) (*Report, error) {
	rd := &Reader{br: bufio.NewReaderSize(r, 64<<10)}
	rep := &Report{}
	v := verifier{rd: rd, rep: rep, opts: opts, prev: chainSeed, blockLine: 1}
	err := v.run()
	rep.Lines, rep.Bytes = rd.line, rd.off
	if err != nil {
		return nil, err
	}
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
}

func (v *verifier) problem(line int, off, end int64, format string, args ...any) {
	if v.rep.Problem == nil {
		v.rep.Problem = &Problem{Line: line, EndLine: line, Offset: off, End: end, Block: -1, Reason: fmt.Sprintf(format, args...)}
	}
}

func (v *verifier) run() error {
	rd, rep := v.rd, v.rep
	h := sha256.New()
	h.Write(v.prev[:])
	off := rd.off
	line, err := rd.readLine()
	if err != nil {
		if err == io.EOF {
			v.problem(1, 0, 0, "empty file")
			return nil
		}
		if errors.Is(err, ErrFormat) || errors.Is(err, io.ErrUnexpectedEOF) {
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
	v.id = hdr.Sallyport.ID
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
			if errors.Is(err, ErrFormat) || errors.Is(err, io.ErrUnexpectedEOF) {
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
		verb, rest, _ := strings.Cut(e.Data, " ")
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
		// The digest covers the chain line up to the digest, in the form
		// Sallyport writes it.
		mark := []byte(verb + " " + f[0] + " " + f[1])
		at := bytes.Index(raw, mark)
		if at < 0 {
			v.problem(rd.line, off, rd.off, "malformed chain record")
			return nil
		}
		h.Write(raw[:at+len(verb)+1+len(f[0])+1])
		var d [sha256.Size]byte
		h.Sum(d[:0])
		hexd := hex.EncodeToString(d[:])
		if f[1] != hexd {
			rep.Problem = &Problem{Line: v.blockLine, EndLine: rd.line, Offset: v.blockOff, End: rd.off, Block: v.block,
				Reason: fmt.Sprintf("block %d does not match the digest in its chain record at line %d: the block or the record was altered", v.block, rd.line)}
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
				Reason: "no chain record covers the end of the file, and there is no final record: the recording was cut short (a crash loses at most its last second) or lines were appended"}
		} else {
			v.problem(rd.line, rd.off, rd.off, "no final record after block %d: the recording was cut short (bastion crash or truncation) or is still being written", v.block-1)
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
