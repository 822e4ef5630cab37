package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-p2p/shoal/kv"
)

// kvConfig is the store's configuration on demo nodes: replicas in memory,
// anti-entropy fast enough for a ring that loses two nodes in seconds.
func kvConfig(genesis bool) kv.Config {
	c := kv.DefaultConfig()
	c.Store = kv.NewMemStore()
	c.Genesis = genesis
	c.SyncInterval = time.Second
	c.RoundTimeout = time.Second
	return c
}

// joinGap spaces the joins of demo nodes, so each one's store has
// synchronised its ranges before the next node joins.
const joinGap = 300 * time.Millisecond

// counterKey is the key the demo increments concurrently.
const counterKey = "demo/counter"

// kvResult is what the key-value step reports in the summary.
type kvResult struct {
	acked, unknown, final int
	failover              time.Duration // from the kill to the next acknowledged increment
}

// kvStep is step 6: store the sample keys and read them back from other
// nodes, then increment a counter concurrently from several nodes with
// kv.Update while its owner is killed, and check that no acknowledged
// increment was lost and none was applied twice.
func (r *Ring) kvStep(ctx context.Context, out io.Writer, keys []string, fail func(string, ...any)) (kvResult, bool) {
	var res kvResult
	live := r.live()
	if len(live) < 3 {
		fmt.Fprintf(out, "6. Key-value store: skipped, the ring has too few live nodes left for a majority.\n\n")
		return res, false
	}
	fmt.Fprintf(out, "6. Key-value store (each key on its owner and 2 successors; a write is acknowledged once 2 of the 3 have it):\n")
	// The topic's root was just killed: the replicas that took over its
	// ranges copy them from the survivors first, and until then writes there
	// answer "unavailable". Wait for that, boundedly, and say how long.
	r.waitStores(ctx, out, fail, "after the topic root's crash")
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stored := 0
	for i, k := range keys {
		writer, reader := live[i%len(live)], live[(i+1)%len(live)]
		v, err := writer.kv.Put(octx, k, []byte("hello, "+k))
		if err != nil {
			fail("put %q from node %s: %v", k, writer.n.ID().Short(), err)
			continue
		}
		it, err := reader.kv.Get(octx, k)
		if err != nil || string(it.Value) != "hello, "+k || it.Version != v {
			fail("get %q from node %s after put v%d: %+v %v", k, reader.n.ID().Short(), v, it, err)
			continue
		}
		stored++
	}
	if p, err := live[0].kv.Placement(octx, keys[0]); err == nil && len(p.Replicas) > 0 {
		ids := ""
		for _, q := range p.Replicas {
			ids += " " + q.ID.Short()
		}
		fmt.Fprintf(out, "   stored %d keys, each read back from another node; %q lives on%s (owner first)\n", stored, keys[0], ids)
	} else {
		fmt.Fprintf(out, "   stored %d keys, each read back from another node\n", stored)
	}

	owner := r.Owner(kv.KeyID(counterKey))
	var clients []*member
	for _, m := range live {
		if m != owner && len(clients) < 4 {
			clients = append(clients, m)
		}
	}
	const each = 15
	total := len(clients) * each
	fmt.Fprintf(out, "   %d nodes each increment %q %d times with Update (read, add one, compare-and-set on the version read); its owner is node %s\n",
		len(clients), counterKey, each, owner.n.ID().Short())

	var acked, unknown, done atomic.Int64
	var killedAt atomic.Int64 // unix nanos; 0 until the owner is killed
	var firstAfter atomic.Int64
	var errMu sync.Mutex
	var firstErr error
	killed := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func(c *member) {
			defer wg.Done()
			for i := 0; i < each && ctx.Err() == nil; i++ {
				if i > 0 {
					time.Sleep(time.Duration(5+rand.IntN(20)) * time.Millisecond) // a client's think time
				}
				if done.Load() >= int64(total/3) { // let the kill land mid-way
					<-killed
				}
				start := time.Now().UnixNano()
				uctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := c.kv.Update(uctx, counterKey, increment)
				cancel()
				done.Add(1)
				if err != nil {
					unknown.Add(1) // it may or may not have been applied
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
					continue
				}
				acked.Add(1)
				if k := killedAt.Load(); k != 0 && start >= k {
					firstAfter.CompareAndSwap(0, time.Now().UnixNano())
				}
			}
		}(c)
	}
	for done.Load() < int64(total/3) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Fprintf(out, "   after %d increments: killing node %s, the owner of %q, without warning…\n", done.Load(), owner.n.ID().Short(), counterKey)
	killedAt.Store(time.Now().UnixNano())
	r.Kill(owner)
	close(killed)
	wg.Wait()

	res.acked, res.unknown = int(acked.Load()), int(unknown.Load())
	if f := firstAfter.Load(); f != 0 {
		res.failover = time.Duration(f - killedAt.Load())
	}
	// The final count, by a linearizable read (retried while the ring
	// settles).
	heir := r.Owner(kv.KeyID(counterKey))
	reader := r.live()[0]
	var final int
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		var it kv.Item
		it, err = reader.kv.Get(rctx, counterKey)
		cancel()
		if err == nil {
			final, err = strconv.Atoi(string(it.Value))
		}
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		fail("reading %q after the increments: %v", counterKey, err)
		fmt.Fprintln(out)
		return res, false
	}
	res.final = final
	if res.unknown > 0 {
		fmt.Fprintf(out, "   %d increments acknowledged, %d failed (these may or may not have been applied; first error: %v)\n", res.acked, res.unknown, firstErr)
	} else {
		fmt.Fprintf(out, "   %d increments acknowledged, none failed\n", res.acked)
	}
	if res.failover > 0 {
		fmt.Fprintf(out, "   the first increment begun after the kill was acknowledged %.2fs after it, through the new owner %s\n", res.failover.Seconds(), heir.n.ID().Short())
	}
	switch {
	case final < res.acked:
		fail("%q is %d but %d increments were acknowledged: acknowledged writes were lost", counterKey, final, res.acked)
	case final > res.acked+res.unknown:
		fail("%q is %d but only %d increments were attempted (%d acknowledged, %d failed): an increment was applied twice", counterKey, final, res.acked+res.unknown, res.acked, res.unknown)
	case res.unknown == 0:
		fmt.Fprintf(out, "   read from node %s: %q = %d, exactly the number of acknowledged increments  ok\n\n", reader.n.ID().Short(), counterKey, final)
	default:
		fmt.Fprintf(out, "   read from node %s: %q = %d: every acknowledged increment is there (%d), and %d of the %d failed ones took effect  ok\n\n",
			reader.n.ID().Short(), counterKey, final, res.acked, final-res.acked, res.unknown)
	}
	return res, true
}

// increment is the Update function: the counter plus one (absent = 0).
func increment(old []byte, exists bool) ([]byte, error) {
	n := 0
	if exists {
		var err error
		if n, err = strconv.Atoi(string(old)); err != nil {
			return nil, errors.New("the counter is not a number: " + err.Error())
		}
	}
	return []byte(strconv.Itoa(n + 1)), nil
}
