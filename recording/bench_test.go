package recording

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"fmt"
	"io"
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
// encoded, hashed, written and fsynced. With nothing else to do, writers of
// a bulk channel wait for its hasher: this is the total cost; see
// BenchmarkRecordBulkRelay for the part the relay pays.
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

// BenchmarkRecordBulkRelay is a bulk transfer as the bastion relays it: each
// 32 KiB chunk is opened (from the target) and sealed again (for the user)
// with AES-128-GCM, and written to the recording or not. The crypto is a
// floor of the relay's work, faster than SHA-256; relay=4x repeats it, for a
// relay slower than the hasher, as a real one is with its system calls and
// its peers on the same CPUs. There ns/op of on minus off is what recording
// costs the relay goroutine (the copy and the hand-off); at relay=1x the
// relay waits for the hasher.
func BenchmarkRecordBulkRelay(b *testing.B) {
	key := make([]byte, 16)
	block, err := aes.NewCipher(key)
	if err != nil {
		b.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	nonce := make([]byte, gcm.NonceSize())
	chunk := make([]byte, 32<<10)
	packet := gcm.Seal(nil, nonce, chunk, nil)
	relay := func(b *testing.B, rounds int, w io.Writer) {
		b.SetBytes(int64(len(chunk)))
		b.ReportAllocs()
		plain := make([]byte, 0, len(chunk))
		sealed := make([]byte, 0, len(packet))
		b.ResetTimer()
		for range b.N {
			var p []byte
			for range rounds {
				var err error
				p, err = gcm.Open(plain[:0], nonce, packet, nil)
				if err != nil {
					b.Fatal(err)
				}
				sealed = gcm.Seal(sealed[:0], nonce, p, nil)
			}
			if w != nil {
				if _, err := w.Write(p); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	for _, rounds := range []int{1, 4} {
		name := fmt.Sprintf("relay=%dx", rounds)
		b.Run(name+"/off", func(b *testing.B) { relay(b, rounds, nil) })
		b.Run(name+"/on", func(b *testing.B) {
			env := newEnv(b, func(o *Options) { o.Now = time.Now })
			s, err := env.rec.Start(context.Background(), Meta{Identity: "github:1", Login: "root", Host: "web1", Command: "cat big.bin"})
			if err != nil {
				b.Fatal(err)
			}
			relay(b, rounds, s.Stdout())
			if _, err := s.Close(context.Background(), End{ExitStatus: 0}); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkSHA256 is the hasher's work: the floor of ns/op for bulk
// channels, which hash every byte.
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
