package ring

import (
	"fmt"
	"reflect"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
)

// Step feeds one message received from the authenticated peer from. from.ID
// must come from the connection; from.Addrs may be the addresses the sender
// declared. It returns an error, and changes nothing, for a message that
// makes no sense (the runtime should log it); it never panics.
func (n *Node) Step(now time.Time, from transport.Peer, m Msg) error {
	n.now = now
	if !n.started || n.left {
		return nil
	}
	if from.ID == n.self.ID {
		return fmt.Errorf("ring: message from own ID %s", from.ID.Short())
	}
	if v := reflect.ValueOf(m); m == nil || v.Kind() == reflect.Pointer && v.IsNil() {
		return fmt.Errorf("ring: nil message from %s", from.ID.Short())
	}
	k := m.Kind()
	if k == 0 || k > maxKind {
		return fmt.Errorf("ring: unknown message kind %d from %s", k, from.ID.Short())
	}
	n.stats.Received[k]++
	if k != KindLeave {
		// Any message is first-hand evidence that its sender is alive.
		n.learn(from, now, true, true)
		n.noteNeighbours(true)
	}
	switch m := m.(type) {
	case *Route:
		n.handleRoute(from, m)
	case *HopAck:
		delete(n.pending, m.Seq)
	case *JoinReply:
		n.handleJoinReply(m)
	case *Hello:
		n.learnMembers(m.Leaf)
		n.send(from, &HelloAck{Leaf: n.members()})
	case *HelloAck:
		if ps := n.peers[from.ID]; ps != nil {
			ps.hello = false
		}
		n.learnMembers(m.Leaf)
		n.checkJoined()
	case *Heartbeat:
		n.learnMembers(m.Leaf)
		if m.Reply {
			n.send(from, &Heartbeat{Leaf: n.members()})
		}
	case *Probe:
		n.send(from, &ProbeAck{Nonce: m.Nonce})
	case *ProbeAck:
		if ip, ok := n.indirects[m.Nonce]; ok {
			delete(n.indirects, m.Nonce)
			n.send(ip.requester, &PingReqAck{Target: from.ID, Nonce: ip.nonce})
		}
	case *PingReq:
		nonce := n.nextSeq()
		n.indirects[nonce] = &indirectProbe{requester: from, nonce: m.Nonce, deadline: now.Add(n.cfg.ProbeTimeout)}
		n.send(m.Target, &Probe{Nonce: nonce})
	case *PingReqAck:
		if ps := n.peers[m.Target]; ps != nil {
			ps.indirect = now
			ps.suspect = false
			if now.Sub(ps.heard) > n.cfg.ProbeTimeout {
				ps.unreachable = true
			}
		}
	case *Failed:
		n.handleFailed(from, m)
	case *Leave:
		if n.leaf.contains(from.ID) || n.peers[from.ID] != nil {
			n.bury(from.ID, true)
		}
		n.dead[from.ID] = tomb{at: now, graceful: true}
		n.learnMembers(m.Leaf)
	case *LeafReq:
		n.send(from, &LeafReply{Leaf: n.members()})
	case *LeafReply:
		n.learnMembers(m.Leaf)
	case *RowReq:
		n.send(from, &RowReply{Row: m.Row, Entries: n.rowPeers(m.Row)})
	case *RowReply:
		for _, p := range m.Entries {
			n.learn(p, time.Time{}, false, false)
		}
	default:
		return fmt.Errorf("ring: unhandled message kind %s from %s", k, from.ID.Short())
	}
	return nil
}

func (n *Node) rowPeers(r int) []transport.Peer {
	var out []transport.Peer
	for _, x := range n.rt.row(r) {
		if ps := n.peers[x]; ps != nil {
			out = append(out, ps.peer)
		}
	}
	return out
}

func (n *Node) handleJoinReply(m *JoinReply) {
	for _, p := range m.Table {
		n.learn(p, time.Time{}, false, false)
	}
	n.learnMembers(m.Leaf)
	if !n.joining {
		return // a rejoin after a partition: the merge is all we need
	}
	n.joinDeadline = n.now.Add(n.cfg.JoinTimeout)
	if m.Final && !n.joinFinal {
		n.joinFinal = true
		for _, x := range n.leaf.members() {
			n.sendHello(x)
		}
		n.checkJoined()
	}
}

func (n *Node) sendHello(x id.ID) {
	ps := n.peers[x]
	if ps == nil || ps.hello || !n.joinFinal {
		return
	}
	ps.hello = true
	ps.deadline = n.now.Add(n.cfg.FailureTimeout)
	n.send(ps.peer, &Hello{Leaf: n.members()})
}

// checkJoined makes a joining node ready once every leaf-set member has
// answered its Hello (FreePastry's consistent join).
func (n *Node) checkJoined() {
	if !n.joining || !n.joinFinal {
		return
	}
	for _, x := range n.leaf.members() {
		if ps := n.peers[x]; ps != nil && ps.hello {
			return
		}
	}
	n.joining = false
	n.ready = true
	n.retryHeld()
}

func (n *Node) handleFailed(from transport.Peer, m *Failed) {
	if m.Dead == n.self.ID {
		// Rumours of our death: answer, and the sender's tombstone yields to
		// first-hand evidence.
		n.send(from, &Heartbeat{Leaf: n.members()})
		return
	}
	ps := n.peers[m.Dead]
	if ps == nil {
		n.learnMembers(m.Leaf)
		return
	}
	age := time.Duration(m.Age) * time.Millisecond
	if age < 0 {
		age = 0
	}
	lastSeenBySender := n.now.Add(-age)
	mine := ps.heard
	if ps.indirect.After(mine) {
		mine = ps.indirect
	}
	if mine.After(lastSeenBySender) && n.now.Sub(mine) < n.cfg.FailureTimeout {
		// We heard from it more recently than the sender: probably a link
		// that is down only between them. Keep it.
		n.learnMembers(m.Leaf)
		return
	}
	wasLeaf := n.leaf.contains(m.Dead)
	n.bury(m.Dead, false)
	n.learnMembers(m.Leaf)
	if wasLeaf {
		// Pass the news to the members the sender could not tell: its leaf
		// set covers one side of the dead node, ours may cover the other.
		covered := map[id.ID]bool{from.ID: true}
		for _, x := range m.Leaf {
			covered[x.ID] = true
		}
		fwd := &Failed{Dead: m.Dead, Age: m.Age, Leaf: n.members()}
		for _, y := range n.leaf.members() {
			if !covered[y] {
				n.sendID(y, fwd)
			}
		}
	}
}

// startSuspect probes x directly and through IndirectProbes other members.
func (n *Node) startSuspect(x id.ID) {
	ps := n.peers[x]
	if ps == nil {
		return
	}
	ps.suspect = true
	ps.deadline = n.now.Add(n.cfg.ProbeTimeout)
	n.send(ps.peer, &Probe{Nonce: n.nextSeq()})
	helpers := n.leaf.members()
	n.rng.Shuffle(len(helpers), func(i, j int) { helpers[i], helpers[j] = helpers[j], helpers[i] })
	sent := 0
	for _, h := range helpers {
		if sent >= n.cfg.IndirectProbes {
			break
		}
		if h == x || !n.fresh(h) {
			continue
		}
		n.sendID(h, &PingReq{Target: ps.peer, Nonce: n.nextSeq()})
		sent++
	}
}

// declareDead buries x and tells the leaf set.
func (n *Node) declareDead(x id.ID) {
	ps := n.peers[x]
	if ps == nil {
		return
	}
	wasLeaf := n.leaf.contains(x)
	age := int64(-1)
	if t := ps.heard; !t.IsZero() {
		age = n.now.Sub(t).Milliseconds()
	}
	n.stats.Declared++
	n.bury(x, false)
	if wasLeaf {
		msg := &Failed{Dead: x, Age: age, Leaf: n.members()}
		for _, y := range n.leaf.members() {
			n.sendID(y, msg)
		}
	}
	n.checkJoined()
}

// Tick advances timers: heartbeats, failure detection, hop retransmission,
// held messages, routing-table upkeep and partition healing.
func (n *Node) Tick(now time.Time) {
	n.now = now
	if !n.started || n.left {
		return
	}
	if n.joining && !n.joinFinal && !now.Before(n.joinDeadline) {
		n.joinSeed++
		n.sendJoin()
	}
	n.expireHops()
	n.checkLeaf()
	// Members also leave the leaf set without a verdict of ours (evicted
	// by a closer node): a joiner re-checks whether it still waits.
	n.checkJoined()
	for nonce, ip := range n.indirects {
		if now.After(ip.deadline) {
			delete(n.indirects, nonce)
		}
	}
	if !now.Before(n.nextHeartbeat) {
		n.nextHeartbeat = now.Add(n.jitter(n.cfg.HeartbeatInterval))
		n.heartbeat()
	}
	if !now.Before(n.nextRow) {
		n.nextRow = now.Add(n.jitter(n.cfg.RowExchangeInterval))
		n.exchangeRow()
	}
	if !now.Before(n.nextRejoin) {
		n.nextRejoin = now.Add(n.jitter(n.cfg.RejoinInterval))
		n.rejoin()
	}
	n.expireTombs()
	n.retryHeld()
}

func (n *Node) expireHops() {
	var due []*pendingHop
	for seq, p := range n.pending {
		if !n.now.Before(p.deadline) {
			delete(n.pending, seq)
			due = append(due, p)
		}
	}
	// Map order is random; sort for determinism.
	sortHops(due)
	for _, p := range due {
		n.hopFailed(p)
	}
}

// checkLeaf runs failure detection over the leaf set.
func (n *Node) checkLeaf() {
	var dead []id.ID
	for _, x := range n.leaf.members() {
		ps := n.peers[x]
		if ps == nil {
			continue
		}
		switch {
		case ps.hello && !n.now.Before(ps.deadline):
			dead = append(dead, x) // never answered our Hello
		case ps.suspect && !n.now.Before(ps.deadline):
			dead = append(dead, x)
		case ps.suspect || ps.hello:
		case n.isNeighbour(x) && !n.fresh(x):
			n.startSuspect(x)
		case !n.isNeighbour(x) && n.now.Sub(ps.evidence()) > n.cfg.EvictAfter:
			// Nobody near has vouched for it for a long time.
			n.bury(x, false)
		}
	}
	for _, x := range dead {
		n.declareDead(x)
	}
}

func (n *Node) isNeighbour(x id.ID) bool {
	return (n.hasL && n.nearL == x) || (n.hasR && n.nearR == x)
}

func (n *Node) heartbeat() {
	if !n.ready {
		return
	}
	var msg *Heartbeat
	if n.hasL {
		msg = &Heartbeat{Leaf: n.members()}
		n.sendID(n.nearL, msg)
	}
	if n.hasR && !(n.hasL && n.nearR == n.nearL) {
		if msg == nil {
			msg = &Heartbeat{Leaf: n.members()}
		}
		n.sendID(n.nearR, msg)
	}
}

// exchangeRow asks a random routing-table entry for the matching row of its
// table: it repairs holes and checks the entry is alive.
func (n *Node) exchangeRow() {
	rows := n.rt.filledRows()
	if len(rows) == 0 {
		return
	}
	r := rows[n.rng.Intn(len(rows))]
	entries := n.rt.row(r)
	x := entries[n.rng.Intn(len(entries))]
	n.sendID(x, &RowReq{Row: r})
}

// rejoin tries one remembered node believed dead (or a bootstrap node when
// alone). If it answers, this node routes a join for its own ID through it
// and merges what comes back: two halves of a partitioned ring find each
// other this way.
func (n *Node) rejoin() {
	if !n.ready {
		return
	}
	cands := n.remembered
	if n.leaf.size() == 0 {
		cands = append(append([]transport.Peer(nil), cands...), n.seeds...)
	}
	if len(cands) == 0 {
		return
	}
	p := cands[n.rng.Intn(len(cands))]
	n.msgID++
	self := n.self
	n.send(p, &Route{Key: n.self.ID, Src: n.self, ID: n.msgID, Joiner: &self})
}

func (n *Node) expireTombs() {
	for x, t := range n.dead {
		if n.now.Sub(t.at) > n.cfg.DeadMemory {
			delete(n.dead, x)
			n.forget(x)
		}
	}
}

// NextDeadline is the latest time by which the runtime should call Tick.
// Calling it earlier is harmless.
func (n *Node) NextDeadline() time.Time {
	d := n.nextHeartbeat
	min := func(t time.Time) {
		if !t.IsZero() && t.Before(d) {
			d = t
		}
	}
	min(n.nextRow)
	min(n.nextRejoin)
	if n.joining && !n.joinFinal {
		min(n.joinDeadline)
	}
	for _, p := range n.pending {
		min(p.deadline)
	}
	for _, x := range n.leaf.members() {
		ps := n.peers[x]
		if ps == nil {
			continue
		}
		if ps.suspect || ps.hello {
			min(ps.deadline)
			continue
		}
		if n.isNeighbour(x) {
			t := ps.heard
			if ps.indirect.After(t) {
				t = ps.indirect
			}
			min(t.Add(n.cfg.FailureTimeout + time.Millisecond))
		}
	}
	for _, ip := range n.indirects {
		min(ip.deadline.Add(time.Millisecond))
	}
	if len(n.held) > 0 {
		min(n.now.Add(n.cfg.HopTimeout))
	}
	return d
}
