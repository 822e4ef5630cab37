package pubsub

import (
	"math/rand"
	"slices"
	"sort"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/transport"
)

// core is one node's pubsub state machine: topic trees, sequencing,
// ordering, history and anycast searches. It starts no goroutines, reads no
// clock (every input carries now) and draws randomness only from rng. Its
// effects are data in out, which the runtime (PubSub) carries out: messages
// to send or route, deliveries for local subscriptions, answers for waiting
// callers. The runtime serialises calls.
type core struct {
	self   transport.Peer
	cfg    Config
	rng    *rand.Rand
	topics map[string]*topic
	anys   map[anyKey]*anyState
	out    output
	st     counters

	nextHB  time.Time // next heartbeat round (and ownership check)
	soonest time.Time // earliest hold or subscribe-retry deadline (zero: none)
}

// counters are the core's statistics (see Stats).
type counters struct {
	forwardedHops, dataSent, controlSent, sequenced, duplicates, renumbered, gaps, repairs, pruned,
	childrenExpired, handoffs, anyAccepted, anyDeclined, anyFailed, bad, replayed uint64
}

type child struct {
	peer  transport.Peer
	heard time.Time
	acked bool   // SubAck sent (a child of a node that is itself joining waits)
	after uint64 // the last seq the child had when it subscribed (replay from here)
}

type histEntry struct {
	seq uint64
	b   []byte // the encoded kData message
}

// topic is this node's part of one topic tree.
type topic struct {
	name string
	key  id.ID
	subs []uint64 // local subscriptions, in subscription order

	root        bool
	parent      *transport.Peer // nil for a root or while (re)joining
	attached    bool            // root, or a parent acknowledged us
	joinSent    time.Time       // when the last subscribe was routed; zero when none is outstanding
	handoffSeq  uint64          // a root that lost its range: the counter it hands to the new root
	parentHeard time.Time
	children    map[id.ID]*child
	kids        []*child  // the same children in the order they joined (deterministic sends)
	idleSince   time.Time // a root with no members: since when

	// Sequencing (root): seq = epoch<<seqBits | n.
	epoch, n uint64
	pubs     map[pubKey]uint64
	pubOrder []pubKey

	// Ordering and repair (every member).
	delivered uint64 // last seq delivered locally in order (or skipped over)
	based     bool   // delivered is known: what follows it is in order (else we wait for a parent's SubAck)
	maxSeen   uint64 // highest seq received
	pending   map[uint64]*msg
	holdSince time.Time // pending holds messages past a hole since then
	nackAt    time.Time // when to ask the parent again to fill the hole
	history   []histEntry
	histBytes int
}

type pubKey struct {
	publisher id.ID
	id        uint64
}

// member reports whether this node takes part in the topic's tree.
func (t *topic) member() bool {
	return t.root || t.parent != nil || len(t.kids) > 0 || len(t.subs) > 0
}

func (t *topic) empty() bool { return len(t.kids) == 0 && len(t.subs) == 0 }

// output is what the runtime must do after a call into the core.
type output struct {
	msgs     []outMsg
	locals   []localMsg
	tries    []anyTry
	pubAcks  []pubAck
	anyDone  []anyResult
	attached []string
}

func (o *output) empty() bool {
	return len(o.msgs) == 0 && len(o.locals) == 0 && len(o.tries) == 0 && len(o.pubAcks) == 0 &&
		len(o.anyDone) == 0 && len(o.attached) == 0
}

type outMsg struct {
	route bool
	key   id.ID          // route: the key
	to    transport.Peer // direct: the peer
	kind  byte
	b     []byte
}

// localMsg is one message for this node's subscriptions of a topic, handed
// out in sequence order.
type localMsg struct {
	topic     string
	seq       uint64
	publisher id.ID
	data      []byte
}

// anyTry asks one local subscription whether it accepts an anycast.
type anyTry struct {
	key    anyKey
	topic  string
	sub    uint64
	origin id.ID
	data   []byte
}

type pubAck struct{ id, seq uint64 }

type anyResult struct {
	id     uint64
	ok     bool
	by     transport.Peer
	reason string
}

// ownership is the overlay's view of the range this node owns.
type ownership struct {
	rng   ring.Range
	ready bool
}

func newCore(self transport.Peer, cfg Config, rng *rand.Rand) *core {
	return &core{self: self, cfg: cfg, rng: rng, topics: make(map[string]*topic), anys: make(map[anyKey]*anyState)}
}

func (c *core) take() output {
	o := c.out
	c.out = output{}
	return o
}

func (c *core) validTopic(name string) bool { return name != "" && len(name) <= c.cfg.MaxTopicLen }

func (c *core) newTopic(name string) *topic {
	t := &topic{name: name, key: id.HashString(name), children: make(map[id.ID]*child), pending: make(map[uint64]*msg)}
	c.topics[name] = t
	return t
}

func (c *core) send(to transport.Peer, m *msg) { c.sendRaw(to, m.kind, m.bytes()) }

func (c *core) sendRaw(to transport.Peer, kind byte, b []byte) {
	c.out.msgs = append(c.out.msgs, outMsg{to: to, kind: kind, b: b})
	if to.ID == c.self.ID {
		return
	}
	if kind == kData {
		c.st.dataSent++
	} else {
		c.st.controlSent++
	}
}

func (c *core) route(key id.ID, m *msg) {
	c.out.msgs = append(c.out.msgs, outMsg{route: true, key: key, kind: m.kind, b: m.bytes()})
}

func (c *core) noteDeadline(d time.Time) {
	if c.soonest.IsZero() || d.Before(c.soonest) {
		c.soonest = d
	}
}

// nextDeadline is when the runtime must call tick next.
func (c *core) nextDeadline() time.Time {
	if !c.soonest.IsZero() && c.soonest.Before(c.nextHB) {
		return c.soonest
	}
	return c.nextHB
}

func (c *core) sortedTopics() []*topic {
	names := make([]string, 0, len(c.topics))
	for n := range c.topics {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]*topic, len(names))
	for i, n := range names {
		out[i] = c.topics[n]
	}
	return out
}

// tick runs timers: holds that waited long enough, subscribe retries, and
// every HeartbeatInterval the heartbeat round. own, if known, is the
// overlay's current view of the range this node owns.
func (c *core) tick(now time.Time, own *ownership) {
	c.soonest = time.Time{}
	for _, t := range c.sortedTopics() {
		if !t.holdSince.IsZero() {
			if d := t.holdSince.Add(c.cfg.ReorderTimeout); !now.Before(d) {
				c.flushHeld(t)
			} else {
				if !now.Before(t.nackAt) {
					c.nack(now, t)
				}
				c.noteDeadline(d)
				c.noteDeadline(t.nackAt)
			}
		}
		if !t.attached && !t.joinSent.IsZero() {
			if d := t.joinSent.Add(c.cfg.SubscribeRetry); !now.Before(d) {
				c.join(now, t)
			} else {
				c.noteDeadline(d)
			}
		}
	}
	if now.Before(c.nextHB) {
		return
	}
	c.nextHB = now.Add(c.cfg.HeartbeatInterval)
	c.heartbeat(now, own)
	for k, a := range c.anys {
		if now.After(a.expires) {
			delete(c.anys, k)
		}
	}
}

// Forward is the routed-message upcall at a node on the way: it returns
// whether the message goes on (true) or was consumed here.
func (c *core) forward(now time.Time, from transport.Peer, m *msg) bool {
	pass := c.forwardDecide(now, from, m)
	if pass {
		c.st.forwardedHops++
	}
	return pass
}

func (c *core) forwardDecide(now time.Time, from transport.Peer, m *msg) bool {
	switch m.kind {
	case kSub:
		return c.interceptSub(now, from, m)
	case kAny:
		if from.ID == c.self.ID || m.origin.ID != from.ID {
			return true
		}
		t := c.topics[m.topic]
		if t == nil || !t.member() {
			return true
		}
		c.anyStep(now, m, from, false)
		return false
	}
	return true
}

// routed handles a routed message delivered here, at the key's owner.
func (c *core) routed(now time.Time, from transport.Peer, m *msg) {
	if !c.validTopic(m.topic) {
		c.st.bad++
		return
	}
	switch m.kind {
	case kSub:
		c.rootSub(now, from, m)
	case kPub:
		c.rootPub(now, from, m)
	case kAny:
		if m.origin.ID != from.ID {
			c.st.bad++
			return
		}
		t := c.topics[m.topic]
		if t == nil || !t.member() {
			c.st.anyFailed++
			c.send(from, &msg{kind: kAnyDone, topic: m.topic, id: m.id, data: []byte("the topic has no subscribers")})
			return
		}
		c.anyStep(now, m, from, false)
	default:
		c.st.bad++
	}
}

// direct handles a message sent straight to this node.
func (c *core) direct(now time.Time, from transport.Peer, m *msg) {
	if m.topic != "" && !c.validTopic(m.topic) {
		c.st.bad++
		return
	}
	switch m.kind {
	case kSubAck:
		c.onSubAck(now, from, m)
	case kLeave:
		c.onLeave(now, from, m)
	case kHB:
		c.onHeartbeat(now, from, m)
	case kHBAck:
		c.onHeartbeatAck(now, from, m)
	case kPubAck:
		c.out.pubAcks = append(c.out.pubAcks, pubAck{id: m.id, seq: m.seq})
	case kData:
		c.onDataMsg(now, from, m)
	case kResend:
		if t := c.topics[m.topic]; t != nil {
			c.replay(t, from, m.seq, m.seq2)
		}
	case kAny:
		if !c.validTopic(m.topic) {
			c.st.bad++
			return
		}
		c.anyStep(now, m, from, true)
	case kAnyDone:
		r := anyResult{id: m.id, ok: m.flags&fOK != 0, by: from, reason: string(m.data)}
		c.out.anyDone = append(c.out.anyDone, r)
	default:
		c.st.bad++
	}
}

// topicInfo is a snapshot of one topic for Stats.
type topicInfo struct {
	root     bool
	attached bool
	children int
	subs     int
	last     uint64
}

func (c *core) snapshot() map[string]topicInfo {
	out := make(map[string]topicInfo, len(c.topics))
	for n, t := range c.topics {
		out[n] = topicInfo{root: t.root, attached: t.attached, children: len(t.kids), subs: len(t.subs), last: t.delivered}
	}
	return out
}

func removeID(s []uint64, x uint64) []uint64 {
	if i := slices.Index(s, x); i >= 0 {
		return slices.Delete(s, i, i+1)
	}
	return s
}
