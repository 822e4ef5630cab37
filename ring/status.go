package ring

import (
	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
)

// Range is an arc of the ring, from From (exclusive) clockwise to To
// (inclusive). Whole is set when the arc is the entire ring.
type Range struct {
	From  id.ID `json:"from"`
	To    id.ID `json:"to"`
	Whole bool  `json:"whole,omitempty"`
}

// Contains reports whether key lies in the range.
func (r Range) Contains(key id.ID) bool {
	if r.Whole {
		return true
	}
	return key == r.To || id.Between(key, r.From, r.To)
}

// Status is a snapshot of the core for metrics, the CLI and tests.
type Status struct {
	Self         transport.Peer   `json:"self"`
	Ready        bool             `json:"ready"`
	Left         []transport.Peer `json:"leaf_left"`  // counter-clockwise, nearest first
	Right        []transport.Peer `json:"leaf_right"` // clockwise, nearest first
	TableSize    int              `json:"routing_table_size"`
	Range        Range            `json:"range"`        // the arc this node owns by its current view
	Sure         bool             `json:"sure"`         // holds fresh leases from both neighbours
	Held         int              `json:"held"`         // messages waiting for ownership certainty
	Pending      int              `json:"pending_hops"` // forwarded messages awaiting a hop ack
	Remembered   int              `json:"remembered"`   // dead nodes kept for partition healing
	Maintenance  uint64           `json:"maintenance_sent"`
	Stats        Stats            `json:"-"`
	KnownPeers   int              `json:"known_peers"`
	Joining      bool             `json:"joining"`
	LeafSetCount int              `json:"leaf_set_count"`
}

// Status returns a snapshot of the core.
func (n *Node) Status() Status {
	st := Status{
		Self:         n.self,
		Ready:        n.Ready(),
		TableSize:    n.rt.n,
		Range:        n.OwnedRange(),
		Sure:         n.ready && n.leasesFresh(),
		Held:         len(n.held),
		Pending:      len(n.pending),
		Remembered:   len(n.remembered),
		Maintenance:  n.stats.MaintenanceSent(),
		Stats:        n.stats,
		KnownPeers:   len(n.peers),
		Joining:      n.joining,
		LeafSetCount: n.leaf.size(),
	}
	for _, x := range n.leaf.left {
		st.Left = append(st.Left, n.peerOf(x))
	}
	for _, x := range n.leaf.right {
		st.Right = append(st.Right, n.peerOf(x))
	}
	return st
}

func (n *Node) peerOf(x id.ID) transport.Peer {
	if ps := n.peers[x]; ps != nil {
		return ps.peer
	}
	return transport.Peer{ID: x}
}

// LeafSet returns the distinct leaf-set members.
func (n *Node) LeafSet() []transport.Peer {
	var out []transport.Peer
	for _, x := range n.leaf.members() {
		out = append(out, n.peerOf(x))
	}
	return out
}

// Neighbours returns the immediate neighbours (counter-clockwise, clockwise).
func (n *Node) Neighbours() (left, right transport.Peer, ok bool) {
	l, hl := n.leaf.nearestLeft()
	r, hr := n.leaf.nearestRight()
	if !hl || !hr {
		return transport.Peer{}, transport.Peer{}, false
	}
	return n.peerOf(l), n.peerOf(r), true
}

// OwnedRange is the arc of IDs closer to this node than to either immediate
// neighbour: from the midpoint with the left neighbour to the midpoint with
// the right one. A node alone owns the whole ring.
func (n *Node) OwnedRange() Range {
	l, hl := n.leaf.nearestLeft()
	r, hr := n.leaf.nearestRight()
	if !hl || !hr {
		return Range{From: n.self.ID, To: n.self.ID, Whole: true}
	}
	return Range{From: midpoint(l, n.self.ID), To: midpoint(n.self.ID, r)}
}

// midpoint returns the point halfway clockwise from a to b; keys up to and
// including it are closer to a (ties go to the smaller ID, which the tie rule
// approximates here).
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
