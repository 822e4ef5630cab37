package kv

import (
	"sort"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/transport"
)

// layout is one node's view of the ring around it, in clockwise order,
// from which it computes owners, replica sets and the ranges it replicates.
// A key's replica set is its owner (the closest node) and the owner's next
// r-1 nodes clockwise.
type layout struct {
	self     id.ID
	nodes    []transport.Peer // clockwise; circular if whole, else a window
	selfIdx  int
	whole    bool // the view holds every node of the ring
	replicas int
}

func newLayout(v *node.View, r int) *layout {
	l := &layout{self: v.Self.ID, replicas: r}
	seen := map[id.ID]bool{v.Self.ID: true}
	// A side that repeats a node of the other side means the leaf set spans
	// the whole ring (both sides then list every other node).
	var left, right []transport.Peer
	for _, p := range v.Left {
		if !seen[p.ID] {
			seen[p.ID] = true
			left = append(left, p)
		} else {
			l.whole = true
		}
	}
	for _, p := range v.Right {
		if !seen[p.ID] {
			seen[p.ID] = true
			right = append(right, p)
		} else {
			l.whole = true
		}
	}
	if len(left) == 0 && len(right) == 0 {
		l.whole = true // alone
	}
	if l.whole {
		all := append(append([]transport.Peer{v.Self}, left...), right...)
		sort.Slice(all, func(i, j int) bool { return all[i].ID.Less(all[j].ID) })
		l.nodes = all
		for i, p := range all {
			if p.ID == v.Self.ID {
				l.selfIdx = i
			}
		}
		return l
	}
	for i := len(left) - 1; i >= 0; i-- {
		l.nodes = append(l.nodes, left[i])
	}
	l.selfIdx = len(l.nodes)
	l.nodes = append(l.nodes, v.Self)
	l.nodes = append(l.nodes, right...)
	return l
}

func (l *layout) n() int { return len(l.nodes) }

// at returns the node at index i, wrapping when the view is whole; ok is
// false outside a window.
func (l *layout) at(i int) (transport.Peer, bool) {
	if l.whole {
		n := len(l.nodes)
		return l.nodes[((i%n)+n)%n], true
	}
	if i < 0 || i >= len(l.nodes) {
		return transport.Peer{}, false
	}
	return l.nodes[i], true
}

// ownerIdx is the index of the node closest to key, among those in view.
func (l *layout) ownerIdx(key id.ID) int {
	best := 0
	for i, p := range l.nodes {
		if id.Closer(key, p.ID, l.nodes[best].ID) {
			best = i
		}
	}
	return best
}

// replicaSetAt is the owner at index i and its successors: up to r
// distinct nodes. ok is false if the window does not reach far enough.
func (l *layout) replicaSetAt(i int) ([]transport.Peer, bool) {
	r := l.replicas
	if l.whole && r > len(l.nodes) {
		r = len(l.nodes)
	}
	out := make([]transport.Peer, 0, r)
	for k := 0; k < r; k++ {
		p, ok := l.at(i + k)
		if !ok {
			return nil, false
		}
		out = append(out, p)
	}
	return out, true
}

// replicaSet of a key, by this view.
func (l *layout) replicaSet(key id.ID) ([]transport.Peer, bool) {
	if len(l.nodes) == 0 {
		return nil, false
	}
	return l.replicaSetAt(l.ownerIdx(key))
}

// isReplica reports whether this node is in key's replica set.
func (l *layout) isReplica(key id.ID) bool {
	rs, ok := l.replicaSet(key)
	if !ok {
		return false
	}
	for _, p := range rs {
		if p.ID == l.self {
			return true
		}
	}
	return false
}

// rangeAt is the arc owned by the node at index i: from the midpoint with
// its predecessor to the midpoint with its successor.
func (l *layout) rangeAt(i int) (arc, bool) {
	if l.whole && len(l.nodes) == 1 {
		return arc{From: l.self, To: l.self}, true
	}
	p, ok1 := l.at(i - 1)
	o, _ := l.at(i)
	s, ok2 := l.at(i + 1)
	if !ok1 || !ok2 {
		return arc{}, false
	}
	return arc{From: midpoint(p.ID, o.ID), To: midpoint(o.ID, s.ID)}, true
}

// piece is a range this node replicates, with the replica set that owns it.
type piece struct {
	arc      arc
	owner    transport.Peer
	replicas []transport.Peer
}

// pieces are the ranges this node replicates: its own and those of the
// r-1 nodes before it (whose successors it is).
func (l *layout) pieces() []piece {
	if l.whole && len(l.nodes) <= l.replicas {
		all := append([]transport.Peer(nil), l.nodes...)
		return []piece{{arc: arc{From: l.self, To: l.self}, owner: l.nodes[l.selfIdx], replicas: all}}
	}
	var out []piece
	for k := 0; k < l.replicas; k++ {
		i := l.selfIdx - k
		a, ok := l.rangeAt(i)
		if !ok {
			continue
		}
		rs, ok := l.replicaSetAt(i)
		if !ok {
			continue
		}
		o, _ := l.at(i)
		out = append(out, piece{arc: a, owner: o, replicas: rs})
	}
	return out
}

// replicaArcs are the arcs of all pieces.
func (l *layout) replicaArcs() []arc {
	var out []arc
	for _, p := range l.pieces() {
		out = append(out, p.arc)
	}
	return out
}

// without returns the layout as it would be without this node: the view
// of the ring before it joined (the replica sets it must sync from).
func (l *layout) withoutSelf() *layout {
	m := &layout{self: l.self, whole: l.whole, replicas: l.replicas}
	for i, p := range l.nodes {
		if i == l.selfIdx {
			m.selfIdx = len(m.nodes) // index of the node after self
			continue
		}
		m.nodes = append(m.nodes, p)
	}
	return m
}

func midpoint(a, b id.ID) id.ID {
	d := b.Sub(a)
	var half id.ID
	var carry byte
	for i := 0; i < id.Bytes; i++ {
		half[i] = d[i]>>1 | carry
		carry = d[i] << 7
	}
	return a.Add(half)
}

func majority(n int) int { return n/2 + 1 }

// sameCfgSpans are the parts of b's ranges whose replica set is the same in
// layout a.
func sameCfgSpans(a, b *layout) []span {
	var out arcSet
	old := a.pieces()
	oldKeys := make([]string, len(old))
	for i, q := range old {
		oldKeys[i] = cfgKey(cfgIDs(peerIDList(q.replicas)))
	}
	for _, p := range b.pieces() {
		k := cfgKey(cfgIDs(peerIDList(p.replicas)))
		for i, q := range old {
			if oldKeys[i] != k {
				continue
			}
			both := arcSet{s: p.arc.spans()}
			both.normalize()
			both.intersectSpans(q.arc.spans())
			out.addSpans(both.list())
		}
	}
	return out.list()
}
