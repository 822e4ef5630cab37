package kv

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/shoal-p2p/shoal/id"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/anishathalye/porcupine"
)

var linSeeds = flag.Int("kv.seeds", 6, "number of seeds for the linearizability tests")
var linSeed = flag.Int64("kv.seed", 0, "run only this seed")

// ---- the model: one versioned register per key ----------------------------

type regState struct {
	Exists  bool
	Value   string
	Version uint64
}

type regIn struct {
	Key   string
	Op    string // get, put, cas, create, del, casdel
	Value string
	Want  uint64
}

type regOut struct {
	Unknown  bool // outcome not known (timeout, unavailable): maybe applied
	Mismatch bool
	Exists   bool
	Value    string
	Version  uint64
}

func precondition(s regState, in regIn) bool {
	switch in.Op {
	case "cas", "casdel":
		return s.Exists && s.Version == in.Want
	case "create":
		return !s.Exists
	}
	return true
}

func apply(s regState, in regIn) regState {
	switch in.Op {
	case "put", "cas", "create":
		return regState{Exists: true, Value: in.Value, Version: s.Version + 1}
	case "del", "casdel":
		return regState{Exists: false, Version: s.Version + 1}
	}
	return s
}

var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(regIn).Key
			if _, ok := by[k]; !ok {
				keys = append(keys, k)
			}
			by[k] = append(by[k], op)
		}
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() any { return regState{} },
	Step: func(st, input, output any) (bool, any) {
		s, in, out := st.(regState), input.(regIn), output.(regOut)
		if in.Op == "get" {
			ok := out.Exists == s.Exists && out.Version == s.Version && (!s.Exists || out.Value == s.Value)
			return ok, s
		}
		if out.Unknown {
			if precondition(s, in) {
				return true, apply(s, in)
			}
			return true, s
		}
		if out.Mismatch {
			return !precondition(s, in) && out.Version == s.Version && out.Exists == s.Exists, s
		}
		if !precondition(s, in) {
			return false, s
		}
		n := apply(s, in)
		return out.Version == n.Version, n
	},
	Equal: func(a, b any) bool { return a.(regState) == b.(regState) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(regIn), output.(regOut)
		switch {
		case out.Unknown:
			return fmt.Sprintf("%s(%s,%q,%d) -> ?", in.Op, in.Key, in.Value, in.Want)
		case in.Op == "get":
			return fmt.Sprintf("get(%s) -> exists=%v %q v%d", in.Key, out.Exists, out.Value, out.Version)
		case out.Mismatch:
			return fmt.Sprintf("%s(%s,%q,%d) -> mismatch v%d", in.Op, in.Key, in.Value, in.Want, out.Version)
		}
		return fmt.Sprintf("%s(%s,%q,%d) -> v%d", in.Op, in.Key, in.Value, in.Want, out.Version)
	},
	DescribeState: func(st any) string {
		s := st.(regState)
		return fmt.Sprintf("exists=%v %q v%d", s.Exists, s.Value, s.Version)
	},
}

// ---- the recorder -----------------------------------------------------------

type recorder struct {
	mu    sync.Mutex
	ops   []porcupine.Operation
	start time.Time
	acked map[string][]string // key -> acknowledged values
}

func (r *recorder) add(client int, in regIn, call, ret time.Time, out regOut) {
	r.mu.Lock()
	defer r.mu.Unlock()
	end := ret.Sub(r.start).Nanoseconds()
	if out.Unknown {
		end = math.MaxInt64 // may take effect at any later time
	}
	r.ops = append(r.ops, porcupine.Operation{ClientId: client, Input: in, Call: call.Sub(r.start).Nanoseconds(), Output: out, Return: end})
}

// runOp performs one operation and classifies its outcome.
func runOp(ctx context.Context, k *KV, in regIn) (regOut, bool) {
	var out regOut
	var err error
	switch in.Op {
	case "get":
		var it Item
		it, err = k.Get(ctx, in.Key)
		if err == nil {
			return regOut{Exists: true, Value: string(it.Value), Version: it.Version}, true
		}
		if errors.Is(err, ErrNotFound) {
			return regOut{Version: it.Version}, true
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
		out = regOut{Mismatch: true, Version: vm.Have, Exists: vm.Exists}
	default:
		out = regOut{Unknown: true}
	}
	return out, true
}

// ---- the workload -----------------------------------------------------------

type faultFn func(c *cluster, rec *recorder)

func workload(t *testing.T, seed int64, nodes int, faults []faultFn) {
	var rec *recorder
	synctest.Test(t, func(t *testing.T) {
		rec = runWorkload(t, seed, nodes, faults)
	})
	// Outside the bubble: the checker is CPU-bound, and its timeout must be
	// real time.
	checkHistory(t, seed, rec)
}

func runWorkload(t *testing.T, seed int64, nodes int, faults []faultFn) *recorder {
	var result *recorder
	func() {
		c := newCluster(t, seed, nodes)
		defer c.close()
		rec := &recorder{start: time.Now(), acked: map[string][]string{}}
		result = rec
		keys := []string{"x", "y", "z"}
		const clientsPerKey = 2
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var cmu sync.Mutex
		nextClient := 0
		newClient := func() int { cmu.Lock(); defer cmu.Unlock(); nextClient++; return nextClient }
		for ki, key := range keys {
			for ci := 0; ci < clientsPerKey; ci++ {
				wg.Add(1)
				go func(key string, seq int) {
					defer wg.Done()
					client := newClient()
					var lastVer uint64
					for n := 0; ; n++ {
						select {
						case <-stop:
							return
						default:
						}
						m := c.anyLive()
						if m == nil {
							time.Sleep(50 * time.Millisecond)
							continue
						}
						in := regIn{Key: key, Value: fmt.Sprintf("%s-%d-%d", key, seq, n)}
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
							rec.add(client, in, call, ret, out)
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
		c.net.SetLoss(0)
		c.net.SetDuplicate(0)
		time.Sleep(10 * time.Second)
		final := newClient()
		for _, key := range keys {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			call := time.Now()
			out, keep := runOp(ctx, c.anyLive().kv, regIn{Key: key, Op: "get"})
			ret := time.Now()
			cancel()
			if !keep {
				t.Fatalf("seed %d: final read of %s failed after healing", seed, key)
			}
			rec.add(final, regIn{Key: key, Op: "get"}, call, ret, out)
		}
	}()
	return result
}

func checkHistory(t *testing.T, seed int64, rec *recorder) {
	t.Helper()
	known := 0
	for _, op := range rec.ops {
		if !op.Output.(regOut).Unknown {
			known++
		}
	}
	res, info := porcupine.CheckOperationsVerbose(registerModel, rec.ops, 60*time.Second)
	t.Logf("seed %d: %d operations (%d with known outcome): %v", seed, len(rec.ops), known, res)
	if res != porcupine.Ok {
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("shoal-kv-seed-%d", seed))
		_ = os.MkdirAll(dir, 0o755)
		f := filepath.Join(dir, "history.html")
		if err := porcupine.VisualizePath(registerModel, info, f); err == nil {
			t.Logf("visualization: %s", f)
		}
		dumpFailingKeys(t, dir, rec)
		t.Fatalf("seed %d: history is not linearizable (%v)", seed, res)
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
		out = append(out, base+int64(i))
	}
	return out
}

// ---- the faults ---------------------------------------------------------------

func crashOwner(key string) faultFn {
	return func(c *cluster, _ *recorder) {
		m := c.ownerLocked(key)
		c.crash(m)
		time.Sleep(4 * time.Second)
		c.restart(m)
	}
}

func crashReplica(key string) faultFn {
	return func(c *cluster, _ *recorder) {
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
	return func(c *cluster, _ *recorder) {
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

func joinLeave(c *cluster, _ *recorder) {
	c.addLocked()
	time.Sleep(time.Second)
	m := c.anyLive()
	if m != nil && m.id != c.boot.ID {
		m.kv.Close()
		m.n.Close()
		c.mu.Lock()
		m.down = true
		c.mu.Unlock()
	}
}

func lossyNetwork(c *cluster, _ *recorder) {
	c.net.SetLoss(0.05)
	c.net.SetDuplicate(0.05)
	time.Sleep(3 * time.Second)
	c.net.SetLoss(0)
	c.net.SetDuplicate(0)
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

func TestLinearizableJoinsLeavesAndLossyNetwork(t *testing.T) {
	for _, seed := range seedsFor(t, 400) {
		workload(t, seed, 5, []faultFn{joinLeave, lossyNetwork, joinLeave})
	}
}

// dumpFailingKeys writes, for each key whose history alone is not
// linearizable, its operations in call order (milliseconds).
func dumpFailingKeys(t *testing.T, dir string, rec *recorder) {
	by := map[string][]porcupine.Operation{}
	for _, op := range rec.ops {
		k := op.Input.(regIn).Key
		by[k] = append(by[k], op)
	}
	for k, ops := range by {
		if porcupine.CheckOperations(registerModel, ops) {
			continue
		}
		sort.Slice(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
		path := filepath.Join(dir, "key-"+k+".txt")
		f, err := os.Create(path)
		if err != nil {
			continue
		}
		for _, op := range ops {
			ret := "    inf"
			if op.Return != math.MaxInt64 {
				ret = fmt.Sprintf("%7.1f", float64(op.Return)/1e6)
			}
			fmt.Fprintf(f, "%8.1f %s c%-3d %s\n", float64(op.Call)/1e6, ret, op.ClientId, registerModel.DescribeOperation(op.Input, op.Output))
		}
		f.Close()
		t.Logf("history of key %s: %s", k, path)
	}
}
