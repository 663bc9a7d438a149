package recording

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"
	"time"
)

// terminalChunk is 32 KiB of typical terminal output: text, colours, some
// UTF-8, line ends.
func terminalChunk() []byte {
	line := []byte("drwxr-xr-x  2 root root  4096 Jun  1 10:00 \x1b[01;34mdirectory\x1b[0m  naïve → ok\r\n")
	return bytes.Repeat(line, 32<<10/len(line)+1)[:32<<10]
}

// benchRecord measures recording throughput end to end: writes of 32 KiB,
// as the relay makes them, and the Close that waits for everything to be
// encoded, written and fsynced.
func benchRecord(b *testing.B, m Meta, chunk []byte) {
	env := newEnv(b, func(o *Options) { o.Now = time.Now })
	s, err := env.rec.Start(context.Background(), m)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	b.ResetTimer()
	w := s.Stdout()
	for range b.N {
		if _, err := w.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := s.Close(context.Background(), End{ExitStatus: 0}); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkRecordPTYText(b *testing.B) {
	benchRecord(b, ptyMeta(), terminalChunk())
}

func BenchmarkRecordPTYBinary(b *testing.B) {
	chunk := make([]byte, 32<<10)
	for i := range chunk {
		chunk[i] = byte(i * 7919 >> 3)
	}
	benchRecord(b, ptyMeta(), chunk)
}

func BenchmarkRecordBulk(b *testing.B) {
	benchRecord(b, Meta{Identity: "github:1", Login: "root", Host: "web1", Command: "cat /dev/zero"}, make([]byte, 32<<10))
}

// BenchmarkSHA256 is the floor for bulk channels, which hash every byte.
func BenchmarkSHA256(b *testing.B) {
	chunk := make([]byte, 32<<10)
	h := sha256.New()
	b.SetBytes(int64(len(chunk)))
	for range b.N {
		h.Write(chunk)
	}
}

// BenchmarkEncodeText is the JSON text encoding alone, the writer
// goroutine's main cost for pty channels.
func BenchmarkEncodeText(b *testing.B) {
	chunk := terminalChunk()
	var dst []byte
	b.SetBytes(int64(len(chunk)))
	for range b.N {
		dst, _ = appendText(dst[:0], nil, chunk, false)
	}
}
