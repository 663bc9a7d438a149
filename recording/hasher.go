package recording

import (
	"hash"
	"runtime"
	"sync"
)

// A bulk session hashes its streams on a goroutine of its own, a hasher, so
// that SHA-256 runs beside the relay instead of on it. Write copies its data
// into pooled chunks and queues them; a full queue makes Write wait
// (back-pressure), it never drops data. At most hashQueueLen chunks are
// queued and one is being hashed: 256 KiB per session.
//
// Waking a goroutine on another CPU costs microseconds, as much as hashing
// a few KiB, so neither side is woken for every chunk: an idle hasher waits
// until hashWakeAt chunks are queued (or a flush interval has passed, or
// the session ends), and writers waiting for room until the queue has
// drained to hashQueueLen-hashWakeAt. Small writes of one stream share a
// chunk.
const (
	hashChunkSize = 32 << 10 // the relay's largest write
	hashQueueLen  = 7
	hashWakeAt    = 4
)

// hashChunk is buf[:n] of stream.
type hashChunk struct {
	buf    *[hashChunkSize]byte
	n      int
	stream uint8
}

var chunkPool = sync.Pool{New: func() any { return new([hashChunkSize]byte) }}

type hasher struct {
	hashes [numStreams]hash.Hash
	done   chan struct{} // closed when run has hashed everything and returned

	mu      sync.Mutex
	work    sync.Cond // wakes run
	room    sync.Cond // wakes writers waiting for room
	ring    [hashQueueLen]hashChunk
	head, n int  // ring[head] is the oldest of n queued chunks
	idle    bool // run is waiting for work
	waiting int  // writers waiting for room
	stopped bool
}

// startHasher starts a hasher writing into hashes.
func startHasher(hashes [numStreams]hash.Hash) *hasher {
	h := &hasher{hashes: hashes, done: make(chan struct{})}
	h.work.L = &h.mu
	h.room.L = &h.mu
	go h.run()
	return h
}

// write queues a copy of p for stream. Writes of one stream must not be
// concurrent, so that their chunks are queued in order.
func (h *hasher) write(stream uint8, p []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for len(p) > 0 {
		if h.n > 0 {
			if t := &h.ring[(h.head+h.n-1)%hashQueueLen]; t.stream == stream && t.n < hashChunkSize {
				k := copy(t.buf[t.n:], p)
				t.n += k
				p = p[k:]
				continue
			}
		}
		for h.n == hashQueueLen {
			h.wakeLocked()
			h.waiting++
			h.room.Wait()
			h.waiting--
		}
		c := hashChunk{buf: chunkPool.Get().(*[hashChunkSize]byte), stream: stream}
		c.n = copy(c.buf[:], p)
		p = p[c.n:]
		h.ring[(h.head+h.n)%hashQueueLen] = c
		h.n++
	}
	if h.n >= hashWakeAt {
		h.wakeLocked()
	}
}

func (h *hasher) wakeLocked() {
	if h.idle {
		h.idle = false
		h.work.Signal()
	}
}

// kick has an idle hasher hash what is queued, so that a quiet session does
// not hold chunks.
func (h *hasher) kick() {
	h.mu.Lock()
	if h.n > 0 {
		h.wakeLocked()
	}
	h.mu.Unlock()
}

// stop waits until every queued chunk is hashed and ends the hasher. No
// write may follow or be under way. It may be called more than once.
func (h *hasher) stop() {
	h.mu.Lock()
	h.stopped = true
	h.wakeLocked()
	h.mu.Unlock()
	<-h.done
}

func (h *hasher) run() {
	defer close(h.done)
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		for h.n == 0 {
			if h.stopped {
				return
			}
			h.idle = true
			for h.idle {
				h.work.Wait()
			}
		}
		c := h.ring[h.head]
		h.ring[h.head] = hashChunk{}
		h.head = (h.head + 1) % hashQueueLen
		h.n--
		yield := h.waiting > 0 && h.n <= hashQueueLen-hashWakeAt
		if yield {
			h.room.Broadcast()
		}
		h.mu.Unlock()
		if yield {
			// The woken writers are queued on this goroutine's P, where
			// they would wait until it blocks or until another P steals
			// them, tens of microseconds later. Yielding runs them now
			// and moves the hasher to the global queue, where the idle P
			// takes it at once.
			runtime.Gosched()
		}
		h.hashes[c.stream].Write(c.buf[:c.n])
		chunkPool.Put(c.buf)
		h.mu.Lock()
	}
}
