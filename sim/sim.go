// Package sim is a discrete-event simulator that runs thousands of ring cores
// (the same code every real node runs) over transport/memnet on a virtual
// clock. It keeps a global view of who is alive, so every lookup is checked
// against the true owner of its key. Tests and `shoal sim` use it.
package sim

import (
	"encoding/binary"
	"fmt"
	"math/rand"
	"sort"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/transport"
	"github.com/shoal-p2p/shoal/transport/memnet"
)

// Sim is a simulated ring. It is not safe for concurrent use: everything runs
// on the goroutine that calls its methods.
type Sim struct {
	Net   *memnet.Network
	cfg   ring.Config
	rng   *rand.Rand
	nodes map[id.ID]*simNode
	live  []id.ID // live nodes, sorted
	ready []id.ID // live and ready nodes, sorted: the oracle's view of the ring

	lookups  map[uint64]*lookup
	nextLook uint64
	stats    LookupStats

	maintBase  uint64 // maintenance messages counted before the current window
	maintStart time.Time
	nodeSecs   float64 // ∫ live nodes dt over the window
	lastCount  time.Time
	nodeMaint  map[id.ID]uint64 // maintenance sent by nodes no longer live
	deadMaint  uint64
	// OnDeliver, if set, is called for each delivery with the node that
	// delivered it and whether it was the true owner.
	OnDeliver func(at id.ID, key id.ID, correct bool)
}

type simNode struct {
	core   *ring.Node
	tickAt time.Time
	up     bool
	ready  bool
}

type lookup struct {
	key     id.ID
	from    id.ID
	sent    time.Time
	done    bool
	correct bool
	hops    int
}

// LookupStats summarizes lookups since the last ResetLookups.
type LookupStats struct {
	Issued    int
	Delivered int
	Correct   int
	Failed    int // reported undeliverable by the source
	// FailReasons counts the reasons sources were given.
	FailReasons map[string]int
	// Drops counts messages given up by nodes other than their source.
	Drops map[string]int
	Hops  []int
	Wrong []WrongDelivery
}

// WrongDelivery records a lookup delivered somewhere other than the true owner.
type WrongDelivery struct {
	Key, At, Owner id.ID
	Time           time.Time
}

// AvgHops is the mean hop count of delivered lookups.
func (s *LookupStats) AvgHops() float64 {
	if len(s.Hops) == 0 {
		return 0
	}
	t := 0
	for _, h := range s.Hops {
		t += h
	}
	return float64(t) / float64(len(s.Hops))
}

// PercentileHops returns the p-th percentile (0–100) hop count.
func (s *LookupStats) PercentileHops(p float64) int {
	if len(s.Hops) == 0 {
		return 0
	}
	h := append([]int(nil), s.Hops...)
	sort.Ints(h)
	i := int(float64(len(h)-1) * p / 100)
	return h[i]
}

// CorrectPct is the percentage of issued lookups delivered at the true owner.
func (s *LookupStats) CorrectPct() float64 {
	if s.Issued == 0 {
		return 100
	}
	return 100 * float64(s.Correct) / float64(s.Issued)
}

// DeliveredPct is the percentage of issued lookups delivered anywhere.
func (s *LookupStats) DeliveredPct() float64 {
	if s.Issued == 0 {
		return 100
	}
	return 100 * float64(s.Delivered) / float64(s.Issued)
}

// New returns an empty simulated ring. netCfg.Realtime must be false.
func New(seed int64, cfg ring.Config, netCfg memnet.Config) (*Sim, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if netCfg.Realtime {
		return nil, fmt.Errorf("sim: memnet must be in discrete-event mode")
	}
	netCfg.Seed = seed
	if err := netCfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sim{
		Net:       memnet.New(netCfg),
		cfg:       cfg,
		rng:       rand.New(rand.NewSource(seed ^ 0x5ea1)),
		nodes:     make(map[id.ID]*simNode),
		lookups:   make(map[uint64]*lookup),
		nodeMaint: make(map[id.ID]uint64),
	}
	s.maintStart = s.Net.Now()
	s.lastCount = s.maintStart
	return s, nil
}

// Now is the virtual time.
func (s *Sim) Now() time.Time { return s.Net.Now() }

// Rand is the simulator's seeded source.
func (s *Sim) Rand() *rand.Rand { return s.rng }

// RandomID draws a fresh ID.
func (s *Sim) RandomID() id.ID {
	var x id.ID
	s.rng.Read(x[:])
	return x
}

func (s *Sim) newNode(x id.ID) *simNode {
	core, err := ring.New(transport.Peer{ID: x}, s.cfg, rand.New(rand.NewSource(s.rng.Int63())))
	if err != nil {
		panic(err) // the config was validated in New
	}
	sn := &simNode{core: core, up: true}
	s.nodes[x] = sn
	s.insertLive(x)
	s.Net.Attach(x, s.handler(x))
	return sn
}

func (s *Sim) handler(x id.ID) memnet.Handler {
	return func(from id.ID, msg any) {
		sn := s.nodes[x]
		if sn == nil || !sn.up {
			return
		}
		m, ok := msg.(ring.Msg)
		if !ok {
			return
		}
		_ = sn.core.Step(s.Net.Now(), transport.Peer{ID: from}, m)
		s.after(x, sn)
	}
}

// after carries out a core's output and schedules its next tick.
func (s *Sim) after(x id.ID, sn *simNode) {
	out := sn.core.TakeOutput()
	for _, e := range out.Messages {
		s.Net.Send(x, e.To.ID, e.Msg)
	}
	if r := sn.core.Ready(); r != sn.ready {
		sn.ready = r
		if r {
			s.ready = insertSorted(s.ready, x)
		} else {
			s.ready = removeSorted(s.ready, x)
		}
	}
	now := s.Net.Now()
	for _, d := range out.Deliveries {
		s.recordDelivery(x, d, now)
	}
	for _, f := range out.Failures {
		if !f.Origin {
			if s.stats.Drops == nil {
				s.stats.Drops = make(map[string]int)
			}
			s.stats.Drops[f.Reason]++
			continue
		}
		if lk := s.lookups[f.ID]; lk != nil && lk.from == x && !lk.done {
			lk.done = true
			s.stats.Failed++
			if s.stats.FailReasons == nil {
				s.stats.FailReasons = make(map[string]int)
			}
			s.stats.FailReasons[f.Reason]++
		}
	}
	t := sn.core.NextDeadline()
	if min := now.Add(time.Millisecond); t.Before(min) {
		t = min
	}
	if sn.tickAt.IsZero() || t.Before(sn.tickAt) || !sn.tickAt.After(now) {
		sn.tickAt = t
		s.Net.At(t, func() {
			if !sn.up || !sn.tickAt.Equal(t) {
				return
			}
			sn.tickAt = time.Time{}
			sn.core.Tick(s.Net.Now())
			s.after(x, sn)
		})
	}
}

func (s *Sim) recordDelivery(at id.ID, d ring.Delivery, now time.Time) {
	if len(d.Payload) != 8 {
		return
	}
	n := binary.BigEndian.Uint64(d.Payload)
	lk := s.lookups[n]
	if lk == nil || lk.done {
		return
	}
	lk.done = true
	owner, _ := s.TrueOwner(d.Key)
	lk.correct = owner == at
	lk.hops = d.Hops
	s.stats.Delivered++
	s.stats.Hops = append(s.stats.Hops, d.Hops)
	if lk.correct {
		s.stats.Correct++
	} else if len(s.stats.Wrong) < 100 {
		s.stats.Wrong = append(s.stats.Wrong, WrongDelivery{Key: d.Key, At: at, Owner: owner, Time: now})
	}
	if s.OnDeliver != nil {
		s.OnDeliver(at, d.Key, lk.correct)
	}
}

func insertSorted(list []id.ID, x id.ID) []id.ID {
	i := sort.Search(len(list), func(i int) bool { return !list[i].Less(x) })
	if i < len(list) && list[i] == x {
		return list
	}
	list = append(list, id.ID{})
	copy(list[i+1:], list[i:])
	list[i] = x
	return list
}

func removeSorted(list []id.ID, x id.ID) []id.ID {
	i := sort.Search(len(list), func(i int) bool { return !list[i].Less(x) })
	if i < len(list) && list[i] == x {
		return append(list[:i], list[i+1:]...)
	}
	return list
}

func (s *Sim) insertLive(x id.ID) {
	s.accountNodeSecs()
	s.live = insertSorted(s.live, x)
}

func (s *Sim) removeLive(x id.ID) {
	s.accountNodeSecs()
	s.live = removeSorted(s.live, x)
	s.ready = removeSorted(s.ready, x)
}

func (s *Sim) accountNodeSecs() {
	now := s.Net.Now()
	s.nodeSecs += float64(len(s.live)) * now.Sub(s.lastCount).Seconds()
	s.lastCount = now
}

// TrueOwner is the live, ready node closest to key, from the global view.
func (s *Sim) TrueOwner(key id.ID) (id.ID, bool) {
	return closestIn(s.ready, key)
}

func closestIn(list []id.ID, key id.ID) (id.ID, bool) {
	if len(list) == 0 {
		return id.ID{}, false
	}
	i := sort.Search(len(list), func(i int) bool { return !list[i].Less(key) })
	succ := list[i%len(list)]
	pred := list[(i-1+len(list))%len(list)]
	if id.Closer(key, pred, succ) {
		return pred, true
	}
	return succ, true
}

// Live returns the live nodes, sorted.
func (s *Sim) Live() []id.ID { return append([]id.ID(nil), s.live...) }

// ReadyNodes returns the live, ready nodes, sorted.
func (s *Sim) ReadyNodes() []id.ID { return append([]id.ID(nil), s.ready...) }

// Core returns the ring core of a node (live or not), or nil.
func (s *Sim) Core(x id.ID) *ring.Node {
	if sn := s.nodes[x]; sn != nil {
		return sn.core
	}
	return nil
}

// Bootstrap creates n nodes with random IDs whose leaf sets and routing
// tables are filled from the global view, as if they had joined long ago;
// the protocol maintains them from then on.
func (s *Sim) Bootstrap(n int) []id.ID {
	ids := make([]id.ID, 0, n)
	for len(ids) < n {
		x := s.RandomID()
		if _, dup := s.nodes[x]; dup {
			continue
		}
		ids = append(ids, x)
		s.nodes[x] = nil // reserve
	}
	sorted := append([]id.ID(nil), ids...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Less(sorted[j]) })
	now := s.Net.Now()
	half := s.cfg.LeafSetSize / 2
	for _, x := range ids {
		delete(s.nodes, x)
		sn := s.newNode(x)
		leaf := oracleLeaf(sorted, x, half)
		table := oracleTable(sorted, x, s.rng)
		sn.core.StartWithState(now, peers(leaf), peers(table))
		s.after(x, sn)
	}
	return ids
}

func peers(ids []id.ID) []transport.Peer {
	out := make([]transport.Peer, len(ids))
	for i, x := range ids {
		out[i] = transport.Peer{ID: x}
	}
	return out
}

func oracleLeaf(sorted []id.ID, x id.ID, half int) []id.ID {
	n := len(sorted)
	i := sort.Search(n, func(i int) bool { return !sorted[i].Less(x) })
	var out []id.ID
	for k := 1; k <= half && k < n; k++ {
		out = append(out, sorted[(i+k)%n], sorted[(i-k+n)%n])
	}
	return out
}

// oracleTable picks, for every row and digit, a random node with the right
// prefix.
func oracleTable(sorted []id.ID, x id.ID, rng *rand.Rand) []id.ID {
	var out []id.ID
	for r := 0; r < id.Digits; r++ {
		for d := 0; d < 16; d++ {
			if d == x.Digit(r) {
				continue
			}
			lo, hi := prefixRange(x, r, d)
			i := sort.Search(len(sorted), func(i int) bool { return !sorted[i].Less(lo) })
			j := sort.Search(len(sorted), func(i int) bool { return hi.Less(sorted[i]) })
			if j > i {
				out = append(out, sorted[i+rng.Intn(j-i)])
			}
		}
		// Stop once no other node shares the next prefix.
		lo, hi := prefixRange(x, r, x.Digit(r))
		i := sort.Search(len(sorted), func(i int) bool { return !sorted[i].Less(lo) })
		j := sort.Search(len(sorted), func(i int) bool { return hi.Less(sorted[i]) })
		if j-i <= 1 { // no other node shares the next digit: deeper rows are empty
			break
		}
	}
	return out
}

// prefixRange is the smallest and largest IDs sharing x's first r digits
// followed by digit d.
func prefixRange(x id.ID, r, d int) (lo, hi id.ID) {
	lo, hi = x, x
	lo = lo.WithDigit(r, d)
	hi = hi.WithDigit(r, d)
	for k := r + 1; k < id.Digits; k++ {
		lo = lo.WithDigit(k, 0)
		hi = hi.WithDigit(k, 15)
	}
	return lo, hi
}

// Join adds a node that joins through the protocol, bootstrapping through a
// random ready node (or through via, if given). It returns the new ID.
func (s *Sim) Join(via ...id.ID) id.ID {
	x := s.RandomID()
	for s.nodes[x] != nil {
		x = s.RandomID()
	}
	var seeds []transport.Peer
	for _, v := range via {
		seeds = append(seeds, transport.Peer{ID: v})
	}
	if len(seeds) == 0 && len(s.ready) > 0 {
		seeds = append(seeds, transport.Peer{ID: s.ready[s.rng.Intn(len(s.ready))]})
	}
	sn := s.newNode(x)
	sn.core.Start(s.Net.Now(), seeds)
	s.after(x, sn)
	return x
}

// Crash stops a node without warning.
func (s *Sim) Crash(x id.ID) {
	sn := s.nodes[x]
	if sn == nil || !sn.up {
		return
	}
	sn.up = false
	s.deadMaint += sn.core.Stats().MaintenanceSent()
	s.Net.Crash(x)
	s.removeLive(x)
}

// Leave makes a node depart gracefully.
func (s *Sim) Leave(x id.ID) {
	sn := s.nodes[x]
	if sn == nil || !sn.up {
		return
	}
	sn.core.Leave(s.Net.Now())
	s.after(x, sn)
	sn.up = false
	s.deadMaint += sn.core.Stats().MaintenanceSent()
	s.removeLive(x)
	s.Net.Crash(x) // its last messages are already on the wire
}

// CrashRandom crashes a random live node and returns it.
func (s *Sim) CrashRandom() id.ID {
	x := s.live[s.rng.Intn(len(s.live))]
	s.Crash(x)
	return x
}

// Lookup routes a message from a node to key; the outcome is recorded.
func (s *Sim) Lookup(from, key id.ID) {
	sn := s.nodes[from]
	if sn == nil || !sn.up {
		return
	}
	s.nextLook++
	n := s.nextLook
	var p [8]byte
	binary.BigEndian.PutUint64(p[:], n)
	s.stats.Issued++
	s.lookups[n] = &lookup{key: key, from: from, sent: s.Net.Now()}
	mid := sn.core.Route(s.Net.Now(), key, p[:])
	_ = mid
	s.after(from, sn)
}

// RandomLookup routes to a random key from a random ready node.
func (s *Sim) RandomLookup() {
	if len(s.ready) == 0 {
		return
	}
	s.Lookup(s.ready[s.rng.Intn(len(s.ready))], s.RandomID())
}

// Lookups returns the lookup statistics since the last reset.
func (s *Sim) Lookups() LookupStats { return s.stats }

// ResetLookups starts a new measurement window for lookups. Lookups still in
// flight are abandoned.
func (s *Sim) ResetLookups() {
	s.stats = LookupStats{}
	s.lookups = make(map[uint64]*lookup)
}

// RunFor advances virtual time.
func (s *Sim) RunFor(d time.Duration) { s.Net.RunFor(d) }

// ResetMaintenance starts a new window for MaintenancePerNodeSec.
func (s *Sim) ResetMaintenance() {
	s.accountNodeSecs()
	s.maintBase = s.totalMaint()
	s.nodeSecs = 0
	s.maintStart = s.Net.Now()
}

func (s *Sim) totalMaint() uint64 {
	t := s.deadMaint
	for _, x := range s.live {
		t += s.nodes[x].core.Stats().MaintenanceSent()
	}
	return t
}

// MaintenancePerNodeSec is the overlay-upkeep messages sent per live node
// per virtual second since the last ResetMaintenance.
func (s *Sim) MaintenancePerNodeSec() float64 {
	s.accountNodeSecs()
	if s.nodeSecs == 0 {
		return 0
	}
	return float64(s.totalMaint()-s.maintBase) / s.nodeSecs
}

// Converged reports whether every ready node's leaf set is exactly the true
// one (the nearest LeafSetSize/2 live ready nodes on each side), and returns
// the number of nodes that differ.
func (s *Sim) Converged() (bool, int) {
	half := s.cfg.LeafSetSize / 2
	bad := 0
	for _, x := range s.ready {
		want := oracleLeaf(s.ready, x, half)
		got := s.nodes[x].core.LeafSet()
		if !sameSet(want, got, x) {
			bad++
		}
	}
	return bad == 0, bad
}

func sameSet(want []id.ID, got []transport.Peer, self id.ID) bool {
	w := make(map[id.ID]bool)
	for _, x := range want {
		if x != self {
			w[x] = true
		}
	}
	if len(w) != len(got) {
		return false
	}
	for _, p := range got {
		if !w[p.ID] {
			return false
		}
	}
	return true
}
