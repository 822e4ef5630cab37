package pubsub

import (
	"slices"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
)

// Sequence numbers: the root of a topic numbers its messages
// seq = epoch<<seqBits | n, n = 1, 2, 3, …. A node that becomes root starts
// a new epoch, at least its clock in milliseconds since 2000 and above every
// epoch it has seen, unless the previous root handed over its counter; so
// numbers keep growing across root changes and a subscriber can drop what it
// has already seen by comparing numbers.
const (
	seqBits = 22
	seqMask = 1<<seqBits - 1
)

var epochBase = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func seqOf(epoch, n uint64) uint64 { return epoch<<seqBits | n }
func seqEpoch(s uint64) uint64     { return s >> seqBits }
func seqN(s uint64) uint64         { return s & seqMask }

func clockEpoch(now time.Time) uint64 {
	ms := now.Sub(epochBase).Milliseconds()
	if ms < 1 {
		ms = 1
	}
	return uint64(ms) & (1<<(64-seqBits) - 1)
}

// isNext reports whether s directly follows last in topic order: the next
// number of the same epoch or the first of a later epoch (last 0: the topic
// had no message yet).
func isNext(last, s uint64) bool {
	switch {
	case last == 0:
		return seqN(s) == 1
	case seqEpoch(s) == seqEpoch(last):
		return seqN(s) == seqN(last)+1
	default:
		return seqEpoch(s) > seqEpoch(last) && seqN(s) == 1
	}
}

// gapBetween counts the messages missed between last and s (see isNext).
// Across epochs it counts those of the new epoch before s; what a failed
// root sequenced but never sent cannot be counted.
func gapBetween(last, s uint64) uint64 {
	switch {
	case last == 0 || s <= last:
		return 0
	case seqEpoch(s) == seqEpoch(last):
		return seqN(s) - seqN(last) - 1
	default:
		if seqN(s) == 0 {
			return 0
		}
		return seqN(s) - 1
	}
}

func (c *core) nextSeq(now time.Time, t *topic) uint64 {
	t.n++
	if t.n > seqMask {
		t.epoch, t.n = max(clockEpoch(now), t.epoch+1), 1
	}
	return seqOf(t.epoch, t.n)
}

const maxPubDedupe = 4096

// rootPub sequences a publish delivered here, multicasts it and
// acknowledges it to the publisher. A retry (same publisher, same ID) gets
// the first answer again.
func (c *core) rootPub(now time.Time, from transport.Peer, m *msg) {
	t := c.topics[m.topic]
	if t == nil {
		t = c.newTopic(m.topic)
	}
	if !t.root {
		c.becomeRoot(now, t)
	}
	key := pubKey{from.ID, m.id}
	if seq, dup := t.pubs[key]; dup {
		c.send(from, &msg{kind: kPubAck, topic: t.name, id: m.id, seq: seq})
		return
	}
	seq := c.nextSeq(now, t)
	c.notePub(t, key, seq)
	c.st.sequenced++
	c.onData(now, t, c.self.ID, &msg{kind: kData, topic: t.name, seq: seq, publisher: from.ID, id: m.id, data: m.data})
	c.send(from, &msg{kind: kPubAck, topic: t.name, id: m.id, seq: seq})
	if t.empty() && t.idleSince.IsZero() {
		t.idleSince = now
	}
}

// notePub records that the publish key was numbered seq, unless it is
// known already. The root records what it numbers, and every member what
// reaches it (data carries the publish ID), so a member that becomes root
// answers a retry with the number its predecessor gave, and a copy that a
// new root numbered again (it had not seen the first) is recognised.
func (c *core) notePub(t *topic, key pubKey, seq uint64) {
	if _, ok := t.pubs[key]; ok {
		return
	}
	if t.pubs == nil {
		t.pubs = make(map[pubKey]uint64)
	}
	if len(t.pubOrder) >= maxPubDedupe {
		delete(t.pubs, t.pubOrder[0])
		t.pubOrder = t.pubOrder[1:]
	}
	t.pubs[key] = seq
	t.pubOrder = append(t.pubOrder, key)
}

func (c *core) onDataMsg(now time.Time, from transport.Peer, m *msg) {
	t := c.topics[m.topic]
	// Data comes from our parent only. Anyone else still counts us as its
	// child (we moved on, or pruned): tell it to stop. A joining node takes
	// it from whoever adopts it (a replay can overtake the SubAck), and a
	// root takes what its predecessor numbered before handing over.
	var ok bool
	switch {
	case t == nil:
	case t.root:
		ok = m.seq <= seqOf(t.epoch, t.n)
	case t.parent == nil:
		ok = true
	default:
		ok = t.parent.ID == from.ID
	}
	if !ok {
		c.send(from, &msg{kind: kLeave, entries: []entry{{topic: m.topic}}})
		return
	}
	c.onData(now, t, from.ID, m)
}

// onData takes one sequenced message at a member: drop duplicates, keep it
// for replays, pass it to the children at once, and deliver locally in
// order.
func (c *core) onData(now time.Time, t *topic, from id.ID, d *msg) {
	if t.parent != nil && t.parent.ID == from {
		t.parentHeard = now
	}
	if d.seq == 0 || (t.based && d.seq <= t.delivered) || t.pending[d.seq] != nil {
		c.st.duplicates++
		return
	}
	t.maxSeen = max(t.maxSeen, d.seq)
	if d.id != 0 {
		// A publish seen before under another number: a retry that crossed
		// a root change. It keeps its place in the order (and goes to the
		// children, who judge it alike) but is not delivered here again.
		key := pubKey{d.publisher, d.id}
		if s, ok := t.pubs[key]; ok && s != d.seq {
			d.again = true
		} else {
			c.notePub(t, key, d.seq)
		}
	}
	b := d.bytes()
	c.remember(t, d.seq, b)
	for _, ch := range t.kids {
		if ch.peer.ID != from {
			c.sendRaw(ch.peer, kData, b)
		}
	}
	t.pending[d.seq] = d
	c.drain(now, t)
}

// drain delivers pending messages while they follow in order; a hole starts
// a hold (and a request to the parent to fill it). A node that does not
// know where its stream starts yet (joining, no SubAck) only holds.
func (c *core) drain(now time.Time, t *topic) {
	for k := range t.pending {
		if t.based && k <= t.delivered {
			delete(t.pending, k) // from before our starting point
		}
	}
	for t.based && len(t.pending) > 0 {
		next := minKey(t.pending)
		if !isNext(t.delivered, next) {
			break
		}
		c.deliverLocal(t, t.pending[next])
		delete(t.pending, next)
		t.delivered = next
	}
	if len(t.pending) == 0 {
		t.holdSince = time.Time{}
		return
	}
	if t.holdSince.IsZero() {
		t.holdSince = now
		c.noteDeadline(now.Add(c.cfg.ReorderTimeout))
		c.nack(now, t)
	}
}

// nack asks the parent to fill the hole before the first pending message;
// it is repeated (a request or its answer may be lost) up to four times
// within ReorderTimeout.
func (c *core) nack(now time.Time, t *topic) {
	t.nackAt = now.Add(c.cfg.ReorderTimeout / 4)
	c.noteDeadline(t.nackAt)
	if t.based && t.parent != nil && len(t.pending) > 0 {
		c.send(*t.parent, &msg{kind: kResend, topic: t.name, seq: t.delivered, seq2: minKey(t.pending)})
	}
}

// flushHeld gives up on the holes: deliver everything pending in order.
func (c *core) flushHeld(t *topic) {
	keys := make([]uint64, 0, len(t.pending))
	for k := range t.pending {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		c.st.gaps += gapBetween(t.delivered, k)
		c.deliverLocal(t, t.pending[k])
		delete(t.pending, k)
		t.delivered = k
	}
	t.holdSince = time.Time{}
	t.based = true
}

func (c *core) deliverLocal(t *topic, d *msg) {
	if d.again {
		c.st.renumbered++
		return
	}
	if len(t.subs) == 0 {
		return
	}
	c.out.locals = append(c.out.locals, localMsg{topic: t.name, seq: d.seq, publisher: d.publisher, data: d.data})
}

func minKey(m map[uint64]*msg) uint64 {
	first := true
	var k uint64
	for x := range m {
		if first || x < k {
			k, first = x, false
		}
	}
	return k
}

// remember keeps an encoded message for replays, in seq order, within
// Config.History messages and Config.HistoryBytes bytes.
func (c *core) remember(t *topic, seq uint64, b []byte) {
	if c.cfg.History <= 0 {
		return
	}
	i := len(t.history)
	for i > 0 && t.history[i-1].seq > seq {
		i--
	}
	t.history = slices.Insert(t.history, i, histEntry{seq: seq, b: b})
	t.histBytes += len(b)
	for len(t.history) > c.cfg.History || (t.histBytes > c.cfg.HistoryBytes && len(t.history) > 1) {
		t.histBytes -= len(t.history[0].b)
		t.history[0] = histEntry{}
		t.history = t.history[1:]
	}
}

// replay sends a peer the held messages with after < seq < upTo (upTo 0:
// no bound).
func (c *core) replay(t *topic, to transport.Peer, after, upTo uint64) {
	for _, h := range t.history {
		if h.seq > after && (upTo == 0 || h.seq < upTo) {
			c.sendRaw(to, kData, h.b)
			c.st.replayed++
		}
	}
}

// SplitSeq splits a sequence number into the epoch of the root that
// numbered it (its clock in milliseconds since 2000 when it became root, or
// its predecessor's when the counter was handed over) and the message's
// number within the epoch, 1, 2, 3, …: what a person wants to see.
func SplitSeq(seq uint64) (epoch, n uint64) { return seqEpoch(seq), seqN(seq) }
