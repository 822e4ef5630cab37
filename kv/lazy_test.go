package kv

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// TestSilentReliedReplica: of a write's replicas, the owner relies on just
// enough for a majority and sends the rest a lazy accept, whose write may
// wait a few milliseconds to share a sync (lazyTargets). When a relied
// replica goes silent without a word (its link from the owner cut, so no
// error comes back either), the write must complete through the lazy one
// in milliseconds, not after the round's per-attempt timeout.
func TestSilentReliedReplica(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 6
		c := newCluster(t, seed, 5)
		defer c.close()
		// roundLazy's calls try each replica for a third of the round.
		perAttempt := kvConfig(nil, false).RoundTimeout / 3
		ctx, cancel := ctxT(5 * time.Minute) // virtual: 4 keys × 2 cuts × suspectFor
		defer cancel()
		for round := range 4 {
			key := fmt.Sprintf("silent-%d", round)
			if _, err := c.any().kv.Put(ctx, key, []byte("first")); err != nil {
				t.Fatalf("seed %d: put %q: %v", seed, key, err)
			}
			own := c.owner(key)
			pl, err := own.kv.Placement(ctx, key)
			if err != nil {
				t.Fatalf("seed %d: placement of %q: %v", seed, key, err)
			}
			if len(pl.Replicas) != 3 || pl.Replicas[0].ID != own.id {
				t.Fatalf("seed %d: placement of %q: %+v, want 3 replicas led by %s", seed, key, pl, own.id.Short())
			}
			// Cut the owner from each other replica in turn: one of them is
			// the relied one (which, depends on the key).
			for _, x := range pl.Replicas[1:] {
				c.net.Cut(own.id, x.ID)
				start := time.Now()
				_, err := own.kv.Put(ctx, key, []byte("cut from "+x.ID.Short()))
				took := time.Since(start)
				c.net.Uncut(own.id, x.ID)
				if err != nil {
					t.Fatalf("seed %d: put %q with the owner cut from %s: %v", seed, key, x.ID.Short(), err)
				}
				if took >= perAttempt {
					t.Fatalf("seed %d: put %q with the owner cut from %s took %v: it waited for the silent replica (per-attempt timeout %v) instead of counting the lazy one's vote", seed, key, x.ID.Short(), took, perAttempt)
				}
				time.Sleep(suspectFor + time.Second) // the owner forgets its suspicion
			}
		}
	})
}
