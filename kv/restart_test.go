package kv

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/transport"
	"github.com/shoal-p2p/shoal/transport/memnet"
)

// restartRing is a ring whose every node can be stopped and started again
// from its store, as `shoal node --data DIR` is.
type restartRing struct {
	t       *testing.T
	seed    int64
	net     *memnet.Network
	ids     []id.ID
	open    func(i int) Store // the store of node i: a new one, or the same again
	nodes   []*node.Node
	kvs     []*KV
	up      bool // started and not stopped since
	joinGap time.Duration
}

func (r *restartRing) startAll() {
	r.t.Helper()
	r.nodes, r.kvs = nil, nil
	r.up = true
	var boot []transport.Peer
	for i, x := range r.ids {
		r.net.Restart(x, nil)
		cfg := node.DefaultConfig()
		cfg.Ring = ring.LocalConfig()
		cfg.Transport = r.net.Transport(x)
		cfg.Bootstrap = boot
		n, err := node.Start(context.Background(), cfg)
		if err != nil {
			r.t.Fatalf("seed %d: start node %d: %v", r.seed, i, err)
		}
		// Like `shoal node`: the node started without bootstrap nodes is
		// the genesis node, every time (the store ignores it once it holds
		// data).
		k, err := New(n, kvConfig(r.open(i), i == 0))
		if err != nil {
			r.t.Fatalf("seed %d: start kv %d: %v", r.seed, i, err)
		}
		r.nodes, r.kvs = append(r.nodes, n), append(r.kvs, k)
		if i == 0 {
			boot = []transport.Peer{n.Self()}
		}
		time.Sleep(r.joinGap)
	}
	time.Sleep(3 * time.Second) // virtual: leaf sets settle, ranges synchronise
}

// stopAll stops every node: all at once without warning (crash), or one
// after the other, each leaving the ring.
func (r *restartRing) stopAll(crash bool) {
	if !r.up {
		return
	}
	r.up = false
	if crash {
		for _, x := range r.ids {
			r.net.Crash(x)
		}
	}
	for i := range r.nodes {
		if err := r.kvs[i].Close(); err != nil {
			r.t.Fatalf("seed %d: close kv %d: %v", r.seed, i, err)
		}
		r.nodes[i].Close()
	}
}

func (r *restartRing) any(rng *rand.Rand) *KV { return r.kvs[rng.Intn(len(r.kvs))] }

// want is a key's last acknowledged state.
type want struct {
	exists  bool
	value   string
	version uint64
}

// TestRestartWholeRing: every node of a ring stops and starts again from
// its store; every key reads back (linearizably) as last written, and
// versions continue from there.
func TestRestartWholeRing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		disk  bool
		crash bool
		gap   time.Duration // between restarts
	}{
		{"memstore/crash", false, true, 300 * time.Millisecond},
		{"memstore/leave", false, false, 300 * time.Millisecond},
		{"disk/crash", true, true, 300 * time.Millisecond},
		{"disk/leave", true, false, 300 * time.Millisecond},
		{"disk/crash/all-at-once", true, true, 0},
	} {
		for _, seed := range []int64{21, 22} {
			t.Run(fmt.Sprintf("%s/seed-%d", tc.name, seed), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) { testRestartWholeRing(t, seed, tc.disk, tc.crash, tc.gap) })
			})
		}
	}
}

func testRestartWholeRing(t *testing.T, seed int64, disk, crash bool, restartGap time.Duration) {
	const nodes, keys = 5, 24
	rng := rand.New(rand.NewSource(seed))
	// The first start spaces joins: nodes joining faster than their stores
	// synchronise leave ranges no one may serve (TestQuickJoins).
	r := &restartRing{t: t, seed: seed, joinGap: 300 * time.Millisecond,
		net: memnet.New(memnet.Config{Seed: seed, Realtime: true, MinLatency: time.Millisecond, MaxLatency: 3 * time.Millisecond})}
	mem := make([]*MemStore, nodes)
	dirs := make([]string, nodes)
	for i := 0; i < nodes; i++ {
		var x id.ID
		rng.Read(x[:])
		r.ids = append(r.ids, x)
		mem[i] = NewMemStore()
		dirs[i] = t.TempDir()
	}
	r.open = func(i int) Store {
		if !disk {
			return mem[i]
		}
		s, err := OpenLog(dirs[i], LogConfig{})
		if err != nil {
			t.Fatalf("seed %d: open the store of node %d: %v", seed, i, err)
		}
		return s
	}
	defer r.stopAll(false) // after a failure too: a synctest bubble must end with no goroutines left
	r.startAll()

	ctx, cancel := ctxT(5 * time.Minute)
	defer cancel()
	wants := map[string]want{}
	for i := 0; i < keys; i++ {
		key := fmt.Sprintf("key-%d", i)
		var w want
		for j := 0; j <= i%3; j++ {
			val := fmt.Sprintf("%s-v%d", key, j)
			var opt []WriteOption
			if w.version > 0 {
				opt = append(opt, IfVersion(w.version))
			}
			v, err := r.any(rng).Put(ctx, key, []byte(val), opt...)
			if err != nil {
				t.Fatalf("seed %d: put %s: %v", seed, key, err)
			}
			w = want{exists: true, value: val, version: v}
		}
		if i%5 == 4 {
			v, err := r.any(rng).Delete(ctx, key, IfVersion(w.version))
			if err != nil {
				t.Fatalf("seed %d: delete %s: %v", seed, key, err)
			}
			w = want{version: v}
		}
		wants[key] = w
	}

	r.stopAll(crash)
	time.Sleep(5 * time.Second) // virtual: everything is down for a while
	r.joinGap = restartGap
	r.startAll()

	// Every key reads back as last written. A read may be refused while
	// the restarted nodes synchronise (retried); one that answers must be
	// right.
	for i := 0; i < keys; i++ {
		key := fmt.Sprintf("key-%d", i)
		w := wants[key]
		deadline := time.Now().Add(30 * time.Second)
		for {
			it, err := r.any(rng).Get(ctx, key)
			if err == nil || errors.Is(err, ErrNotFound) {
				got := want{exists: err == nil, value: string(it.Value), version: it.Version}
				if got != w {
					t.Fatalf("seed %d: after restarting every node, %s reads %+v, want %+v", seed, key, got, w)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("seed %d: after restarting every node, %s cannot be read 30s later: %v", seed, key, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// Versions continue where they were.
	for i := 0; i < keys; i += 5 {
		key := fmt.Sprintf("key-%d", i)
		w := wants[key]
		opt := IfAbsent()
		if w.exists {
			opt = IfVersion(w.version)
		}
		v, err := r.any(rng).Put(ctx, key, []byte("after"), opt)
		if err != nil || v != w.version+1 {
			t.Fatalf("seed %d: write to %s after the restart: v%d %v; want v%d", seed, key, v, err, w.version+1)
		}
	}
	r.stopAll(false)
}
