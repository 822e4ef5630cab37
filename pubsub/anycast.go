package pubsub

import (
	"fmt"
	"slices"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
)

// Anycast (Scribe): the message is routed to the topic's ID; the first node
// on the way that is in the tree (or the root) starts a depth-first search
// of the tree from there: its local subscribers first, then its children in
// random order (each searches its own subtree and hands the message back),
// then its parent. One token travels, so at most one subscriber is asked at
// a time and the first that accepts ends the search. Each node keeps the
// state of a search (which children it tried) for AnycastTimeout, so the
// message itself stays small.

type anyKey struct {
	origin id.ID
	id     uint64
}

type anyState struct {
	key     anyKey
	topic   string
	origin  transport.Peer
	data    []byte
	hops    uint64
	asked   uint64   // subscribers asked so far, along the whole search
	local   []uint64 // local subscriptions not yet asked
	waiting bool     // a local subscription is deciding
	tried   map[id.ID]bool
	upSent  bool
	done    bool
	expires time.Time
}

// maxAnyHops bounds one search (a tree that is inconsistent during a repair
// must not bounce a token for ever).
const maxAnyHops = 4096

// anyLocal starts an anycast this node originates, if it is in the tree.
func (c *core) anyLocal(now time.Time, m *msg) bool {
	t := c.topics[m.topic]
	if t == nil || !t.member() {
		return false
	}
	c.anyStep(now, m, c.self, false)
	return true
}

// anyStep: the search token arrives, routed (from is the origin) or sent
// along the tree (direct; from is the neighbour that passed it).
func (c *core) anyStep(now time.Time, m *msg, from transport.Peer, direct bool) {
	k := anyKey{m.origin.ID, m.id}
	st := c.anys[k]
	if st == nil {
		t := c.topics[m.topic]
		if t == nil || !t.member() {
			if direct && from.ID != c.self.ID {
				// Not (any more) in the tree: hand the token back.
				back := *m
				back.hops++
				c.send(from, &back)
				return
			}
			c.st.anyFailed++
			c.send(m.origin, &msg{kind: kAnyDone, topic: m.topic, id: m.id, data: []byte("the topic has no subscribers")})
			return
		}
		st = &anyState{key: k, topic: m.topic, origin: m.origin, data: m.data, local: slices.Clone(t.subs),
			tried: make(map[id.ID]bool), expires: now.Add(c.cfg.AnycastTimeout)}
		c.anys[k] = st
	}
	if st.done {
		return
	}
	st.hops = max(st.hops, m.hops)
	st.asked = max(st.asked, m.seq2)
	if direct {
		st.tried[from.ID] = true
	}
	if st.hops > maxAnyHops {
		c.anyFinish(st, false, fmt.Sprintf("search gave up after %d hops", st.hops))
		return
	}
	c.anyContinue(st)
}

func (c *core) anyContinue(st *anyState) {
	if st.waiting || st.done {
		return
	}
	t := c.topics[st.topic]
	if t != nil {
		for len(st.local) > 0 {
			sub := st.local[0]
			st.local = st.local[1:]
			if slices.Contains(t.subs, sub) {
				st.waiting = true
				c.out.tries = append(c.out.tries, anyTry{key: st.key, topic: st.topic, sub: sub, origin: st.origin.ID, data: st.data})
				return
			}
		}
		var cands []*child
		for _, ch := range t.kids {
			if !st.tried[ch.peer.ID] {
				cands = append(cands, ch)
			}
		}
		if len(cands) > 0 {
			ch := cands[c.rng.Intn(len(cands))]
			st.tried[ch.peer.ID] = true
			c.passAny(ch.peer, st)
			return
		}
		if t.parent != nil && !st.upSent {
			st.upSent = true
			c.passAny(*t.parent, st)
			return
		}
	}
	reason := "the topic has no subscribers"
	switch {
	case st.asked > 0:
		reason = fmt.Sprintf("all %d subscribers reached declined", st.asked)
	case t == nil || (!t.root && t.parent == nil):
		reason = "the search reached a node cut off from the tree (repair in progress)"
	}
	c.anyFinish(st, false, reason)
}

func (c *core) passAny(to transport.Peer, st *anyState) {
	st.hops++
	c.send(to, &msg{kind: kAny, topic: st.topic, id: st.key.id, hops: st.hops, seq2: st.asked, origin: st.origin, data: st.data})
}

func (c *core) anyFinish(st *anyState, ok bool, reason string) {
	st.done = true
	m := &msg{kind: kAnyDone, topic: st.topic, id: st.key.id}
	if ok {
		m.flags = fOK
	} else {
		c.st.anyFailed++
		m.data = []byte(reason)
	}
	c.send(st.origin, m)
}

// anyAnswer is a local subscription's decision.
func (c *core) anyAnswer(k anyKey, accepted bool) {
	st := c.anys[k]
	if st == nil || st.done || !st.waiting {
		return
	}
	st.waiting = false
	st.asked++
	if accepted {
		c.st.anyAccepted++
		c.anyFinish(st, true, "")
		return
	}
	c.st.anyDeclined++
	c.anyContinue(st)
}
