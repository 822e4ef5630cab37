// Package testring runs a ring of Shoal nodes with the key-value store on
// memnet, for the tests of packages built on the store (task queues, shared
// resources, sagas). Call New inside a testing/synctest bubble: the network
// runs in realtime mode on the bubble's fake clock, so minutes of ring time
// pass at once.
//
// Each Member keeps its MemStore across a Crash, as a disk would, and
// Options.Attach builds the components under test on every start and
// restart of a member.
package testring

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/kv"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/transport"
	"github.com/shoal-p2p/shoal/transport/memnet"
)

// Member is one node of the ring.
type Member struct {
	ID    id.ID
	Node  *node.Node
	KV    *kv.KV
	Store *kv.MemStore
	// Extra is what Options.Attach returned for the current incarnation.
	Extra any
	// Down is set while the member is crashed.
	Down  bool
	close func()
}

// Options configure a test ring.
type Options struct {
	Seed  int64
	Nodes int
	// Net adjusts the memnet configuration (seed, realtime mode and a
	// 1–3 ms latency are set before it runs).
	Net func(*memnet.Config)
	// KV adjusts each node's store configuration (tuned for tests: 2 s
	// anti-entropy, 500 ms rounds, 4 s client retries).
	KV func(*kv.Config)
	// Attach starts the components under test on a member that has just
	// started (or restarted); it returns the value kept in Member.Extra and
	// a function that stops them, called before the store and node close.
	Attach func(m *Member) (extra any, stop func())
}

// Cluster is a running test ring.
type Cluster struct {
	T    testing.TB
	Seed int64
	Net  *memnet.Network
	Rng  *rand.Rand // seeded; guarded by the caller (tests use it from one goroutine)

	mu      sync.Mutex
	opts    Options
	members map[id.ID]*Member
	boot    transport.Peer
	// regressions counts kv.Stats.VersionRegressions of members' past
	// incarnations; Close checks the total.
	regressions uint64
}

// KVConfig is the store configuration the ring's nodes use.
func (c *Cluster) KVConfig(store kv.Store, genesis bool) kv.Config {
	k := kv.DefaultConfig()
	k.Store = store
	k.Genesis = genesis
	k.SyncInterval = 2 * time.Second
	k.RoundTimeout = 500 * time.Millisecond
	k.Retry.PerAttempt = 400 * time.Millisecond
	k.Retry.Overall = 4 * time.Second
	if c.opts.KV != nil {
		c.opts.KV(&k)
	}
	if k.Logger == nil {
		// The store's errors (the tripwire's "invariant broken" among
		// them) go to stderr, where a failing run shows them.
		k.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	}
	return k
}

// New starts opts.Nodes nodes one after another and waits (virtual time)
// for leaf sets to settle and ranges to synchronise.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Nodes < 1 {
		opts.Nodes = 5
	}
	c := &Cluster{T: t, Seed: opts.Seed, opts: opts, Rng: rand.New(rand.NewSource(opts.Seed)), members: map[id.ID]*Member{}}
	nc := memnet.Config{Seed: opts.Seed, Realtime: true, MinLatency: time.Millisecond, MaxLatency: 3 * time.Millisecond}
	if opts.Net != nil {
		opts.Net(&nc)
		nc.Seed, nc.Realtime = opts.Seed, true
	}
	c.Net = memnet.New(nc)
	for range opts.Nodes {
		c.Add()
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	return c
}

func (c *Cluster) start(x id.ID, store *kv.MemStore, genesis bool, boot []transport.Peer) *Member {
	c.T.Helper()
	cfg := node.DefaultConfig()
	cfg.Ring = ring.LocalConfig()
	cfg.Transport = c.Net.Transport(x)
	cfg.Bootstrap = boot
	n, err := node.Start(context.Background(), cfg)
	if err != nil {
		c.T.Fatalf("seed %d: start node: %v", c.Seed, err)
	}
	k, err := kv.New(n, c.KVConfig(store, genesis))
	if err != nil {
		c.T.Fatalf("seed %d: start kv: %v", c.Seed, err)
	}
	m := &Member{ID: x, Node: n, KV: k, Store: store}
	if c.opts.Attach != nil {
		m.Extra, m.close = c.opts.Attach(m)
	}
	return m
}

// Add starts a new member that joins through the first one.
func (c *Cluster) Add() *Member {
	var x id.ID
	c.mu.Lock()
	c.Rng.Read(x[:])
	genesis := len(c.members) == 0
	var boot []transport.Peer
	if !genesis {
		boot = []transport.Peer{c.boot}
	}
	c.mu.Unlock()
	m := c.start(x, kv.NewMemStore(), genesis, boot)
	c.mu.Lock()
	if genesis {
		c.boot = m.Node.Self()
	}
	c.members[x] = m
	c.mu.Unlock()
	return m
}

// Live lists the members that are up, in ID order.
func (c *Cluster) Live() []*Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.liveLocked()
}

func (c *Cluster) liveLocked() []*Member {
	var out []*Member
	for _, m := range c.members {
		if !m.Down {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID.Less(out[j].ID) })
	return out
}

// All lists every member, up or down, in ID order.
func (c *Cluster) All() []*Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Member, 0, len(c.members))
	for _, m := range c.members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID.Less(out[j].ID) })
	return out
}

// Any is a live member chosen with the seeded source.
func (c *Cluster) Any() *Member {
	l := c.Live()
	c.mu.Lock()
	defer c.mu.Unlock()
	return l[c.Rng.Intn(len(l))]
}

// Owner is the live member closest to key by the global view.
func (c *Cluster) Owner(key id.ID) *Member {
	live := c.Live()
	ids := make([]id.ID, len(live))
	for i, m := range live {
		ids[i] = m.ID
	}
	return live[id.Closest(key, ids)]
}

// Crash stops a member without warning; its store survives.
func (c *Cluster) Crash(m *Member) {
	c.Net.Crash(m.ID)
	c.mu.Lock()
	m.Down = true
	c.mu.Unlock()
	if m.close != nil {
		m.close()
	}
	m.KV.Close()
	m.Node.Close()
	c.mu.Lock()
	c.regressions += m.KV.Stats().VersionRegressions
	c.mu.Unlock()
}

// Restart brings a crashed member back with its store.
func (c *Cluster) Restart(m *Member) {
	c.Net.Restart(m.ID, nil)
	c.mu.Lock()
	var boot []transport.Peer
	for _, o := range c.liveLocked() {
		// Join through a member this one can reach (not one cut off).
		if c.Net.Reachable(m.ID, o.ID) {
			boot = append(boot, o.Node.Self())
			break
		}
	}
	c.mu.Unlock()
	nm := c.start(m.ID, m.Store, false, boot)
	c.mu.Lock()
	*m = *nm
	c.mu.Unlock()
}

// Close stops every live member, and fails the test if any member in any
// incarnation saw a committed version replaced by a lower one (the store's
// tripwire, kv.Stats.VersionRegressions): a lost write, even one no check
// read back.
func (c *Cluster) Close() {
	c.mu.Lock()
	total := c.regressions
	c.mu.Unlock()
	for _, m := range c.Live() {
		if m.close != nil {
			m.close()
		}
		m.KV.Close()
		m.Node.Close()
		total += m.KV.Stats().VersionRegressions
	}
	if total > 0 {
		c.T.Errorf("seed %d: %d committed versions replaced by lower ones (kv: \"invariant broken\" in the log): acknowledged writes may be lost", c.Seed, total)
	}
}

// Records describes, for a failure report, what every member's store holds
// for key (its acceptor record: promised and accepted ballots, version,
// configuration) and the member's persisted metadata (synchronised spans,
// past replica sets), read from the stores directly, down members too.
func (c *Cluster) Records(key string) string {
	var b strings.Builder
	kid := kv.KeyID(key)
	fmt.Fprintf(&b, "records of %q (ID %s):\n", key, kid.Short())
	for _, m := range c.All() {
		recs, meta, _ := m.Store.Load()
		state := "up"
		if m.Down {
			state = "down"
		}
		fmt.Fprintf(&b, "  %s (%s): ", m.ID.Short(), state)
		found := false
		for _, r := range recs {
			if r.Key != key {
				continue
			}
			found = true
			cfg := make([]string, len(r.State.Cfg))
			for i, p := range r.State.Cfg {
				cfg[i] = p.ID.Short()
			}
			fmt.Fprintf(&b, "promised %d/%s accepted %d/%s version %d deleted %v committed %v cfg %v prev-same %v",
				r.Promised.Round, r.Promised.Node.Short(), r.Accepted.Round, r.Accepted.Node.Short(),
				r.State.Version, r.State.Deleted, r.Committed, cfg, r.State.PrevSame)
		}
		if !found {
			b.WriteString("no record")
		}
		mj, _ := json.Marshal(meta)
		fmt.Fprintf(&b, "\n    meta %s\n", mj)
	}
	return b.String()
}
