package ring_test

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/transport"
)

// pump drives a handful of ring cores directly: a FIFO queue carries every
// message through Encode and Decode to the core it is addressed to, at once,
// and a fake clock advances only when the test says so. Everything is
// deterministic for a given seed.
type pump struct {
	t    *testing.T
	seed int64
	cfg  ring.Config
	now  time.Time

	nodes map[id.ID]*ring.Node
	ids   []id.ID // creation order
	down  map[id.ID]bool
	queue []wire

	// dup delivers every Route twice, as a network that duplicates might.
	dup bool

	deliveries map[id.ID][]ring.Delivery
	failures   map[id.ID][]ring.Failure
	lastHeard  map[[2]id.ID]time.Time // [from, to]: time of the last message delivered
	sent       map[ring.Kind]int      // messages delivered, by kind
	// afterStep, if set, runs after every message a core has stepped.
	afterStep func(w wire, m ring.Msg)
}

type wire struct {
	from, to id.ID
	kind     ring.Kind
	frame    []byte
}

func newPump(t *testing.T, seed int64, cfg ring.Config) *pump {
	t.Helper()
	return &pump{
		t:          t,
		seed:       seed,
		cfg:        cfg,
		now:        time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		nodes:      map[id.ID]*ring.Node{},
		down:       map[id.ID]bool{},
		deliveries: map[id.ID][]ring.Delivery{},
		failures:   map[id.ID][]ring.Failure{},
		lastHeard:  map[[2]id.ID]time.Time{},
		sent:       map[ring.Kind]int{},
	}
}

func (p *pump) fatalf(format string, args ...any) {
	p.t.Helper()
	p.t.Fatalf("seed %d, t=%v: %s", p.seed, p.now.Sub(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), fmt.Sprintf(format, args...))
}

// add creates and starts a node joining through seeds (none: a new ring).
// It does not deliver anything.
func (p *pump) add(x id.ID, seeds ...id.ID) *ring.Node {
	p.t.Helper()
	if _, dup := p.nodes[x]; dup {
		p.fatalf("node %s added twice", x.Short())
	}
	n, err := ring.New(transport.Peer{ID: x}, p.cfg, rand.New(rand.NewSource(p.seed*1000+int64(len(p.ids)))))
	if err != nil {
		p.fatalf("ring.New: %v", err)
	}
	p.nodes[x] = n
	p.ids = append(p.ids, x)
	var sp []transport.Peer
	for _, s := range seeds {
		sp = append(sp, transport.Peer{ID: s})
	}
	n.Start(p.now, sp)
	p.collect(x)
	return n
}

// collect queues a core's messages and records its deliveries and failures.
func (p *pump) collect(x id.ID) {
	p.t.Helper()
	n := p.nodes[x]
	out := n.TakeOutput()
	for _, e := range out.Messages {
		b, err := ring.Encode(n.Self(), e.Msg)
		if err != nil {
			p.fatalf("%s: Encode(%s): %v", x.Short(), e.Msg.Kind(), err)
		}
		p.queue = append(p.queue, wire{from: x, to: e.To.ID, kind: e.Msg.Kind(), frame: b})
		if p.dup && e.Msg.Kind() == ring.KindRoute {
			p.queue = append(p.queue, wire{from: x, to: e.To.ID, kind: e.Msg.Kind(), frame: b})
		}
	}
	p.deliveries[x] = append(p.deliveries[x], out.Deliveries...)
	p.failures[x] = append(p.failures[x], out.Failures...)
}

// deliverOne delivers the first queued message; it reports false if the
// queue was empty. Messages to or from a crashed node vanish.
func (p *pump) deliverOne() bool {
	p.t.Helper()
	if len(p.queue) == 0 {
		return false
	}
	w := p.queue[0]
	p.queue = p.queue[1:]
	n, ok := p.nodes[w.to]
	if !ok || p.down[w.to] || p.down[w.from] {
		return true
	}
	from, m, err := ring.Decode(w.frame)
	if err != nil {
		p.fatalf("%s -> %s: Decode(%s): %v", w.from.Short(), w.to.Short(), w.kind, err)
	}
	if from.ID != w.from {
		p.fatalf("frame from %s names sender %s", w.from.Short(), from.ID.Short())
	}
	p.lastHeard[[2]id.ID{w.from, w.to}] = p.now
	p.sent[w.kind]++
	if err := n.Step(p.now, from, m); err != nil {
		p.fatalf("%s -> %s: Step(%s): %v", w.from.Short(), w.to.Short(), w.kind, err)
	}
	p.collect(w.to)
	if p.afterStep != nil {
		p.afterStep(w, m)
	}
	return true
}

// deliverAll delivers until the queue is empty.
func (p *pump) deliverAll() {
	p.t.Helper()
	for i := 0; p.deliverOne(); i++ {
		if i > 200000 {
			p.fatalf("message storm: %d messages without quiescence", i)
		}
	}
}

// tickAll ticks every live node at the current time.
func (p *pump) tickAll() {
	p.t.Helper()
	for _, x := range p.ids {
		if !p.down[x] {
			p.nodes[x].Tick(p.now)
			p.collect(x)
		}
	}
}

// advance moves the clock forward by d, ticking every live node at each
// deadline any of them asked for and delivering everything in between.
func (p *pump) advance(d time.Duration) {
	p.t.Helper()
	end := p.now.Add(d)
	p.deliverAll()
	for {
		next := end
		for _, x := range p.ids {
			if p.down[x] {
				continue
			}
			if dl := p.nodes[x].NextDeadline(); dl.Before(next) {
				next = dl
			}
		}
		if min := p.now.Add(time.Millisecond); next.Before(min) {
			next = min // never stall on a deadline in the past
		}
		if next.After(end) {
			next = end
		}
		p.now = next
		p.tickAll()
		p.deliverAll()
		if !p.now.Before(end) {
			return
		}
	}
}

func (p *pump) crash(x id.ID) { p.down[x] = true }

// readyIDs lists live, ready nodes: the oracle's view of the ring.
func (p *pump) readyIDs() []id.ID {
	var out []id.ID
	for _, x := range p.ids {
		if !p.down[x] && p.nodes[x].Ready() {
			out = append(out, x)
		}
	}
	return out
}

// owner is the true owner of key among live, ready nodes.
func (p *pump) owner(key id.ID) id.ID {
	r := p.readyIDs()
	return r[id.Closest(key, r)]
}

// owners lists the live nodes that claim key.
func (p *pump) owners(key id.ID) []id.ID {
	var out []id.ID
	for _, x := range p.ids {
		if !p.down[x] && p.nodes[x].IsOwner(key) {
			out = append(out, x)
		}
	}
	return out
}

// checkOwnership asserts that exactly the true owner claims each key.
func (p *pump) checkOwnership(keys []id.ID) {
	p.t.Helper()
	for _, k := range keys {
		want := p.owner(k)
		if got := p.owners(k); len(got) != 1 || got[0] != want {
			p.fatalf("key %s: owners %s, want exactly %s", k.Short(), shortIDs(got), want.Short())
		}
	}
}

// keysAround returns keys that probe every boundary of the ring made of
// nodes: the nodes themselves, their neighbours ±1, the midpoints between
// consecutive nodes ±1, the ends of the space, and random keys.
func keysAround(rng *rand.Rand, nodes []id.ID, random int) []id.ID {
	var one id.ID
	one[id.Bytes-1] = 1
	var top id.ID
	for i := range top {
		top[i] = 0xff
	}
	sorted := slices.Clone(nodes)
	slices.SortFunc(sorted, id.ID.Cmp)
	keys := []id.ID{{}, top}
	for i, x := range sorted {
		next := sorted[(i+1)%len(sorted)]
		mid := x.Add(halfOf(id.Clockwise(x, next)))
		keys = append(keys, x, x.Add(one), x.Sub(one), mid, mid.Add(one), mid.Sub(one))
	}
	for i := 0; i < random; i++ {
		var k id.ID
		rng.Read(k[:])
		keys = append(keys, k)
	}
	return keys
}

func halfOf(d id.ID) id.ID {
	var h id.ID
	var carry byte
	for i := 0; i < id.Bytes; i++ {
		h[i] = d[i]>>1 | carry
		carry = d[i] << 7
	}
	return h
}

func shortIDs(xs []id.ID) string {
	s := "["
	for i, x := range xs {
		if i > 0 {
			s += " "
		}
		s += x.Short()
	}
	return s + "]"
}

func inLeafSet(n *ring.Node, x id.ID) bool {
	for _, p := range n.LeafSet() {
		if p.ID == x {
			return true
		}
	}
	return false
}

// topID returns an ID whose first byte is b and the rest zero.
func topID(b byte) id.ID {
	var x id.ID
	x[0] = b
	return x
}
