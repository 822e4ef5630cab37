package memnet

import (
	"math"
	"math/rand"
	"sync"
	"time"

	"github.com/shoal-p2p/shoal/id"
)

// Handler receives one message. from is the sender's ID, as given to Send;
// msg is the value that was sent, shared with the sender and, for a
// duplicated message, with the other copy, so it must be treated as
// immutable. In discrete-event mode a Handler runs on the goroutine that
// called Step or RunUntil; in realtime mode on a timer goroutine.
type Handler func(from id.ID, msg any)

// Stats counts what happened to messages. After every scheduled delivery has
// run, Sent+Duplicated == Delivered+Dropped+Blocked+Held.
type Stats struct {
	Sent       uint64 // calls to Send
	Delivered  uint64 // handler invocations (a duplicate counts twice)
	Dropped    uint64 // messages lost to the Loss probability
	Blocked    uint64 // messages stopped by a crash, partition or cut, at send or at delivery
	Duplicated uint64 // extra copies scheduled by the Duplicate probability
	Held       uint64 // messages held by paused nodes right now (see Pause); goes down on Resume
}

// endpoint is the network's record of one node. Records are never removed:
// a crashed node keeps its partition group and its cuts.
type endpoint struct {
	id    id.ID
	h     Handler
	up    bool
	inc   uint32 // incremented on every crash; in-flight messages carry the old value
	group int32  // partition group; 0 is "not in any listed group"
	cuts  int32  // number of cut links touching this node

	paused bool      // see Pause
	held   []heldMsg // messages it sent or was due to receive while paused, in order
}

// heldMsg is a message held by a paused node: one it sent (delay is the
// latency drawn at Send) or one that arrived for it (delay 0: handled the
// moment it resumes).
type heldMsg struct {
	ev    event
	delay int64
}

// Network is a simulated network of nodes identified by id.ID. Its methods
// are safe for concurrent use; in discrete-event mode they are normally all
// called from one driving goroutine.
type Network struct {
	mu sync.Mutex

	realtime bool
	start    time.Time
	now      int64  // discrete mode: virtual nanoseconds since start
	seq      uint64 // events scheduled so far
	events   eventHeap
	pending  int // realtime mode: scheduled callbacks that have not run

	minLat  int64  // nanoseconds
	spanLat uint64 // MaxLatency-MinLatency, nanoseconds
	loss    float64
	dup     float64

	rng      rng
	userRand *rand.Rand

	ids  map[id.ID]int32
	eps  []endpoint
	cuts map[uint64]struct{} // key: pairKey of two endpoint indices

	stats Stats
}

// New returns a network with no nodes. It panics if cfg is invalid (see
// Config.Validate): a configuration is the programmer's, not a peer's.
func New(cfg Config) *Network {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	start := cfg.Start
	if start.IsZero() {
		start = defaultStart
	}
	return &Network{
		realtime: cfg.Realtime,
		start:    start,
		minLat:   int64(cfg.MinLatency),
		spanLat:  uint64(cfg.MaxLatency - cfg.MinLatency),
		loss:     cfg.Loss,
		dup:      cfg.Duplicate,
		rng:      newRNG(cfg.Seed),
		userRand: rand.New(rand.NewSource(cfg.Seed)),
		ids:      make(map[id.ID]int32),
		cuts:     make(map[uint64]struct{}),
	}
}

// Now is the network's clock: virtual time in discrete-event mode,
// time.Now() in realtime mode.
func (n *Network) Now() time.Time {
	if n.realtime {
		return time.Now()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.start.Add(time.Duration(n.now))
}

// Rand returns a math/rand source seeded with Config.Seed, for callers that
// want their own choices to replay with the network's. It is a stream of its
// own: drawing from it does not change the network's fault decisions. It is
// not safe for concurrent use.
func (n *Network) Rand() *rand.Rand { return n.userRand }

// Attach registers node with handler h and marks it up. On a node that is
// already up it only replaces the handler (messages in flight still arrive);
// on a crashed node it is Restart. A nil handler accepts and discards
// messages.
func (n *Network) Attach(node id.ID, h Handler) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e := &n.eps[n.endpointLocked(node)]
	e.h = h
	e.up = true
}

// Crash takes node down: it can no longer send or receive, and messages in
// flight to it are dropped even if it restarts before they arrive. Messages
// it sent before crashing are already on the wire and still arrive. Crashing
// an unknown or crashed node does nothing.
func (n *Network) Crash(node id.ID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if i, ok := n.ids[node]; ok && n.eps[i].up {
		n.eps[i].up = false
		n.eps[i].inc++
		n.dropHeldLocked(&n.eps[i])
	}
}

// Restart brings node up with handler h, or with its previous handler if h
// is nil. Restarting a node that is up crashes it first, so messages in
// flight to it are dropped. Restarting an unknown node attaches it.
func (n *Network) Restart(node id.ID, h Handler) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e := &n.eps[n.endpointLocked(node)]
	if e.up {
		e.inc++
		n.dropHeldLocked(e)
	}
	e.up = true
	if h != nil {
		e.h = h
	}
}

// Up reports whether node is attached and not crashed.
func (n *Network) Up(node id.ID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	i, ok := n.ids[node]
	return ok && n.eps[i].up
}

// Stats returns the message counters.
func (n *Network) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// SetLoss changes Config.Loss for messages sent from now on. It panics if p
// is not in [0,1).
func (n *Network) SetLoss(p float64) {
	if err := checkProb("Loss", p); err != nil {
		panic(err)
	}
	n.mu.Lock()
	n.loss = p
	n.mu.Unlock()
}

// SetDuplicate changes Config.Duplicate for messages sent from now on. It
// panics if p is not in [0,1).
func (n *Network) SetDuplicate(p float64) {
	if err := checkProb("Duplicate", p); err != nil {
		panic(err)
	}
	n.mu.Lock()
	n.dup = p
	n.mu.Unlock()
}

// SetLatency changes the latency range for messages sent from now on. It
// panics if min < 0 or max < min.
func (n *Network) SetLatency(min, max time.Duration) {
	if err := checkLatency(min, max); err != nil {
		panic(err)
	}
	n.mu.Lock()
	n.minLat, n.spanLat = int64(min), uint64(max-min)
	n.mu.Unlock()
}

// verdict is what Send decided.
type verdict uint8

const (
	scheduled  verdict = iota // one or two deliveries scheduled
	lost                      // dropped by the Loss probability
	senderDown                // sender unknown or crashed
	destDown                  // destination unknown or crashed
	linkDown                  // partition or cut between them
)

// Send sends msg from one node to another. Whether it is blocked (a crashed
// or unknown end, a partition, a cut), lost, duplicated, and how long each
// copy takes are all decided now; crashes, partitions and cuts are checked
// again on arrival. The handler never runs before Send returns. msg is
// passed by reference, not copied: callers must not modify it afterwards.
func (n *Network) Send(from, to id.ID, msg any) { n.send(from, to, msg) }

func (n *Network) send(from, to id.ID, msg any) verdict {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stats.Sent++
	fi, ok := n.ids[from]
	if !ok || !n.eps[fi].up {
		n.stats.Blocked++
		return senderDown
	}
	ti, ok := n.ids[to]
	if !ok || !n.eps[ti].up {
		n.stats.Blocked++
		return destDown
	}
	if !n.linkedLocked(fi, ti) {
		n.stats.Blocked++
		return linkDown
	}
	if n.loss > 0 && n.rng.float() < n.loss {
		n.stats.Dropped++
		return lost
	}
	ev := event{from: fi, to: ti, inc: n.eps[ti].inc, msg: msg}
	n.wireLocked(ev, n.latencyLocked())
	if n.dup > 0 && n.rng.float() < n.dup {
		n.stats.Duplicated++
		if d, ok := msg.(duplicator); ok {
			ev.msg = d.duplicate()
		}
		n.wireLocked(ev, n.latencyLocked())
	}
	return scheduled
}

// wireLocked puts a sent message on the wire, or holds it while its sender
// is paused.
func (n *Network) wireLocked(ev event, delay int64) {
	if from := &n.eps[ev.from]; from.paused {
		from.held = append(from.held, heldMsg{ev: ev, delay: delay})
		n.stats.Held++
		return
	}
	n.scheduleLocked(ev, delay)
}

// duplicator is implemented by messages whose copies must not share memory
// (the Transport's frames, which each receiver owns).
type duplicator interface{ duplicate() any }

func (n *Network) latencyLocked() int64 {
	if n.spanLat == 0 {
		return n.minLat
	}
	return n.minLat + int64(n.rng.uintn(n.spanLat+1))
}

// scheduleLocked runs ev after delay nanoseconds.
func (n *Network) scheduleLocked(ev event, delay int64) {
	n.seq++
	ev.seq = n.seq
	if n.realtime {
		n.afterFuncLocked(ev, delay)
		return
	}
	ev.at = n.now + min(delay, math.MaxInt64-n.now) // saturate: After(huge) is "never"
	n.events.push(ev)
}

// afterFuncLocked is scheduleLocked's realtime half. It is a function of its
// own so that the closure's capture of ev does not move every discrete-mode
// event to the heap.
func (n *Network) afterFuncLocked(ev event, delay int64) {
	n.pending++
	time.AfterFunc(time.Duration(delay), func() {
		n.mu.Lock()
		n.pending--
		n.runUnlock(&ev)
	})
}

// runUnlock runs ev. It is called with n.mu held and releases it before
// calling any handler or callback.
func (n *Network) runUnlock(ev *event) {
	if ev.fn != nil {
		n.mu.Unlock()
		ev.fn()
		return
	}
	to := &n.eps[ev.to]
	if !to.up || to.inc != ev.inc || !n.linkedLocked(ev.from, ev.to) {
		n.stats.Blocked++
		n.mu.Unlock()
		return
	}
	if to.paused {
		to.held = append(to.held, heldMsg{ev: *ev})
		n.stats.Held++
		n.mu.Unlock()
		return
	}
	n.stats.Delivered++
	h, from := to.h, n.eps[ev.from].id
	n.mu.Unlock()
	if h != nil {
		h(from, ev.msg)
	}
}

// endpointLocked returns node's index, creating a record (down, no handler)
// for a node not seen before.
func (n *Network) endpointLocked(node id.ID) int32 {
	if i, ok := n.ids[node]; ok {
		return i
	}
	i := int32(len(n.eps))
	n.eps = append(n.eps, endpoint{id: node})
	n.ids[node] = i
	return i
}
