package kv

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/kv/kvcheck"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/anishathalye/porcupine"
)

var linSeeds = flag.Int("kv.seeds", 6, "number of seeds for the linearizability tests")
var linSeed = flag.Int64("kv.seed", 0, "run only this seed")
var linSeedFrom = flag.Int64("kv.seedfrom", 0, "offset added to each test's first seed, to sweep seeds earlier runs did not cover")

// runOp performs one operation and classifies its outcome.
func runOp(ctx context.Context, k *KV, in kvcheck.Input) (kvcheck.Output, bool) {
	var out kvcheck.Output
	var err error
	switch in.Op {
	case "get":
		var it Item
		it, err = k.Get(ctx, in.Key)
		if err == nil {
			return kvcheck.Output{Exists: true, Value: string(it.Value), Version: it.Version}, true
		}
		if errors.Is(err, ErrNotFound) {
			return kvcheck.Output{Version: it.Version}, true
		}
		return out, false // a failed read has no effect: leave it out
	case "put":
		out.Version, err = k.Put(ctx, in.Key, []byte(in.Value))
	case "cas":
		out.Version, err = k.Put(ctx, in.Key, []byte(in.Value), IfVersion(in.Want))
	case "create":
		out.Version, err = k.Put(ctx, in.Key, []byte(in.Value), IfAbsent())
	case "del":
		out.Version, err = k.Delete(ctx, in.Key)
	case "casdel":
		out.Version, err = k.Delete(ctx, in.Key, IfVersion(in.Want))
	}
	var vm *VersionMismatchError
	switch {
	case err == nil:
		out.Exists = in.Op != "del" && in.Op != "casdel"
	case errors.As(err, &vm):
		out = kvcheck.Output{Mismatch: true, Version: vm.Have, Exists: vm.Exists}
	default:
		out = kvcheck.Output{Unknown: true}
	}
	return out, true
}

// ---- the workload -----------------------------------------------------------

type faultFn func(c *cluster, rec *kvcheck.Recorder)

func workload(t *testing.T, seed int64, nodes int, faults []faultFn) {
	workloadFresh(t, seed, nodes, 0, faults)
}

// workloadFresh is workload plus fresh clients that each create new keys
// one after another (create-only, then a read of it): every key they touch
// starts absent, so its first round is a prepare that no state's
// configuration guides, only the replicas' synchronisation.
func workloadFresh(t *testing.T, seed int64, nodes, fresh int, faults []faultFn) {
	var rec *kvcheck.Recorder
	synctest.Test(t, func(t *testing.T) {
		rec = runWorkload(t, seed, nodes, fresh, faults)
	})
	// Outside the bubble: the checker is CPU-bound, and its timeout must be
	// real time.
	checkHistory(t, seed, rec)
}

func runWorkload(t *testing.T, seed int64, nodes, fresh int, faults []faultFn) *kvcheck.Recorder {
	var result *kvcheck.Recorder
	func() {
		c := newCluster(t, seed, nodes)
		defer c.close()
		rec := &kvcheck.Recorder{Start: time.Now()}
		result = rec
		keys := []string{"x", "y", "z"}
		const clientsPerKey = 2
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var cmu sync.Mutex
		nextClient := 0
		newClient := func() int { cmu.Lock(); defer cmu.Unlock(); nextClient++; return nextClient }
		// nextLive is a live member to send a client's next operation
		// through, or false once the clients are told to stop.
		nextLive := func() (*member, bool) {
			for {
				select {
				case <-stop:
					return nil, false
				default:
				}
				if m := c.anyLive(); m != nil {
					return m, true
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		for ki, key := range keys {
			for ci := 0; ci < clientsPerKey; ci++ {
				wg.Add(1)
				go func(key string, seq int) {
					defer wg.Done()
					client := newClient()
					var lastVer uint64
					for n := 0; ; n++ {
						m, ok := nextLive()
						if !ok {
							return
						}
						in := kvcheck.Input{Key: key, Value: fmt.Sprintf("%s-%d-%d", key, seq, n)}
						switch (n + seq) % 6 {
						case 0, 3:
							in.Op = "get"
						case 1:
							in.Op = "put"
						case 2, 5:
							in.Op, in.Want = "cas", lastVer
						case 4:
							if n%4 == 0 {
								in.Op, in.Want = "casdel", lastVer
							} else {
								in.Op = "create"
							}
						}
						ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
						call := time.Now()
						out, keep := runOp(ctx, m.kv, in)
						ret := time.Now()
						cancel()
						if keep {
							rec.Add(client, in, call, ret, out)
						}
						if out.Unknown {
							// An unknown outcome: continue as a new client, after a
							// pause (every unknown write stays concurrent with all
							// later operations, which is what makes checking hard).
							client = newClient()
							time.Sleep(time.Second)
						} else if !out.Mismatch || in.Op != "get" {
							lastVer = out.Version
						}
						time.Sleep(time.Duration(5+c.rngInt(20)) * time.Millisecond)
					}
				}(key, ki*clientsPerKey+ci)
			}
		}
		var fmu sync.Mutex
		var freshKeys []string
		for fi := range fresh {
			wg.Add(1)
			go func() {
				defer wg.Done()
				client := newClient()
				for n := 0; ; n++ {
					m, ok := nextLive()
					if !ok {
						return
					}
					key := fmt.Sprintf("new-%d-%d", fi, n)
					fmu.Lock()
					freshKeys = append(freshKeys, key)
					fmu.Unlock()
					do := func(in kvcheck.Input) kvcheck.Output {
						ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
						defer cancel()
						call := time.Now()
						out, keep := runOp(ctx, m.kv, in)
						if keep {
							rec.Add(client, in, call, time.Now(), out)
						}
						if out.Unknown {
							client = newClient()
						}
						return out
					}
					// The create is retried while its outcome is unknown, as
					// an application would (the task queue's producers do):
					// a retry may reach the key's next owner.
					for try := 0; try < 4; try++ {
						if !do(kvcheck.Input{Key: key, Op: "create", Value: key}).Unknown {
							break
						}
						time.Sleep(300 * time.Millisecond)
						if m = c.anyLive(); m == nil {
							break
						}
					}
					if m != nil {
						do(kvcheck.Input{Key: key, Op: "get"})
					}
					time.Sleep(time.Duration(5+c.rngInt(20)) * time.Millisecond)
				}
			}()
		}
		for _, f := range faults {
			time.Sleep(2 * time.Second)
			f(c, rec)
		}
		time.Sleep(3 * time.Second)
		close(stop)
		wg.Wait()
		// Heal everything, let the ring repair, then read every key: the final
		// reads are part of the history, so a lost acknowledged write fails it.
		c.net.Heal()
		c.setLossy(0)
		time.Sleep(10 * time.Second)
		final := newClient()
		for _, key := range append(keys, freshKeys...) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			call := time.Now()
			out, keep := runOp(ctx, c.anyLive().kv, kvcheck.Input{Key: key, Op: "get"})
			ret := time.Now()
			cancel()
			if !keep {
				t.Fatalf("seed %d: final read of %s failed after healing", seed, key)
			}
			rec.Add(final, kvcheck.Input{Key: key, Op: "get"}, call, ret, out)
		}
	}()
	return result
}

func checkHistory(t *testing.T, seed int64, rec *kvcheck.Recorder) {
	t.Helper()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("shoal-kv-seed-%d", seed))
	res, files := kvcheck.Check(rec.Ops, 60*time.Second, dir)
	t.Logf("seed %d: %d operations (%d with known outcome): %v", seed, len(rec.Ops), kvcheck.Known(rec.Ops), res)
	if res != porcupine.Ok {
		for _, f := range files {
			t.Logf("saved %s", f)
		}
		t.Fatalf("seed %d: history is not linearizable (%v); replay with -kv.seed=%d", seed, res, seed)
	}
}

func (c *cluster) anyLive() *member {
	c.mu.Lock()
	defer c.mu.Unlock()
	var live []*member
	for _, m := range c.members {
		if !m.down && m.kv != nil {
			live = append(live, m)
		}
	}
	if len(live) == 0 {
		return nil
	}
	return live[c.rng.Intn(len(live))]
}

func (c *cluster) rngInt(n int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rng.Intn(n)
}

func seedsFor(t *testing.T, base int64) []int64 {
	if *linSeed != 0 {
		return []int64{*linSeed}
	}
	var out []int64
	for i := 0; i < *linSeeds; i++ {
		out = append(out, base+*linSeedFrom+int64(i))
	}
	return out
}

// ---- the faults ---------------------------------------------------------------

func crashOwner(key string) faultFn {
	return func(c *cluster, _ *kvcheck.Recorder) {
		m := c.ownerLocked(key)
		c.crash(m)
		time.Sleep(4 * time.Second)
		c.restart(m)
	}
}

func crashReplica(key string) faultFn {
	return func(c *cluster, _ *kvcheck.Recorder) {
		o := c.ownerLocked(key)
		rs, ok := o.kv.r.lay.replicaSet(KeyID(key))
		if !ok || len(rs) < 3 {
			return
		}
		m := c.members[rs[2].ID]
		c.crash(m)
		time.Sleep(3 * time.Second)
		c.restart(m)
	}
}

func isolateOwner(key string) faultFn {
	return func(c *cluster, _ *kvcheck.Recorder) {
		m := c.ownerLocked(key)
		var rest []id.ID
		for x, o := range c.members {
			if x != m.id && !o.down {
				rest = append(rest, x)
			}
		}
		c.net.Partition([]id.ID{m.id}, rest)
		time.Sleep(5 * time.Second) // longer than the failure timeout: others take over
		c.net.Heal()
	}
}

// pauseOwner stops the owner of key as SIGSTOP would, as far as anyone else
// can tell: for d nothing it sends leaves and nothing sent to it arrives;
// then it gets its whole backlog at once, and what it sent meanwhile (its
// accepts and answers, built on what it knew before) reaches the others
// late. Unlike a partition nothing is lost, so stale messages do arrive.
func pauseOwner(key string, d time.Duration) faultFn {
	return func(c *cluster, _ *kvcheck.Recorder) {
		m := c.ownerLocked(key)
		c.net.Pause(m.id)
		time.Sleep(d)
		c.net.Resume(m.id)
	}
}

// splitRing cuts the live nodes into two halves for 11 s (each side
// declares the other dead and rebuilds its replica sets from its own
// nodes); with crash, a node of the larger side also crashes for good 4 s
// in. Found a split brain in the sync rule for stuck ranges: a side that
// held none of a range's data vouched that its keys were absent.
func splitRing(crash bool) faultFn {
	return func(c *cluster, _ *kvcheck.Recorder) {
		c.mu.Lock()
		live := c.live()
		c.rng.Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] })
		var side []id.ID
		for _, m := range live[:len(live)/2] {
			side = append(side, m.id)
		}
		victim := live[len(live)-1]
		c.mu.Unlock()
		c.net.Partition(side)
		time.Sleep(4 * time.Second)
		if crash && victim.id != c.boot.ID {
			c.crash(victim)
		}
		time.Sleep(7 * time.Second)
		c.net.Heal()
	}
}

// cutThenSplit creates a key while the link between its owner and one of
// its replicas (a) is cut, so a misses the creation; then the ring splits
// for 12 s with a on the larger side, among nodes that are not the key's
// replicas. That side rebuilds the key's replica set around a; reads of the
// key there (recorded, as is one after healing) must not call it absent
// (bug 6 in docs/kv.md).
func cutThenSplit(key string) faultFn {
	return func(c *cluster, rec *kvcheck.Recorder) {
		ctx, cancel := ctxT(2 * time.Second)
		p, err := c.anyLive().kv.Placement(ctx, key)
		cancel()
		if err != nil || len(p.Replicas) < 3 {
			return
		}
		owner, a := p.Owner.ID, p.Replicas[1+c.rngInt(2)].ID
		replica := map[id.ID]bool{}
		for _, r := range p.Replicas {
			replica[r.ID] = true
		}
		do := func(m *member, in kvcheck.Input) {
			if m == nil || m.down {
				return
			}
			ctx, cancel := ctxT(3 * time.Second)
			call := time.Now()
			out, keep := runOp(ctx, m.kv, in)
			ret := time.Now()
			cancel()
			if keep {
				rec.Add(1000+c.rngInt(1<<20), in, call, ret, out)
			}
		}
		c.net.Cut(owner, a)
		do(c.members[owner], kvcheck.Input{Key: key, Op: "create", Value: key + "-1"})
		c.mu.Lock()
		side := []id.ID{a}
		live := c.live()
		c.rng.Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] })
		for _, m := range live {
			if !replica[m.id] && len(side) <= len(live)/2 {
				side = append(side, m.id)
			}
		}
		c.mu.Unlock()
		c.net.Partition(side)
		c.net.Uncut(owner, a)
		for range 3 {
			time.Sleep(4 * time.Second)
			do(c.members[side[c.rngInt(len(side))]], kvcheck.Input{Key: key, Op: "get"})
		}
		c.net.Heal()
		time.Sleep(3 * time.Second)
		do(c.members[a], kvcheck.Input{Key: key, Op: "get"})
	}
}

func joinLeave(c *cluster, _ *kvcheck.Recorder) {
	c.addLocked()
	time.Sleep(time.Second)
	m := c.anyLive()
	if m != nil && m.id != c.boot.ID {
		m.kv.Close()
		m.n.Close()
		c.mu.Lock()
		m.down = true
		c.regressions += m.kv.Stats().VersionRegressions
		c.mu.Unlock()
	}
}

// crashNetFirst crashes a random member the way a dying machine goes: its
// network first, the process up to 0.6 s later (rounds it had in flight end
// meanwhile, their own acceptor's part included); it restarts 4 s later.
func crashNetFirst(c *cluster, _ *kvcheck.Recorder) {
	m := c.anyLive()
	if m == nil {
		return
	}
	c.net.Crash(m.id)
	time.Sleep(time.Duration(c.rngInt(600)) * time.Millisecond)
	c.crash(m)
	time.Sleep(4 * time.Second)
	c.restart(m)
}

func lossyNetwork(c *cluster, _ *kvcheck.Recorder) {
	c.setLossy(0.05)
	time.Sleep(3 * time.Second)
	c.setLossy(0)
}

// setLossy sets memnet's loss and duplication probabilities both to p.
func (c *cluster) setLossy(p float64) {
	c.net.SetLoss(p)
	c.net.SetDuplicate(p)
}

func TestLinearizableOwnerCrash(t *testing.T) {
	for _, seed := range seedsFor(t, 100) {
		workload(t, seed, 5, []faultFn{crashOwner("x"), crashOwner("y")})
	}
}

func TestLinearizableReplicaCrash(t *testing.T) {
	for _, seed := range seedsFor(t, 200) {
		workload(t, seed, 5, []faultFn{crashReplica("x"), crashReplica("z")})
	}
}

func TestLinearizableIsolatedOwner(t *testing.T) {
	for _, seed := range seedsFor(t, 300) {
		workload(t, seed, 5, []faultFn{isolateOwner("x"), isolateOwner("y")})
	}
}

// TestLinearizablePausedOwner pauses an owner for longer than its read
// lease and the failure timeout (others take over while it sleeps; when it
// wakes it must neither serve a stale read nor have a write accepted), and
// for less than the lease (nobody takes over; its late accepts arrive).
func TestLinearizablePausedOwner(t *testing.T) {
	for _, seed := range seedsFor(t, 500) {
		workload(t, seed, 5, []faultFn{pauseOwner("x", 5*time.Second), pauseOwner("y", 800*time.Millisecond), pauseOwner("z", 2*time.Second)})
	}
}

// TestLinearizableSplitRing splits a 7-node ring in halves three times, one
// node crashing for good during the first split.
func TestLinearizableSplitRing(t *testing.T) {
	for _, seed := range seedsFor(t, 600) {
		workload(t, seed, 7, []faultFn{splitRing(true), splitRing(false), splitRing(false)})
	}
}

// TestLinearizableCutThenSplit: a replica misses a key's creation (its link
// to the owner is cut), then a split leaves it among nodes that are not the
// key's replicas, on the larger side of 7 nodes (cutThenSplit), twice (the
// second time, views lagging after the first heal matter), while the
// clients work on their keys.
func TestLinearizableCutThenSplit(t *testing.T) {
	for _, seed := range seedsFor(t, 700) {
		workload(t, seed, 7, []faultFn{cutThenSplit(fmt.Sprintf("fresh-%d-a", seed)), cutThenSplit(fmt.Sprintf("fresh-%d-b", seed))})
	}
}

// TestLinearizableFreshKeys: besides the usual clients, three clients keep
// creating new keys (retrying a create whose outcome is unknown, as the
// task queue's producers do) while members crash network-first
// (crashNetFirst) on a network with 5 % loss and duplication. Every key
// they touch starts absent, so its first round is a prepare that only the
// replicas' synchronisation guards, and a round can end at a dying owner
// with promises from some replicas and not others. The other scenarios
// write three long-lived keys and rarely do either. It did not hit bug 7
// of docs/kv.md in 58 seeds without that bug's fix (the timing is narrow:
// TestPromiseSurvivesHandover builds it on purpose); it is here for the
// ground it covers.
func TestLinearizableFreshKeys(t *testing.T) {
	for _, seed := range seedsFor(t, 800) {
		workloadFresh(t, seed, 5, 3, []faultFn{lossyFor(20 * time.Second), crashNetFirst, crashNetFirst, crashNetFirst})
	}
}

// lossyFor starts 5 % loss and duplication and ends it d later, while the
// faults after it run.
func lossyFor(d time.Duration) faultFn {
	return func(c *cluster, _ *kvcheck.Recorder) {
		c.setLossy(0.05)
		go func() {
			time.Sleep(d)
			c.setLossy(0)
		}()
	}
}

func TestLinearizableJoinsLeavesAndLossyNetwork(t *testing.T) {
	for _, seed := range seedsFor(t, 400) {
		workload(t, seed, 5, []faultFn{joinLeave, lossyNetwork, joinLeave})
	}
}
