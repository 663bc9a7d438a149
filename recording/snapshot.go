package recording

import (
	"bytes"
	"io"
	"os"
)

// Snapshot is a private copy of a recording, read from its file once, so
// that what is verified is what is then played: reading the file twice,
// once to verify it and once to play it, would let whoever can write it
// show the viewer other bytes than those verified.
type Snapshot struct {
	r    io.ReaderAt
	size int64
	f    *os.File // the temporary file past memLimit; nil in memory
	name string   // the temporary file's name, if it could not be removed at once
}

// NewSnapshot reads r to its end. Up to memLimit bytes are held in memory;
// a longer recording is copied to a temporary file in dir (os.TempDir()
// when ""), created with mode 0600 and removed at once where the system
// allows, so that only this process can reach it.
func NewSnapshot(r io.Reader, memLimit int64, dir string) (*Snapshot, error) {
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r, memLimit+1))
	if err != nil {
		return nil, err
	}
	if n <= memLimit {
		return &Snapshot{r: bytes.NewReader(buf.Bytes()), size: n}, nil
	}
	f, err := os.CreateTemp(dir, "sallyport-recording-*")
	if err != nil {
		return nil, err
	}
	s := &Snapshot{r: f, f: f}
	if os.Remove(f.Name()) != nil {
		s.name = f.Name() // an open file cannot be removed on some systems
	}
	if _, err := buf.WriteTo(f); err != nil {
		s.Close()
		return nil, err
	}
	m, err := io.Copy(f, r)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.size = n + m
	return s, nil
}

// Reader returns a reader of the whole copy, from its start.
func (s *Snapshot) Reader() *io.SectionReader { return io.NewSectionReader(s.r, 0, s.size) }

// Size is the length of the copy.
func (s *Snapshot) Size() int64 { return s.size }

// Close releases the copy.
func (s *Snapshot) Close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	if s.name != "" {
		os.Remove(s.name)
	}
	s.f = nil
	return err
}
