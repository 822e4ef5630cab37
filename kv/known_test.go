package kv

import (
	"errors"
	"flag"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/id"
)

var knownFlag = flag.Bool("kv.known", false, "run the reproductions of known, unfixed bugs (they fail)")

// TestKnownLoneReplica reproduces an open bug (docs/kv.md, "Known limits"):
// a key is written while the link between its owner and one replica is cut,
// so that replica (a) misses it; then the ring splits with a on one side
// together with nodes that are not the key's replicas. That side rebuilds
// the key's replica set from a and those nodes; they count a (which holds
// the range) and a node whose coverage of the range is older than the key
// (it left the range's replica set when the ring formed, and still reports
// it for a grace period) as a majority of sources, and serve the key as
// absent while the other side holds it: an acknowledged write is invisible.
// It fails on seed 1. Run it with -kv.known.
func TestKnownLoneReplica(t *testing.T) {
	if !*knownFlag {
		t.Skip("reproduces an open bug (docs/kv.md, Known limits); run with -kv.known")
	}
	const seed = 1
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, seed, 7)
		defer c.close()
		ctx, cancel := ctxT(5 * time.Second)
		defer cancel()
		const key = "lone"
		p, err := c.any().kv.Placement(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		owner := p.Owner.ID
		var others []id.ID
		for _, r := range p.Replicas {
			if r.ID != owner {
				others = append(others, r.ID)
			}
		}
		if len(others) != 2 {
			t.Fatalf("seed %d: replicas %+v", seed, p)
		}
		a, b := others[0], others[1]
		c.net.Cut(owner, a)
		v, err := c.members[owner].kv.Put(ctx, key, []byte("v1"))
		if err != nil {
			t.Fatalf("seed %d: put with one replica cut off: %v", seed, err)
		}
		side := []id.ID{a}
		for _, m := range c.live() {
			if m.id != owner && m.id != a && m.id != b && len(side) < 4 {
				side = append(side, m.id)
			}
		}
		c.net.Partition(side)
		c.net.Uncut(owner, a)
		time.Sleep(40 * time.Second)
		gctx, gcancel := ctxT(5 * time.Second)
		_, err = c.members[a].kv.Get(gctx, key)
		gcancel()
		if errors.Is(err, ErrNotFound) {
			t.Errorf("seed %d: %q was acknowledged at v%d, but the side of the split holding replica %s says it is absent", seed, key, v, a.Short())
		}
		c.net.Heal()
	})
}
