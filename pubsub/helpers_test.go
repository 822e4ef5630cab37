package pubsub

import (
	"context"
	"fmt"
	"math/rand"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/transport"
	"github.com/shoal-p2p/shoal/transport/memnet"
)

// cluster is a memnet ring of node runtimes, each with pubsub, for tests
// inside testing/synctest (virtual time).
type cluster struct {
	t       *testing.T
	seed    int64
	net     *memnet.Network
	rng     *rand.Rand
	members []*member
	byID    map[id.ID]*member
	cfg     Config
}

type member struct {
	id      id.ID
	n       *node.Node
	ps      *PubSub
	crashed bool
}

func testConfig() Config {
	c := LocalConfig()
	return c
}

func newCluster(t *testing.T, seed int64, n int, cfg Config) *cluster {
	t.Helper()
	c := &cluster{t: t, seed: seed, rng: rand.New(rand.NewSource(seed)), byID: make(map[id.ID]*member), cfg: cfg}
	c.net = memnet.New(memnet.Config{Seed: seed, Realtime: true, MinLatency: time.Millisecond, MaxLatency: 5 * time.Millisecond})
	for i := 0; i < n; i++ {
		c.add()
	}
	return c
}

func (c *cluster) add() *member {
	c.t.Helper()
	var x id.ID
	c.rng.Read(x[:])
	return c.addID(x)
}

// addID starts a node with a chosen ID.
func (c *cluster) addID(x id.ID) *member {
	c.t.Helper()
	cfg := node.DefaultConfig()
	cfg.Ring = ring.LocalConfig()
	cfg.Transport = c.net.Transport(x)
	if live := c.live(); len(live) > 0 {
		cfg.Bootstrap = []transport.Peer{live[c.rng.Intn(len(live))].n.Self()}
	}
	nd, err := node.Start(context.Background(), cfg)
	if err != nil {
		c.t.Fatalf("seed %d: start node %d: %v", c.seed, len(c.members), err)
	}
	pcfg := c.cfg
	pcfg.Seed = c.rng.Int63()
	ps, err := New(nd, pcfg)
	if err != nil {
		c.t.Fatalf("seed %d: pubsub on node %d: %v", c.seed, len(c.members), err)
	}
	m := &member{id: x, n: nd, ps: ps}
	c.members = append(c.members, m)
	c.byID[x] = m
	return m
}

func (c *cluster) live() []*member {
	var out []*member
	for _, m := range c.members {
		if !m.crashed {
			out = append(out, m)
		}
	}
	return out
}

// owner is the live node closest to key: the topic's true root.
func (c *cluster) owner(key id.ID) *member {
	live := c.live()
	ids := make([]id.ID, len(live))
	for i, m := range live {
		ids[i] = m.id
	}
	return live[id.Closest(key, ids)]
}

func (c *cluster) pick() *member {
	live := c.live()
	return live[c.rng.Intn(len(live))]
}

// crash takes a node off the network at once, as a kill -9 would.
func (c *cluster) crash(m *member) {
	c.net.Crash(m.id)
	m.crashed = true
}

func (c *cluster) close() {
	for _, m := range c.members {
		m.ps.Close()
	}
	for _, m := range c.members {
		m.n.Close()
	}
}

// forwarderCount sums Forwarders() over live nodes for a topic.
func (c *cluster) treeNodes(topic string) (nodes, edges int) {
	for _, m := range c.live() {
		if k, ok := m.ps.Forwarders()[topic]; ok {
			nodes++
			edges += k
		}
	}
	return
}

func (c *cluster) wire() (sent, delivered uint64) {
	st := c.sum()
	return st.WireSent, st.Delivered
}

// sum adds up the counters of every node.
func (c *cluster) sum() Stats {
	var t Stats
	for _, m := range c.members {
		st := m.ps.Stats()
		t.WireSent += st.WireSent
		t.DataSent += st.DataSent
		t.ControlSent += st.ControlSent
		t.ForwardedHops += st.ForwardedHops
		t.Delivered += st.Delivered
	}
	return t
}

// recorder collects one subscription's deliveries.
type recorder struct {
	mu     sync.Mutex
	node   id.ID
	got    []Delivery
	inCall atomic.Int32
	bad    string
	work   time.Duration // virtual time each call takes
	accept func(d *Delivery) bool
}

func (r *recorder) handler(d *Delivery) bool {
	if r.inCall.Add(1) != 1 {
		r.mu.Lock()
		r.bad = "handler called while another call was running"
		r.mu.Unlock()
	}
	defer r.inCall.Add(-1)
	if r.work > 0 {
		time.Sleep(r.work)
	}
	r.mu.Lock()
	r.got = append(r.got, *d)
	r.mu.Unlock()
	if r.accept != nil {
		return r.accept(d)
	}
	return true
}

func (r *recorder) deliveries() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Delivery(nil), r.got...)
}

// checkOrder verifies a recorder saw strictly increasing sequence numbers,
// each once.
func (r *recorder) checkOrder() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bad != "" {
		return fmt.Errorf("subscriber %s: %s", r.node.Short(), r.bad)
	}
	for i := 1; i < len(r.got); i++ {
		if r.got[i].Seq <= r.got[i-1].Seq {
			return fmt.Errorf("subscriber %s: seq %d after %d", r.node.Short(), r.got[i].Seq, r.got[i-1].Seq)
		}
	}
	return nil
}

// published is what a publisher learned: data -> seq.
type published struct {
	mu   sync.Mutex
	seqs map[string]uint64
}

func (p *published) add(data string, seq uint64) {
	p.mu.Lock()
	if p.seqs == nil {
		p.seqs = make(map[string]uint64)
	}
	p.seqs[data] = seq
	p.mu.Unlock()
}

// checkExactlyOnce verifies that r received every message in want exactly
// once, with the seq the root gave it.
func checkExactlyOnce(r *recorder, want map[string]uint64) error {
	if err := r.checkOrder(); err != nil {
		return err
	}
	seen := make(map[string]int)
	for _, d := range r.deliveries() {
		seen[string(d.Data)]++
		if s, ok := want[string(d.Data)]; ok && s != d.Seq {
			return fmt.Errorf("subscriber %s: %q delivered with seq %d, root acknowledged %d", r.node.Short(), d.Data, d.Seq, s)
		}
	}
	var missing []string
	for data := range want {
		switch seen[data] {
		case 1:
		case 0:
			missing = append(missing, data)
		default:
			return fmt.Errorf("subscriber %s: %q delivered %d times", r.node.Short(), data, seen[data])
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("subscriber %s: %d of %d messages missing, e.g. %q", r.node.Short(), len(missing), len(want), missing[0])
	}
	return nil
}
