package kv

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
)

// TestSynchronised: KV.Synchronised is true on every node of a settled
// ring, false on a node that joined nobody and holds no range (it can never
// copy one), and true again on every survivor once the ranges a crashed node
// held have been copied to their new replicas.
func TestSynchronised(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 7
		c := newCluster(t, seed, 5)
		defer c.close()
		c.waitSynchronised("settled ring", 20*time.Second)

		// A lone node that is not a ring's first: nothing to copy from.
		var x id.ID
		x[0] = 0x42
		lone := c.start(x, NewMemStore(), false, nil)
		defer lone.n.Close()
		defer lone.kv.Close()
		time.Sleep(3 * time.Second)
		if lone.kv.Synchronised() {
			t.Fatalf("a lone node that is not a ring's first reports its ranges synchronised")
		}

		// A crash moves the dead node's ranges to new replicas, which copy
		// them from the survivors.
		victim := c.owner("k")
		c.crash(victim)
		// Until every survivor's view has dropped the victim, "all
		// synchronised" would be about the ring before the crash.
		for i := 0; ; i++ {
			gone := true
			for _, m := range c.live() {
				v := m.n.View()
				for _, p := range append(append([]transport.Peer(nil), v.Left...), v.Right...) {
					gone = gone && p.ID != victim.id
				}
			}
			if gone {
				break
			}
			if i == 200 { // 20 s of ring time
				t.Fatalf("seed %d: survivors still list crashed node %s after 20s", seed, victim.id.Short())
			}
			time.Sleep(100 * time.Millisecond)
		}
		c.waitSynchronised("after a crash", 20*time.Second)
		ctx, cancel := ctxT(5 * time.Second)
		defer cancel()
		if _, err := c.any().kv.Put(ctx, "k", []byte("v")); err != nil {
			t.Fatalf("seed %d: every node synchronised, yet a write fails: %v", seed, err)
		}
	})
}
