package kv

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/id"
)

// TestPromiseSurvivesHandover: an owner's first round for a new key wins
// the promise of one other replica, then the owner crashes before its
// accept leaves (its own acceptor has accepted the empty state under that
// ballot). The key's range passes to the owner's predecessor, whose node
// ID is lower, so its first ballot of the same round number is lower than
// the dead owner's. The new owner must not write the key under a ballot
// below the promise it inherits: when the old owner comes back, its empty
// state at the higher ballot would otherwise pass for the newest, spread
// by anti-entropy over the acknowledged write and be adopted by the next
// round. (Found by the task queue's lossy fault test, seed 602: a task and
// its effect acknowledged, then gone from every replica.)
func TestPromiseSurvivesHandover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 7
		c := newCluster(t, seed, 5)
		defer c.close()
		live := c.live() // by ID
		ids := make([]id.ID, len(live))
		for i, m := range live {
			ids[i] = m.id
		}
		// A key whose next owner, once its owner is gone, is the owner's
		// predecessor on the ring with a lower ID (no wrap-around).
		key, oi := "", -1
		for i := range 10000 {
			k := fmt.Sprintf("handover-%d", i)
			o := id.Closest(KeyID(k), ids)
			rest := slices.Delete(slices.Clone(ids), o, o+1)
			if o > 0 && rest[id.Closest(KeyID(k), rest)] == ids[o-1] {
				key, oi = k, o
				break
			}
		}
		if key == "" {
			t.Fatalf("seed %d: no key whose next owner is its owner's predecessor", seed)
		}
		own, next := live[oi], live[oi-1]
		ctx, cancel := ctxT(5 * time.Minute)
		defer cancel()
		pl, err := own.kv.Placement(ctx, key)
		if err != nil || len(pl.Replicas) != 3 || pl.Replicas[0].ID != own.id {
			t.Fatalf("seed %d: placement of %q: %+v, %v; want 3 replicas led by %s", seed, key, pl, err, own.id.Short())
		}
		// The owner's prepare reaches itself and one replica: the other's
		// link is cut, so the round waits for it until RoundTimeout. The
		// owner's network fails meanwhile; the round then ends with two
		// promises and the owner's own acceptor takes the empty state.
		c.net.Cut(own.id, pl.Replicas[1].ID)
		failed := make(chan error, 1)
		go func() {
			_, err := own.kv.Put(ctx, key, []byte("lost with its owner"))
			failed <- err
		}()
		// The uncut replica's promise is on its disk within a few ms; 50 ms
		// (memnet's latency is at most 3 ms) lets its answer reach the owner.
		// Whether it did is checked below: the owner's acceptor must then
		// hold the empty state.
		c.mu.Lock()
		promiser := c.members[pl.Replicas[2].ID]
		c.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
		// The network goes first: the round ends (RoundTimeout) before the
		// process does, as a dying process's last steps would.
		c.net.Crash(own.id)
		roundEnded := func() bool { r, ok := stored(own, key); return ok && !r.Accepted.IsZero() }
		for i := 0; i < 20 && !roundEnded(); i++ {
			time.Sleep(kvConfig(nil, false).RoundTimeout / 10)
		}
		c.crash(own)
		c.net.Uncut(own.id, pl.Replicas[1].ID)
		if err := <-failed; err == nil {
			t.Fatalf("seed %d: the put at the crashed owner %s succeeded", seed, own.id.Short())
		}
		// The scenario's premise, without which the test would pass for
		// nothing: the owner's acceptor holds the empty state under its
		// ballot, and the uncut replica promised that ballot.
		ro, _ := stored(own, key)
		rp, _ := stored(promiser, key)
		if ro.Accepted.IsZero() || ro.State.Version != 0 || ro.Accepted.Node != own.id || rp.Promised != ro.Accepted {
			t.Fatalf("seed %d: premise not reached: owner %s holds accepted %+v version %d, replica %s promised %+v", seed, own.id.Short(), ro.Accepted, ro.State.Version, promiser.id.Short(), rp.Promised)
		}

		// The next owner takes the range over; a write is acknowledged.
		c.waitSynchronised("after the crash", time.Minute)
		var ver uint64
		for try := 0; ; try++ {
			ver, err = next.kv.Put(ctx, key, []byte("acknowledged"))
			if err == nil {
				break
			}
			if !errors.Is(err, ErrUnavailable) || try == 20 {
				t.Fatalf("seed %d: put %q through the next owner: %v", seed, key, err)
			}
			time.Sleep(500 * time.Millisecond)
		}

		// The old owner comes back; anti-entropy runs; the write is there.
		c.restart(own)
		c.waitSynchronised("after the restart", time.Minute)
		time.Sleep(3 * kvConfig(nil, false).SyncInterval)
		for _, m := range c.live() {
			it, err := m.kv.Get(ctx, key)
			if err != nil || string(it.Value) != "acknowledged" || it.Version != ver {
				t.Fatalf("seed %d: get %q through %s after the old owner %s came back: %q version %d, %v; want %q version %d (acknowledged through %s)",
					seed, key, m.id.Short(), own.id.Short(), it.Value, it.Version, err, "acknowledged", ver, next.id.Short())
			}
		}
	})
}

// stored is the record m's store holds for key (read from the store, which
// outlives a crash), if any.
func stored(m *member, key string) (Record, bool) {
	recs, _, _ := m.store.Load()
	for _, r := range recs {
		if r.Key == key {
			return r, true
		}
	}
	return Record{}, false
}
