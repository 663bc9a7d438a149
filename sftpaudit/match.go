package sftpaudit

import (
	"cmp"
	"fmt"
	"slices"
)

// pending is a request awaiting its reply.
type pending struct {
	op     Op
	kind   byte   // request type
	handle string // for READ and CLOSE
	emit   bool   // report op when the reply comes
	seq    uint64 // order of arrival
	bare   bool   // past maxPending: reported when sent, kept for its place only
}

// queues holds the requests awaiting replies, by ID, each ID's oldest
// first. sftp-server answers every request it knows, once, in the order
// it reads them (a request it cannot parse ends it), so a reply answers the
// oldest request awaiting one with its ID, however often the client reuses
// IDs.
type queues struct {
	byID map[uint32][]pending
	full int    // entries with their operation
	bare int    // entries kept for their place only
	seq  uint64 // arrival counter
}

// push queues pd under id.
func (q *queues) push(id uint32, pd pending) {
	pd.seq = q.seq
	q.seq++
	if pd.bare {
		q.bare++
	} else {
		q.full++
	}
	q.byID[id] = append(q.byID[id], pd)
}

// pop removes and returns the oldest request awaiting a reply with id.
func (q *queues) pop(id uint32) (pending, bool) {
	l := q.byID[id]
	if len(l) == 0 {
		return pending{}, false
	}
	pd := l[0]
	if len(l) == 1 {
		delete(q.byID, id)
	} else {
		l[0] = pending{} // let its strings go
		q.byID[id] = l[1:]
	}
	if pd.bare {
		q.bare--
	} else {
		q.full--
	}
	return pd, true
}

// drain removes and returns every request, oldest first.
func (q *queues) drain() []pending {
	var all []pending
	for _, l := range q.byID {
		all = append(all, l...)
	}
	slices.SortFunc(all, func(a, b pending) int { return cmp.Compare(a.seq, b.seq) })
	q.byID = map[uint32][]pending{}
	q.full, q.bare = 0, 0
	return all
}

// answered reports whether sftp-server replies to a request of type typ:
// the types it handles, and EXTENDED (unsupported names get a status). It
// only logs others, so awaiting their replies would make the replies to
// later requests with the same ID match the wrong request.
func answered(typ byte) bool {
	return typ >= fxpOpen && typ <= fxpSymlink || typ == fxpExtended
}

// track queues a request until its reply. Past maxPending requests
// awaiting replies, one is reported at once, as incomplete, and only its
// place is kept, so that the replies after it still match; past as many
// again, the stream cannot be followed.
func (p *Parser) track(id uint32, pd pending) {
	switch {
	case p.pend.full < maxPending:
	case p.pend.bare < maxPending:
		if pd.emit {
			pd.op.Incomplete = true
			p.emit(pd.op)
		}
		pd = pending{kind: pd.kind, bare: true}
	default:
		p.fail(fmt.Sprintf("over %d requests awaiting replies", 2*maxPending))
		return
	}
	p.pend.push(id, pd)
}

// answer matches a reply to the oldest request awaiting one with its ID.
// A reply that none awaits is reported and dropped: the caller feeds each
// request before the server can read it, so it answers no request the
// parser saw (or one the server does not answer), and keeping it for a
// later request would give that request an outcome not its own.
func (p *Parser) answer(id uint32, ri replyInfo) {
	pd, ok := p.pend.pop(id)
	if !ok {
		p.emit(Op{Type: OpMalformed, Name: typeName(ri.typ), Message: fmt.Sprintf("reply to request %d, which awaits none", id)})
		return
	}
	p.resolve(pd, ri)
}

// unanswered takes the request that a reply which cannot be read answers
// off its queue, keeping the later replies to its ID in step, and reports
// it as incomplete: its outcome is unknown.
func (p *Parser) unanswered(id uint32) {
	if pd, ok := p.pend.pop(id); ok && pd.emit {
		pd.op.Incomplete = true
		p.emit(pd.op)
	}
}

// resolve applies reply ri to request pd and reports the operation.
func (p *Parser) resolve(pd pending, ri replyInfo) {
	if pd.bare {
		return // reported when it was sent
	}
	switch ri.typ {
	case fxpStatus:
		pd.op.OK = ri.code == 0
		if ri.code != 0 {
			pd.op.Status, pd.op.Message = ri.code, ri.msg
		}
		if pd.kind == fxpClose {
			if info := p.handles[pd.handle]; info != nil {
				pd.op.BytesRead, pd.op.BytesWritten = info.read, info.written
				delete(p.handles, pd.handle)
			}
		}
	case fxpHandle:
		if pd.kind == fxpOpen || pd.kind == fxpOpendir {
			pd.op.OK = true
			if len(p.handles) < maxHandles {
				p.handles[ri.handle] = &handleInfo{path: pd.op.Path, dir: pd.kind == fxpOpendir}
			}
		}
	case fxpData:
		pd.op.OK = true
		if h := p.handles[pd.handle]; h != nil && pd.kind == fxpRead {
			h.read += ri.n
		}
	default:
		pd.op.OK = true
	}
	if pd.emit {
		p.emit(pd.op)
	}
}
