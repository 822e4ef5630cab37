package kv

import (
	"context"
	"log/slog"
	"math/rand"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/transport"
	"github.com/shoal-p2p/shoal/transport/memnet"
)

// member is one node of a test ring: the node, its store (kept across a
// simulated crash, like a disk) and the KV on top.
type member struct {
	id    id.ID
	n     *node.Node
	kv    *KV
	store *MemStore
	down  bool
}

type cluster struct {
	mu      sync.Mutex
	t       *testing.T
	seed    int64
	net     *memnet.Network
	rng     *rand.Rand
	members map[id.ID]*member
	boot    transport.Peer
	// regressions counts Stats.VersionRegressions of members' past
	// incarnations (crashed and restarted); close checks the total.
	regressions uint64
}

func kvConfig(store Store, genesis bool) Config {
	c := DefaultConfig()
	c.Store = store
	c.Genesis = genesis
	c.SyncInterval = 2 * time.Second
	c.RoundTimeout = 500 * time.Millisecond
	c.Retry.PerAttempt = 400 * time.Millisecond
	c.Retry.Overall = 4 * time.Second
	return c
}

func newCluster(t *testing.T, seed int64, n int) *cluster {
	t.Helper()
	c := &cluster{t: t, seed: seed, rng: rand.New(rand.NewSource(seed)), members: map[id.ID]*member{}}
	c.net = memnet.New(memnet.Config{Seed: seed, Realtime: true, MinLatency: time.Millisecond, MaxLatency: 3 * time.Millisecond})
	for i := 0; i < n; i++ {
		c.add()
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // virtual: leaf sets settle, ranges synchronise
	return c
}

func (c *cluster) start(x id.ID, store *MemStore, genesis bool, boot []transport.Peer) *member {
	c.t.Helper()
	cfg := node.DefaultConfig()
	cfg.Ring = ring.LocalConfig()
	cfg.Transport = c.net.Transport(x)
	cfg.Bootstrap = boot
	n, err := node.Start(context.Background(), cfg)
	if err != nil {
		c.t.Fatalf("seed %d: start node: %v", c.seed, err)
	}
	kc := kvConfig(store, genesis)
	kc.Logger = traceLogger
	if kc.Logger == nil {
		kc.Logger = errorLogger
	}
	k, err := New(n, kc)
	if err != nil {
		c.t.Fatalf("seed %d: start kv: %v", c.seed, err)
	}
	return &member{id: x, n: n, kv: k, store: store}
}

func (c *cluster) add() *member {
	var x id.ID
	c.rng.Read(x[:])
	var boot []transport.Peer
	genesis := len(c.members) == 0
	if !genesis {
		boot = []transport.Peer{c.boot}
	}
	m := c.start(x, NewMemStore(), genesis, boot)
	if genesis {
		c.boot = m.n.Self()
	}
	c.members[x] = m
	return m
}

func (c *cluster) live() []*member {
	var out []*member
	for _, m := range c.members {
		if !m.down {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id.Less(out[j].id) })
	return out
}

func (c *cluster) any() *member {
	l := c.live()
	return l[c.rng.Intn(len(l))]
}

// crash stops a node without warning; its store survives.
func (c *cluster) crash(m *member) {
	c.net.Crash(m.id)
	c.mu.Lock()
	m.down = true
	c.mu.Unlock()
	m.kv.Close()
	m.n.Close()
	c.mu.Lock()
	c.regressions += m.kv.Stats().VersionRegressions
	c.mu.Unlock()
}

// restart brings a crashed node back with its store, joining through any
// live node.
func (c *cluster) restart(m *member) {
	var boot []transport.Peer
	c.mu.Lock()
	live := c.live()
	c.mu.Unlock()
	for _, o := range live {
		boot = append(boot, o.n.Self())
		break
	}
	c.restartVia(m, boot)
}

// restartVia brings a crashed node back with its store, joining through
// boot.
func (c *cluster) restartVia(m *member, boot []transport.Peer) {
	c.net.Restart(m.id, nil)
	nm := c.start(m.id, m.store, false, boot)
	c.mu.Lock()
	*m = *nm
	c.mu.Unlock()
}

// close stops every live member and fails the test if any member, in any
// incarnation, saw a committed version replaced by a lower one (the store's
// tripwire, Stats.VersionRegressions): that is a lost write even when no
// client read the key afterwards.
func (c *cluster) close() {
	total := c.regressions
	for _, m := range c.members {
		if !m.down {
			m.kv.Close()
			m.n.Close()
			total += m.kv.Stats().VersionRegressions
		}
	}
	if total > 0 {
		c.t.Errorf("seed %d: %d committed versions replaced by lower ones (kv: \"invariant broken\" in the log): acknowledged writes may be lost", c.seed, total)
	}
}

// owner of a key by the global view.
func (c *cluster) owner(key string) *member {
	live := c.live()
	ids := make([]id.ID, len(live))
	for i, m := range live {
		ids[i] = m.id
	}
	return live[id.Closest(KeyID(key), ids)]
}

// waitSynchronised waits (virtual time, polling every 100 ms) until every
// live member reports its ranges synchronised, and fails the test with
// each member's status if that takes longer than within.
func (c *cluster) waitSynchronised(what string, within time.Duration) {
	c.t.Helper()
	for range within / (100 * time.Millisecond) {
		all := true
		for _, m := range c.live() {
			all = all && m.kv.Synchronised()
		}
		if all {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, m := range c.live() {
		c.t.Logf("node %s: synchronised %v", m.id.Short(), m.kv.Synchronised())
	}
	c.t.Fatalf("seed %d: %s: not every node synchronised within %v", c.seed, what, within)
}

func ctxT(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

func (c *cluster) ownerLocked(key string) *member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.owner(key)
}

func (c *cluster) addLocked() *member {
	var x id.ID
	c.mu.Lock()
	c.rng.Read(x[:])
	boot := []transport.Peer{c.boot}
	c.mu.Unlock()
	m := c.start(x, NewMemStore(), false, boot)
	c.mu.Lock()
	c.members[x] = m
	c.mu.Unlock()
	return m
}

// traceLogger receives leader decisions when KV_TRACE names a file.
var traceLogger *slog.Logger

// errorLogger prints the store's errors (the tripwire's "invariant broken"
// among them) to stderr, where a failing run shows them; a passing run logs
// none.
var errorLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

func init() {
	if p := os.Getenv("KV_TRACE"); p != "" {
		f, err := os.Create(p)
		if err == nil {
			traceLogger = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	}
}
