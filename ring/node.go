package ring

import (
	"fmt"
	"math/rand"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
)

// Envelope is one message the runtime must send.
type Envelope struct {
	To  transport.Peer
	Msg Msg
}

// Delivery is a routed message that arrived at the owner of its key: the
// Common API's deliver upcall.
type Delivery struct {
	Key     id.ID
	Src     transport.Peer
	ID      uint64
	Hops    int
	Payload []byte
}

// Failure reports a routed message this node gave up on. Origin is set when
// this node originated it (the application should hear of it); otherwise it
// is for metrics and logs.
type Failure struct {
	Key    id.ID
	Src    id.ID
	ID     uint64
	Reason string
	Origin bool
}

// Output is what the core asks of the runtime after one or more inputs:
// messages to send, deliveries to hand to the application, and failures of
// messages it originated.
type Output struct {
	Messages   []Envelope
	Deliveries []Delivery
	Failures   []Failure
}

// Empty reports whether there is nothing to do.
func (o *Output) Empty() bool {
	return len(o.Messages) == 0 && len(o.Deliveries) == 0 && len(o.Failures) == 0
}

// ForwardFunc is the Common API's forward upcall: it sees each message this
// node passes on (not ones it delivers), with the node that sent it into the
// ring, and may consume it by returning false.
type ForwardFunc func(key id.ID, src transport.Peer, payload []byte, next id.ID) bool

type peerState struct {
	peer     transport.Peer
	heard    time.Time // last message received from it directly
	hearsay  time.Time // freshest second-hand evidence that it is alive
	indirect time.Time // last time another node confirmed it answers
	suspect  bool      // a probe round is running
	deadline time.Time // end of the probe round
	hello    bool      // joining: a Hello awaits its answer
	// unreachable: alive by others' word but not answering us directly (a
	// non-transitive link); routing goes around it until it speaks to us.
	unreachable bool
}

type tomb struct {
	at       time.Time
	graceful bool
}

type pendingHop struct {
	seq      uint64
	msg      Route // as received, before this hop's Seq
	to       id.ID
	deadline time.Time
	attempts int
	avoid    []id.ID
}

type heldMsg struct {
	msg   Route
	since time.Time
}

type indirectProbe struct {
	requester transport.Peer
	nonce     uint64
	deadline  time.Time
}

// Stats are counters kept by the core.
type Stats struct {
	Sent        [maxKind + 1]uint64 // messages emitted, by kind
	Received    [maxKind + 1]uint64 // messages accepted, by kind
	Delivered   uint64              // routed messages delivered here
	Forwarded   uint64              // routed messages passed on
	Retransmits uint64              // hops retried around a silent next hop
	Dropped     uint64              // routed messages given up on here
	Duplicates  uint64              // duplicate deliveries suppressed
	Declared    uint64              // peers this node declared dead
}

// MaintenanceSent is the number of overlay-upkeep messages emitted.
func (s Stats) MaintenanceSent() uint64 {
	var n uint64
	for k := Kind(1); k <= maxKind; k++ {
		if k.Maintenance() {
			n += s.Sent[k]
		}
	}
	return n
}

// Node is the overlay core of one ring member: a deterministic state machine.
// It starts no goroutines, reads no clock and draws randomness only from the
// *rand.Rand it is given. Inputs are Start, Tick, Step, Unreachable, Route and
// Leave, each with the current time; the results accumulate until TakeOutput.
// A Node is not safe for concurrent use.
type Node struct {
	cfg  Config
	rng  *rand.Rand
	self transport.Peer
	now  time.Time

	leaf       leafSet
	rt         table
	peers      map[id.ID]*peerState
	dead       map[id.ID]tomb
	remembered []transport.Peer
	seeds      []transport.Peer

	started, ready, joining, joinFinal, left bool
	joinSeed                                 int
	joinDeadline                             time.Time
	nearL, nearR                             id.ID
	hasL, hasR                               bool

	seq       uint64
	msgID     uint64
	pending   map[uint64]*pendingHop
	held      []heldMsg
	indirects map[uint64]*indirectProbe
	seen      dedupe

	nextHeartbeat, nextRow, nextRejoin time.Time

	forward ForwardFunc
	out     Output
	stats   Stats
	leafGen uint64 // bumped on every leaf-set change
}

// LeafGeneration changes whenever the leaf set does, so a runtime can cache
// views of it cheaply.
func (n *Node) LeafGeneration() uint64 { return n.leafGen }

// New returns a core for the node self. It does nothing until Start.
func New(self transport.Peer, cfg Config, rng *rand.Rand) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if rng == nil {
		return nil, fmt.Errorf("ring: New needs a *rand.Rand")
	}
	return &Node{
		cfg:       cfg,
		rng:       rng,
		self:      self,
		leaf:      newLeafSet(self.ID, cfg.LeafSetSize),
		rt:        newTable(self.ID),
		peers:     make(map[id.ID]*peerState),
		dead:      make(map[id.ID]tomb),
		pending:   make(map[uint64]*pendingHop),
		indirects: make(map[uint64]*indirectProbe),
		seen:      newDedupe(4096),
	}, nil
}

// Self is this node's identity and addresses.
func (n *Node) Self() transport.Peer { return n.self }

// SetForward installs the forward upcall (nil removes it).
func (n *Node) SetForward(f ForwardFunc) { n.forward = f }

// Start joins the ring through the seeds, tried in order. With no seeds (or
// only itself) the node forms a new ring of one and is ready at once.
func (n *Node) Start(now time.Time, seeds []transport.Peer) {
	n.now = now
	if n.started {
		return
	}
	n.started = true
	for _, s := range seeds {
		if s.ID != n.self.ID {
			n.seeds = append(n.seeds, s)
		}
	}
	n.scheduleTimers()
	if len(n.seeds) == 0 {
		n.ready = true
		return
	}
	n.joining = true
	n.sendJoin()
}

// StartWithState makes the node ready at once with the given leaf set and
// routing-table members, all taken as heard from now. The simulator uses it
// to build large rings without replaying every join; the protocol then
// maintains that state as usual.
func (n *Node) StartWithState(now time.Time, leaf, table []transport.Peer) {
	n.now = now
	n.started, n.ready = true, true
	for _, p := range leaf {
		n.learn(p, now, true, true)
	}
	for _, p := range table {
		n.learn(p, now, true, false)
	}
	n.noteNeighbours(false)
	n.scheduleTimers()
}

func (n *Node) scheduleTimers() {
	n.nextHeartbeat = n.now.Add(n.jitter(n.cfg.HeartbeatInterval))
	n.nextRow = n.now.Add(n.jitter(n.cfg.RowExchangeInterval))
	n.nextRejoin = n.now.Add(n.jitter(n.cfg.RejoinInterval))
}

// jitter spreads periodic work: a random duration in [d/2, 3d/2).
func (n *Node) jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(n.rng.Int63n(int64(d)))
}

// Ready reports whether the node has finished joining.
func (n *Node) Ready() bool { return n.ready && !n.left }

// TakeOutput returns everything produced since the last call and resets it.
func (n *Node) TakeOutput() Output {
	o := n.out
	n.out = Output{}
	return o
}

// Stats returns the core's counters.
func (n *Node) Stats() Stats { return n.stats }

func (n *Node) send(to transport.Peer, m Msg) {
	n.stats.Sent[m.Kind()]++
	n.out.Messages = append(n.out.Messages, Envelope{To: to, Msg: m})
}

func (n *Node) sendID(to id.ID, m Msg) {
	if ps, ok := n.peers[to]; ok {
		n.send(ps.peer, m)
		return
	}
	n.send(transport.Peer{ID: to}, m)
}

func (n *Node) nextSeq() uint64 {
	n.seq++
	return n.seq
}

// Leave departs gracefully: the leaf set is told, so neighbours take over at
// once instead of after the failure timeout.
func (n *Node) Leave(now time.Time) {
	n.now = now
	if n.left {
		return
	}
	msg := &Leave{Leaf: n.members()}
	for _, x := range n.leaf.members() {
		n.sendID(x, msg)
	}
	for _, h := range n.held {
		n.fail(&h.msg, "node left the ring")
	}
	n.held = nil
	n.left = true
}

// Unreachable tells the core that the transport could not deliver to peer.
// Messages waiting on that hop are sent around it at once, and a leaf-set
// member is probed.
func (n *Node) Unreachable(now time.Time, peer id.ID) {
	n.now = now
	if n.left {
		return
	}
	n.failHopsTo(peer)
	if ps, ok := n.peers[peer]; ok && n.leaf.contains(peer) && !ps.suspect {
		n.startSuspect(peer)
	}
}

// members is the leaf set as gossiped, with evidence ages.
func (n *Node) members() []Member {
	ids := n.leaf.members()
	out := make([]Member, 0, len(ids))
	for _, x := range ids {
		ps := n.peers[x]
		if ps == nil {
			continue
		}
		age := int64(-1)
		if ev := ps.evidence(); !ev.IsZero() {
			age = n.now.Sub(ev).Milliseconds()
		}
		out = append(out, Member{Peer: ps.peer, Age: age})
	}
	return out
}

func (ps *peerState) evidence() time.Time {
	t := ps.heard
	if ps.hearsay.After(t) {
		t = ps.hearsay
	}
	if ps.indirect.After(t) {
		t = ps.indirect
	}
	return t
}

// fresh reports whether this node has first-hand or confirmed evidence that x
// was alive within the failure timeout: the keep-alive lease.
func (n *Node) fresh(x id.ID) bool {
	ps := n.peers[x]
	if ps == nil {
		return false
	}
	t := ps.heard
	if ps.indirect.After(t) {
		t = ps.indirect
	}
	return !t.IsZero() && n.now.Sub(t) <= n.cfg.FailureTimeout
}

// IsOwner reports whether this node is, as far as it can be sure, the live
// node closest to key: it is ready, key is closer to it than to any leaf-set
// member, and it holds fresh keep-alive leases from its immediate neighbours
// on both sides. While IsOwner is false for a key this node would otherwise
// own, it holds messages for that key rather than deliver them.
func (n *Node) IsOwner(key id.ID) bool {
	if !n.ready || n.left {
		return false
	}
	if n.leaf.closest(key, nil) != n.self.ID {
		return false
	}
	return n.leasesFresh()
}

// Sure reports whether the node is ready and holds fresh keep-alive leases
// from both immediate neighbours (Status().Sure, without building a Status).
func (n *Node) Sure() bool { return n.Ready() && n.leasesFresh() }

func (n *Node) leasesFresh() bool {
	if l, ok := n.leaf.nearestLeft(); ok && !n.fresh(l) {
		return false
	}
	if r, ok := n.leaf.nearestRight(); ok && !n.fresh(r) {
		return false
	}
	return true
}

// learn records that p exists. direct means p itself just spoke to us;
// otherwise evidence is when someone last heard from it (zero if unknown).
// leafOK allows p into the leaf set (routing-table gossip without evidence is
// kept out of it).
func (n *Node) learn(p transport.Peer, evidence time.Time, direct, leafOK bool) {
	if p.ID == n.self.ID {
		return
	}
	if t, ok := n.dead[p.ID]; ok {
		if !direct && (t.graceful || !evidence.After(t.at)) {
			return // stale news of a node we buried
		}
		delete(n.dead, p.ID)
		n.forget(p.ID)
	}
	ps := n.peers[p.ID]
	if ps == nil {
		ps = &peerState{peer: p}
		n.peers[p.ID] = ps
	} else if len(p.Addrs) > 0 && (direct || len(ps.peer.Addrs) == 0) {
		ps.peer = p
	}
	if direct {
		ps.heard = n.now
		ps.suspect = false
		ps.unreachable = false
	} else if evidence.After(ps.hearsay) {
		ps.hearsay = evidence
	}
	inLeaf := n.leaf.contains(p.ID)
	if leafOK && !inLeaf {
		changed, evicted := n.leaf.insert(p.ID)
		if changed {
			n.leafGen++
			inLeaf = true
			if n.joining {
				n.sendHello(p.ID)
			}
		}
		for _, ev := range evicted {
			n.dropIfUnused(ev)
		}
	}
	n.rt.insert(p.ID)
	n.dropIfUnused(p.ID)
}

// dropIfUnused forgets a peer that is in neither table.
func (n *Node) dropIfUnused(x id.ID) {
	if n.leaf.contains(x) {
		return
	}
	if r, d, ok := n.rt.slot(x); ok {
		if e, has := n.rt.get(r, d); has && e == x {
			return
		}
	}
	delete(n.peers, x)
}

func (n *Node) forget(x id.ID) {
	for i, p := range n.remembered {
		if p.ID == x {
			n.remembered = append(n.remembered[:i], n.remembered[i+1:]...)
			return
		}
	}
}

// learnMembers merges gossiped leaf-set entries.
func (n *Node) learnMembers(ms []Member) {
	for _, m := range ms {
		var ev time.Time
		if m.Age >= 0 && m.Age <= n.cfg.EvictAfter.Milliseconds() {
			ev = n.now.Add(-time.Duration(m.Age) * time.Millisecond)
		}
		if ev.IsZero() && !n.leaf.contains(m.ID) {
			// No recent first-hand evidence: only the routing table may use it.
			n.learn(m.Peer, ev, false, false)
			continue
		}
		n.learn(m.Peer, ev, false, true)
	}
	n.noteNeighbours(true)
}

// noteNeighbours reacts to a change of immediate neighbour: a new neighbour
// is asked for an immediate heartbeat, so the lease is re-established in one
// round trip.
func (n *Node) noteNeighbours(notify bool) {
	l, hl := n.leaf.nearestLeft()
	r, hr := n.leaf.nearestRight()
	if notify && n.started && !n.left {
		if hl && (!n.hasL || l != n.nearL) && !n.fresh(l) {
			n.sendID(l, &Heartbeat{Leaf: n.members(), Reply: true})
		}
		if hr && (!n.hasR || r != n.nearR) && !n.fresh(r) && !(hl && r == l) {
			n.sendID(r, &Heartbeat{Leaf: n.members(), Reply: true})
		}
	}
	n.nearL, n.hasL, n.nearR, n.hasR = l, hl, r, hr
}

// bury removes x from every table and remembers it, so that stale gossip
// cannot bring it back and so that a partition can heal through it later.
func (n *Node) bury(x id.ID, graceful bool) {
	ps := n.peers[x]
	if n.leaf.remove(x) {
		n.leafGen++
	}
	n.rt.remove(x)
	delete(n.peers, x)
	n.dead[x] = tomb{at: n.now, graceful: graceful}
	if !graceful && ps != nil && n.cfg.MaxRemembered > 0 {
		n.forget(x)
		if len(n.remembered) >= n.cfg.MaxRemembered {
			n.remembered = n.remembered[1:]
		}
		n.remembered = append(n.remembered, ps.peer)
	}
	n.failHopsTo(x)
	n.repairLeaf()
	n.noteNeighbours(true)
	// A joiner may have been waiting for x's answer to its Hello alone.
	n.checkJoined()
}

// repairLeaf asks the farthest member on a side that has gaps for its leaf
// set, as Pastry does after a failure.
func (n *Node) repairLeaf() {
	if !n.started || n.left {
		return
	}
	if len(n.leaf.left) < n.leaf.half && len(n.leaf.left) > 0 && len(n.leaf.right) >= n.leaf.half {
		n.sendID(n.leaf.left[len(n.leaf.left)-1], &LeafReq{})
	}
	if len(n.leaf.right) < n.leaf.half && len(n.leaf.right) > 0 && len(n.leaf.left) >= n.leaf.half {
		n.sendID(n.leaf.right[len(n.leaf.right)-1], &LeafReq{})
	}
}

// dedupe remembers the last max delivered (source, id) pairs. It grows on
// demand: most nodes of a large ring deliver little, and preallocating would
// cost hundreds of kilobytes per node.
type dedupe struct {
	set  map[dedupeKey]struct{}
	ring []dedupeKey
	next int
	max  int
}

type dedupeKey struct {
	src id.ID
	id  uint64
}

func newDedupe(n int) dedupe { return dedupe{max: n} }

// add reports whether k is new.
func (d *dedupe) add(k dedupeKey) bool {
	if _, ok := d.set[k]; ok {
		return false
	}
	if d.set == nil {
		d.set = make(map[dedupeKey]struct{})
	}
	if len(d.ring) < d.max {
		d.ring = append(d.ring, k)
	} else {
		delete(d.set, d.ring[d.next])
		d.ring[d.next] = k
		d.next = (d.next + 1) % len(d.ring)
	}
	d.set[k] = struct{}{}
	return true
}

// failHopsTo re-routes, in a deterministic order, every message waiting for
// an acknowledgement from x.
func (n *Node) failHopsTo(x id.ID) {
	var due []*pendingHop
	for seq, p := range n.pending {
		if p.to == x {
			delete(n.pending, seq)
			due = append(due, p)
		}
	}
	sortHops(due)
	for _, p := range due {
		n.hopFailed(p)
	}
}
