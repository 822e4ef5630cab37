package memnet

import (
	"fmt"
	"math"

	"github.com/shoal-p2p/shoal/id"
)

// Partition splits the network into the given groups plus one more made of
// every node listed in none of them (including nodes attached later).
// Messages between groups are blocked, at send and on arrival. It replaces
// any earlier partition and leaves cuts alone. A node listed in several
// groups belongs to the last. Partition() with no groups is Heal.
func (n *Network) Partition(groups ...[]id.ID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.healLocked()
	for g, nodes := range groups {
		for _, node := range nodes {
			n.eps[n.endpointLocked(node)].group = int32(g + 1)
		}
	}
}

// Heal removes the partition. Cuts stay; see Uncut.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.healLocked()
}

func (n *Network) healLocked() {
	for i := range n.eps {
		n.eps[i].group = 0
	}
}

// Pause freezes node as a stopped process (SIGSTOP, a long GC pause, a
// stalled VM) looks to everyone else: messages that arrive for it wait,
// undelivered, and messages it sends do not leave; Resume delivers the
// first at once, in the order they arrived, and puts the second on the wire
// with the latencies drawn when they were sent. Loss, duplication and the
// connectivity check at Send are decided as usual; connectivity, crashes and
// restarts are checked again when a held message finally arrives. The node's
// own code keeps running (the network cannot stop it): what Pause models is
// that nothing it does is seen until it resumes, and that it then sees the
// whole backlog. A crash or restart of a paused node drops what it held and
// ends the pause. Pausing a node that is not up, or is paused, does nothing.
func (n *Network) Pause(node id.ID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if i, ok := n.ids[node]; ok && n.eps[i].up {
		n.eps[i].paused = true
	}
}

// Resume ends a Pause (see there). Resuming a node that is not paused does
// nothing.
func (n *Network) Resume(node id.ID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	i, ok := n.ids[node]
	if !ok || !n.eps[i].paused {
		return
	}
	e := &n.eps[i]
	e.paused = false
	held := e.held
	e.held = nil
	for _, h := range held {
		n.stats.Held--
		n.scheduleLocked(h.ev, h.delay)
	}
}

// Paused reports whether node is paused.
func (n *Network) Paused(node id.ID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	i, ok := n.ids[node]
	return ok && n.eps[i].paused
}

// dropHeldLocked ends e's pause, if any, dropping what it held: a stopped
// process that is killed never sends its backlog, nor reads its inbox.
func (n *Network) dropHeldLocked(e *endpoint) {
	e.paused = false
	n.stats.Held -= uint64(len(e.held))
	n.stats.Blocked += uint64(len(e.held))
	e.held = nil
}

// Cut takes down the link between a and b in both directions, and only that
// link: with Cut(a, c), a and c cannot talk but both can still talk to b.
// Messages already in flight on the link are blocked on arrival.
func (n *Network) Cut(a, b id.ID) {
	if a == b {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cutLocked(n.endpointLocked(a), n.endpointLocked(b))
}

// cutLocked cuts the link between endpoints i != j.
func (n *Network) cutLocked(i, j int32) {
	key := pairKey(i, j)
	if _, ok := n.cuts[key]; !ok {
		n.cuts[key] = struct{}{}
		n.eps[i].cuts++
		n.eps[j].cuts++
	}
}

// Uncut restores the link between a and b.
func (n *Network) Uncut(a, b id.ID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	i, ok1 := n.ids[a]
	j, ok2 := n.ids[b]
	if !ok1 || !ok2 {
		return
	}
	if key := pairKey(i, j); n.hasCutLocked(key) {
		delete(n.cuts, key)
		n.eps[i].cuts--
		n.eps[j].cuts--
	}
}

// CutRandomPairs cuts round(fraction × P) of the P distinct pairs of nodes,
// chosen uniformly with the network's seeded source, and returns that
// number. Pairs already cut may be chosen again and count. Repeated IDs in
// nodes are ignored. It panics if fraction is not in [0,1]. The cost is
// proportional to the number of pairs cut (or kept, when over half are cut).
func (n *Network) CutRandomPairs(nodes []id.ID, fraction float64) int {
	if !(fraction >= 0 && fraction <= 1) {
		panic(fmt.Sprintf("memnet: CutRandomPairs fraction must be in [0,1], got %v", fraction))
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	idx := make([]int32, 0, len(nodes))
	seen := make(map[int32]bool, len(nodes))
	for _, node := range nodes {
		i := n.endpointLocked(node)
		if !seen[i] {
			seen[i] = true
			idx = append(idx, i)
		}
	}
	m := uint64(len(idx))
	if m < 2 {
		return 0
	}
	pairs := m * (m - 1) / 2
	k := uint64(math.Round(fraction * float64(pairs)))
	k = min(k, pairs)
	if k <= pairs/2 {
		for _, p := range n.samplePairsLocked(idx, k) {
			n.cutLocked(p[0], p[1])
		}
		return int(k)
	}
	keep := make(map[uint64]struct{}, pairs-k)
	for _, p := range n.samplePairsLocked(idx, pairs-k) {
		keep[pairKey(p[0], p[1])] = struct{}{}
	}
	for a := range idx {
		for b := a + 1; b < len(idx); b++ {
			if _, ok := keep[pairKey(idx[a], idx[b])]; !ok {
				n.cutLocked(idx[a], idx[b])
			}
		}
	}
	return int(k)
}

// samplePairsLocked draws k distinct pairs from idx (k at most half of all
// pairs, so rejection is cheap), in a deterministic order.
func (n *Network) samplePairsLocked(idx []int32, k uint64) [][2]int32 {
	m := uint64(len(idx))
	out := make([][2]int32, 0, k)
	seen := make(map[uint64]struct{}, k)
	for uint64(len(out)) < k {
		a := n.rng.uintn(m)
		b := n.rng.uintn(m - 1)
		if b >= a {
			b++
		}
		key := pairKey(idx[a], idx[b])
		if _, dup := seen[key]; !dup {
			seen[key] = struct{}{}
			out = append(out, [2]int32{idx[a], idx[b]})
		}
	}
	return out
}

// Reachable reports whether a message sent now from a to b would leave:
// both are up, in the same partition group, and their link is not cut. It
// does not consult Loss.
func (n *Network) Reachable(a, b id.ID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	i, ok1 := n.ids[a]
	j, ok2 := n.ids[b]
	return ok1 && ok2 && n.eps[i].up && n.eps[j].up && n.linkedLocked(i, j)
}

// linkedLocked reports whether endpoints i and j are in the same partition
// group and their link is not cut.
func (n *Network) linkedLocked(i, j int32) bool {
	if n.eps[i].group != n.eps[j].group {
		return false
	}
	// The counters spare the map lookup unless both ends have some cut link.
	if n.eps[i].cuts == 0 || n.eps[j].cuts == 0 {
		return true
	}
	return !n.hasCutLocked(pairKey(i, j))
}

func (n *Network) hasCutLocked(key uint64) bool {
	_, ok := n.cuts[key]
	return ok
}

// pairKey is the map key of the unordered pair {i, j}: the smaller index in
// the high half.
func pairKey(i, j int32) uint64 {
	if i > j {
		i, j = j, i
	}
	return uint64(uint32(i))<<32 | uint64(uint32(j))
}
