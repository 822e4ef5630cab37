package pubsub

import (
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
)

// Topic trees (Scribe): a subscribe is routed to the topic's ID; the first
// node on the way that is in the tree, or the root, adopts the subscriber.
// A node that is not yet in the tree adopts it too, becomes a forwarder and
// routes its own subscribe onward.

// subscribe adds local subscription sub. It reports whether the node is
// already attached to the tree, and the last seq delivered here.
func (c *core) subscribe(now time.Time, name string, sub uint64) (bool, uint64) {
	t := c.topics[name]
	if t == nil {
		t = c.newTopic(name)
	}
	t.subs = append(t.subs, sub)
	t.idleSince = time.Time{}
	if !t.attached && t.joinSent.IsZero() {
		c.join(now, t)
	}
	return t.attached, t.delivered
}

// unsubscribe removes local subscription sub and prunes what is left unused.
func (c *core) unsubscribe(now time.Time, name string, sub uint64) {
	t := c.topics[name]
	if t == nil {
		return
	}
	t.subs = removeID(t.subs, sub)
	c.maybePrune(now, t)
}

// join routes this node's subscribe for t. A node with children of its own
// (an orphan after a repair) asks to be delivered at the root: were it
// adopted by a node of its own subtree, the tree would become a cycle.
func (c *core) join(now time.Time, t *topic) {
	m := &msg{kind: kSub, topic: t.name, seq: t.delivered}
	if len(t.kids) > 0 {
		m.flags |= fToRoot
	}
	if t.handoffSeq != 0 {
		m.flags |= fToRoot | fHandoff
		m.seq = t.handoffSeq
	}
	t.joinSent = now
	c.noteDeadline(now.Add(c.cfg.SubscribeRetry))
	c.route(t.key, m)
}

// interceptSub is a subscribe passing through this node: adopt the sender
// unless it must go on to the root.
func (c *core) interceptSub(now time.Time, from transport.Peer, m *msg) bool {
	if from.ID == c.self.ID || m.flags&fToRoot != 0 || !c.validTopic(m.topic) {
		return true
	}
	t := c.topics[m.topic]
	if t != nil && t.parent != nil && t.parent.ID == from.ID {
		return true // never adopt our own parent
	}
	if t == nil {
		t = c.newTopic(m.topic)
		// Start where the child is, so our parent replays what it missed.
		if m.seq > 0 {
			t.delivered, t.maxSeen, t.based = m.seq, m.seq, true
		}
	}
	c.addChild(now, t, from, m.seq)
	if !t.attached && t.joinSent.IsZero() {
		c.join(now, t)
	}
	return false
}

// rootSub is a subscribe delivered here, at the owner of the topic's ID.
func (c *core) rootSub(now time.Time, from transport.Peer, m *msg) {
	t := c.topics[m.topic]
	if t == nil {
		t = c.newTopic(m.topic)
	}
	if !t.root {
		c.becomeRoot(now, t)
	}
	switch {
	case m.flags&fHandoff != 0:
		// The previous root continues its counter here (if this root has
		// not numbered anything in its own epoch yet, nobody saw that epoch).
		if m.seq > seqOf(t.epoch, t.n) || (t.n == 0 && m.seq >= max(t.delivered, t.maxSeen)) {
			t.epoch, t.n = seqEpoch(m.seq), seqN(m.seq)
			if t.delivered == 0 && len(t.pending) == 0 {
				t.delivered, t.maxSeen = m.seq, m.seq // nothing seen here: start where it stopped
			}
		}
	case m.seq > seqOf(t.epoch, t.n):
		// A child has seen more than this root sequenced: a root we did
		// not hear from was here. Start an epoch above it.
		t.epoch, t.n = max(clockEpoch(now), seqEpoch(m.seq)+1), 0
	}
	if from.ID == c.self.ID {
		t.handoffSeq = 0
		c.setAttached(t)
		return
	}
	c.addChild(now, t, from, m.seq)
	if m.flags&fHandoff != 0 {
		c.st.handoffs++
	}
}

// becomeRoot makes this node the root of t, continuing its own counter if
// it has one that is not behind what it has seen.
func (c *core) becomeRoot(now time.Time, t *topic) {
	if t.parent != nil {
		c.send(*t.parent, &msg{kind: kLeave, entries: []entry{{topic: t.name}}})
		t.parent = nil
	}
	last := max(t.delivered, t.maxSeen, t.handoffSeq)
	if t.epoch == 0 || seqOf(t.epoch, t.n) < last {
		t.epoch, t.n = max(clockEpoch(now), seqEpoch(last)+1), 0
	}
	t.root = true
	t.based = true
	t.handoffSeq = 0
	if t.empty() {
		t.idleSince = now
	}
	c.setAttached(t)
}

// setAttached marks t attached and answers the children that waited for it.
func (c *core) setAttached(t *topic) {
	t.joinSent = time.Time{}
	if !t.attached {
		t.attached = true
		c.out.attached = append(c.out.attached, t.name)
	}
	for _, ch := range t.kids {
		if !ch.acked {
			c.ackChild(t, ch)
		}
	}
}

func (c *core) addChild(now time.Time, t *topic, p transport.Peer, after uint64) {
	if p.ID == c.self.ID || (t.parent != nil && t.parent.ID == p.ID) {
		return
	}
	ch := t.children[p.ID]
	if ch == nil {
		ch = &child{peer: p}
		t.children[p.ID] = ch
		t.kids = append(t.kids, ch)
	} else if len(p.Addrs) > 0 {
		ch.peer = p
	}
	ch.heard = now
	ch.after = after
	ch.acked = false
	t.idleSince = time.Time{}
	if t.attached {
		c.ackChild(t, ch)
	}
}

// ackChild tells a child it is adopted (with the last seq we have, where a
// new subscriber starts) and replays what it missed.
func (c *core) ackChild(t *topic, ch *child) {
	ch.acked = true
	c.send(ch.peer, &msg{kind: kSubAck, topic: t.name, seq: t.maxSeen})
	if ch.after > 0 {
		c.replay(t, ch.peer, ch.after, 0)
	}
}

func (c *core) removeChild(t *topic, x id.ID) bool {
	if t.children[x] == nil {
		return false
	}
	delete(t.children, x)
	for i, ch := range t.kids {
		if ch.peer.ID == x {
			t.kids = append(t.kids[:i:i], t.kids[i+1:]...)
			break
		}
	}
	return true
}

func (c *core) onSubAck(now time.Time, from transport.Peer, m *msg) {
	t := c.topics[m.topic]
	if t == nil || t.root || (t.attached && t.parent != nil && t.parent.ID != from.ID && t.joinSent.IsZero()) {
		// We did not ask (any more), or we are settled elsewhere: undo.
		c.send(from, &msg{kind: kLeave, entries: []entry{{topic: m.topic}}})
		return
	}
	if t.parent != nil && t.parent.ID != from.ID {
		c.send(*t.parent, &msg{kind: kLeave, entries: []entry{{topic: t.name}}})
	}
	p := from
	t.parent = &p
	t.parentHeard = now
	c.removeChild(t, from.ID) // our new parent is no longer below us
	if !t.based {
		// A new member starts after what the parent had when it adopted
		// us: everything the parent sends from now on follows that.
		t.delivered, t.based = max(t.delivered, m.seq), true
	}
	t.maxSeen = max(t.maxSeen, t.delivered)
	t.handoffSeq = 0
	c.setAttached(t)
	c.drain(now, t)
}

func (c *core) onLeave(now time.Time, from transport.Peer, m *msg) {
	for _, e := range m.entries {
		if t := c.topics[e.topic]; t != nil && c.removeChild(t, from.ID) {
			c.maybePrune(now, t)
		}
	}
}

// maybePrune drops a forwarder that has nothing left below it (telling its
// parent) and marks an empty root idle (it keeps its counter a while).
func (c *core) maybePrune(now time.Time, t *topic) {
	if !t.empty() {
		return
	}
	if t.root {
		if t.idleSince.IsZero() {
			t.idleSince = now
		}
		return
	}
	if t.parent != nil {
		c.send(*t.parent, &msg{kind: kLeave, entries: []entry{{topic: t.name}}})
	}
	c.dropTopic(t)
}

func (c *core) dropTopic(t *topic) {
	delete(c.topics, t.name)
	c.st.pruned++
}

// heartbeat is the periodic round: one message to each parent for all the
// topics we are its child in, expiry of silent parents and children, and
// the roots' ownership check.
func (c *core) heartbeat(now time.Time, own *ownership) {
	type batch struct {
		to transport.Peer
		m  *msg
	}
	var order []id.ID
	byParent := make(map[id.ID]*batch)
	for _, t := range c.sortedTopics() {
		for i := 0; i < len(t.kids); {
			ch := t.kids[i]
			if now.Sub(ch.heard) > c.cfg.ParentTimeout {
				c.removeChild(t, ch.peer.ID)
				c.st.childrenExpired++
				continue
			}
			i++
		}
		if t.empty() {
			if t.root && !t.idleSince.IsZero() && now.Sub(t.idleSince) > c.cfg.ParentTimeout {
				c.dropTopic(t)
				continue
			}
			if !t.root {
				c.maybePrune(now, t)
				continue
			}
		}
		if t.root && own != nil && own.ready && !own.rng.Contains(t.key) {
			c.handoff(now, t)
			continue
		}
		if t.parent == nil {
			continue
		}
		if now.Sub(t.parentHeard) > c.cfg.ParentTimeout {
			c.orphan(now, t)
			continue
		}
		b := byParent[t.parent.ID]
		if b == nil {
			b = &batch{to: *t.parent, m: &msg{kind: kHB}}
			byParent[t.parent.ID] = b
			order = append(order, t.parent.ID)
		}
		b.m.entries = append(b.m.entries, entry{topic: t.name, seq: t.maxSeen, ok: true})
	}
	for _, x := range order {
		b := byParent[x]
		c.send(b.to, b.m)
	}
}

// orphan: our parent is gone or forgot us. Re-subscribe through the ring.
func (c *core) orphan(now time.Time, t *topic) {
	c.st.repairs++
	t.parent = nil
	t.attached = false
	c.join(now, t)
}

// handoff: another node now owns the topic's ID. Hand our counter and our
// subtree to it by subscribing to it as an ordinary child.
func (c *core) handoff(now time.Time, t *topic) {
	t.root = false
	t.attached = false
	t.handoffSeq = max(seqOf(t.epoch, t.n), 1)
	c.join(now, t)
}

func (c *core) onHeartbeat(now time.Time, from transport.Peer, m *msg) {
	ack := &msg{kind: kHBAck, entries: make([]entry, 0, len(m.entries))}
	for _, e := range m.entries {
		if !c.validTopic(e.topic) {
			c.st.bad++
			continue
		}
		t := c.topics[e.topic]
		var ch *child
		if t != nil {
			ch = t.children[from.ID]
		}
		if ch == nil {
			ack.entries = append(ack.entries, entry{topic: e.topic})
			continue
		}
		ch.heard = now
		ack.entries = append(ack.entries, entry{topic: e.topic, seq: t.maxSeen, ok: true})
	}
	c.send(from, ack)
}

func (c *core) onHeartbeatAck(now time.Time, from transport.Peer, m *msg) {
	for _, e := range m.entries {
		t := c.topics[e.topic]
		if t == nil || t.parent == nil || t.parent.ID != from.ID {
			continue
		}
		if !e.ok {
			c.orphan(now, t) // the parent lost us (restart, expiry): join again
			continue
		}
		t.parentHeard = now
		if e.seq > t.maxSeen && t.holdSince.IsZero() {
			// The parent has messages we never saw (a lost tail): ask.
			c.send(from, &msg{kind: kResend, topic: t.name, seq: t.maxSeen})
		}
	}
}

// shutdown tells parents and children that this node is leaving every tree
// (Close): parents prune it at once, children re-subscribe at once.
func (c *core) shutdown() {
	leaves := make(map[id.ID]*msg)
	var lorder []transport.Peer
	acks := make(map[id.ID]*msg)
	var aorder []transport.Peer
	for _, t := range c.sortedTopics() {
		if t.parent != nil {
			m := leaves[t.parent.ID]
			if m == nil {
				m = &msg{kind: kLeave}
				leaves[t.parent.ID] = m
				lorder = append(lorder, *t.parent)
			}
			m.entries = append(m.entries, entry{topic: t.name})
		}
		for _, ch := range t.kids {
			m := acks[ch.peer.ID]
			if m == nil {
				m = &msg{kind: kHBAck}
				acks[ch.peer.ID] = m
				aorder = append(aorder, ch.peer)
			}
			m.entries = append(m.entries, entry{topic: t.name})
		}
	}
	for _, p := range lorder {
		c.send(p, leaves[p.ID])
	}
	for _, p := range aorder {
		c.send(p, acks[p.ID])
	}
	c.topics = make(map[string]*topic)
}
