package ring

import (
	"math"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
)

// Route originates a message for the owner of key and returns its ID (unique
// for this node). The message is delivered here at once if this node owns key.
func (n *Node) Route(now time.Time, key id.ID, payload []byte) uint64 {
	n.now = now
	n.msgID++
	m := Route{Key: key, Src: n.self, ID: n.msgID, Payload: payload}
	if n.left {
		n.fail(&m, "node has left the ring")
		return m.ID
	}
	n.dispatch(m, nil, 0)
	return m.ID
}

// nextHop picks where a message for key goes next: the closest leaf if key
// is within the leaf set's span, else the routing-table entry that extends
// the shared prefix, else any known node that is closer and shares as long a
// prefix (Pastry's rare case). It returns self when no known node is better.
func (n *Node) nextHop(key id.ID, avoid []id.ID) id.ID {
	skip := func(x id.ID) bool {
		if ps := n.peers[x]; ps != nil && ps.unreachable {
			return true
		}
		for _, a := range avoid {
			if a == x {
				return true
			}
		}
		return false
	}
	if n.leaf.covers(key) {
		return n.leaf.closest(key, skip)
	}
	l := id.CommonPrefix(n.self.ID, key)
	if x, ok := n.rt.get(l, key.Digit(l)); ok && !skip(x) {
		return x
	}
	best := n.self.ID
	consider := func(x id.ID) {
		if !skip(x) && id.CommonPrefix(x, key) >= l && id.Closer(key, x, best) {
			best = x
		}
	}
	for _, x := range n.leaf.right {
		consider(x)
	}
	for _, x := range n.leaf.left {
		consider(x)
	}
	for _, x := range n.rt.all() {
		consider(x)
	}
	return best
}

// dispatch decides what to do with a message at this node: forward it,
// relay it around an unreachable owner, deliver it, or hold it.
func (n *Node) dispatch(m Route, avoid []id.ID, attempts int) {
	if m.Hops > n.cfg.MaxHops {
		n.fail(&m, "hop limit reached")
		return
	}
	if m.Joiner != nil {
		n.joinStep(m, avoid, attempts)
		return
	}
	next := n.nextHop(m.Key, avoid)
	if next != n.self.ID {
		if n.forward != nil && !n.forward(m.Key, m.Src, m.Payload, next) {
			return
		}
		n.forwardTo(m, next, avoid, attempts)
		return
	}
	if owner := n.leaf.closest(m.Key, nil); owner != n.self.ID {
		// The owner is a node we could not reach. While it is under
		// suspicion, wait for the verdict; once others confirm it is alive,
		// relay through another leaf-set member (the link may be down only
		// between us and it).
		if ps := n.peers[owner]; ps == nil || ps.suspect {
			n.hold(m)
			return
		}
		if relay, ok := n.pickRelay(owner, avoid); ok && attempts < n.cfg.HopAttempts {
			v := owner
			m.Via = &v
			n.forwardTo(m, relay, avoid, attempts)
			return
		}
		n.hold(m)
		return
	}
	if n.IsOwner(m.Key) {
		n.deliver(m)
		return
	}
	n.hold(m)
}

func (n *Node) pickRelay(target id.ID, avoid []id.ID) (id.ID, bool) {
	var cands []id.ID
	for _, x := range n.leaf.members() {
		if x == target {
			continue
		}
		skip := false
		for _, a := range avoid {
			if a == x {
				skip = true
				break
			}
		}
		if !skip && n.fresh(x) {
			cands = append(cands, x)
		}
	}
	if len(cands) == 0 {
		return id.ID{}, false
	}
	return cands[n.rng.Intn(len(cands))], true
}

func (n *Node) forwardTo(m Route, next id.ID, avoid []id.ID, attempts int) {
	seq := n.nextSeq()
	fm := m
	fm.Seq = seq
	n.stats.Forwarded++
	n.sendID(next, &fm)
	m.Seq = 0
	n.pending[seq] = &pendingHop{seq: seq, msg: m, to: next, deadline: n.now.Add(n.cfg.HopTimeout), attempts: attempts, avoid: avoid}
}

// hopFailed re-routes a message whose next hop did not acknowledge it.
func (n *Node) hopFailed(p *pendingHop) {
	n.stats.Retransmits++
	if n.leaf.contains(p.to) {
		if ps := n.peers[p.to]; ps != nil && !ps.suspect {
			n.startSuspect(p.to)
		}
	} else if n.rt.remove(p.to) {
		n.dropIfUnused(p.to)
	}
	m := p.msg
	// A relay that cannot reach its target routes the message itself.
	m.Via = nil
	attempts := p.attempts + 1
	if attempts >= n.cfg.HopAttempts {
		// Out of alternatives for now: hold it and try again as the leaf
		// set is repaired, up to HoldTimeout.
		n.hold(m)
		return
	}
	avoid := append(append([]id.ID(nil), p.avoid...), p.to)
	n.dispatch(m, avoid, attempts)
}

func (n *Node) deliver(m Route) {
	if !n.seen.add(dedupeKey{m.Src.ID, m.ID}) {
		n.stats.Duplicates++
		return
	}
	n.stats.Delivered++
	n.out.Deliveries = append(n.out.Deliveries, Delivery{Key: m.Key, Src: m.Src, ID: m.ID, Hops: m.Hops, Payload: m.Payload})
}

func (n *Node) hold(m Route) {
	if len(n.held) >= n.cfg.MaxHeld {
		old := n.held[0]
		n.held = n.held[1:]
		n.fail(&old.msg, "too many held messages")
	}
	n.held = append(n.held, heldMsg{msg: m, since: n.now})
}

// retryHeld re-dispatches held messages; ones held too long are given up.
func (n *Node) retryHeld() {
	if len(n.held) == 0 {
		return
	}
	held := n.held
	n.held = nil
	for _, h := range held {
		if n.now.Sub(h.since) > n.cfg.HoldTimeout {
			n.fail(&h.msg, "owner not certain within the hold timeout")
			continue
		}
		before := len(n.held)
		n.dispatch(h.msg, nil, 0)
		if len(n.held) > before {
			n.held[len(n.held)-1].since = h.since
		}
	}
}

func (n *Node) fail(m *Route, reason string) {
	n.stats.Dropped++
	if m.Joiner == nil {
		n.out.Failures = append(n.out.Failures, Failure{Key: m.Key, Src: m.Src.ID, ID: m.ID, Reason: reason, Origin: m.Src.ID == n.self.ID})
	}
}

func (n *Node) handleRoute(from transport.Peer, m *Route) {
	if m.Seq != 0 {
		n.send(from, &HopAck{Seq: m.Seq})
	}
	r := *m
	r.Seq = 0
	if r.Via != nil && *r.Via != n.self.ID {
		target := *r.Via
		if _, known := n.peers[target]; known {
			n.forwardTo(r, target, nil, n.cfg.HopAttempts-1)
			return
		}
		r.Via = nil // we do not know the target: route it ourselves
	}
	r.Via = nil
	if r.Hops < math.MaxInt { // a peer's count at the edge of int must not wrap past MaxHops
		r.Hops++
	}
	n.dispatch(r, nil, 0)
}

// sendJoin sends a join request, routed to this node's own ID, to the
// current bootstrap node.
func (n *Node) sendJoin() {
	seed := n.seeds[n.joinSeed%len(n.seeds)]
	n.joinDeadline = n.now.Add(n.cfg.JoinTimeout)
	n.msgID++
	self := n.self
	n.send(seed, &Route{Key: n.self.ID, Src: n.self, ID: n.msgID, Joiner: &self})
}

// joinStep handles a join request at one node of its path: every node sends
// the joiner its routing table; the last also sends its leaf set.
func (n *Node) joinStep(m Route, avoid []id.ID, attempts int) {
	j := *m.Joiner
	avoidJ := append(append([]id.ID(nil), avoid...), j.ID)
	next := n.nextHop(m.Key, avoidJ)
	reply := &JoinReply{Table: n.tablePeers()}
	if next == n.self.ID || !n.ready {
		reply.Final = true
		reply.Leaf = n.members()
		n.send(j, reply)
		return
	}
	n.send(j, reply)
	n.forwardTo(m, next, avoidJ, attempts)
}

func (n *Node) tablePeers() []transport.Peer {
	all := n.rt.all()
	out := make([]transport.Peer, 0, len(all))
	for _, x := range all {
		if ps := n.peers[x]; ps != nil {
			out = append(out, ps.peer)
		}
	}
	return out
}
