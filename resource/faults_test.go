package resource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/internal/testring"
)

var faultNames = []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"}

const (
	faultNodes   = 7
	faultWorkers = 2 // per node
	faultRun     = 60 * time.Second
)

// TestFaults: 7 nodes, two workers each, loop acquire → hold (renewing,
// acting through a guarded sink) → release on a pool of 5 resources, while
// nodes crash and restart, one node at a time is cut off or paused (memnet
// Pause: its messages wait and arrive late) for longer than the TTL while
// its goroutines keep running and believing its leases, and healed, with
// 3% message loss. Each node's clock is off by up to ±0.4 ×
// DriftMargin. Some actions are delivered late (up to 2 TTL), as from a
// sender that paused between checking its lease and acting. The recorded
// history is then checked (see check).
func TestFaults(t *testing.T) {
	seeds := []int64{1}
	if *flagSeed != 0 {
		seeds = []int64{*flagSeed}
	} else {
		for i := int64(2); i <= int64(*flagSeeds); i++ {
			seeds = append(seeds, i)
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { runFaults(t, seed) })
	}
}

// faultCounters sum what every worker and Manager incarnation did.
type faultCounters struct {
	acquired, takenOver, renewed, released, lost, unknown atomic.Int64
	held, exhausted, unavailable, late, relLost           atomic.Int64
	other                                                 atomic.Int64
}

func runFaults(t *testing.T, seed int64) {
	synctest.Test(t, func(t *testing.T) {
		h := newHistory()
		var cnt faultCounters
		var unexpected sync.Map // error text → count
		offset := func(m *testring.Member) time.Duration {
			return time.Duration(int(m.ID[0])-128) * (testDrift * 4 / 10) / 128
		}
		var incarnation atomic.Int64
		begin := make(chan struct{}) // workers start once the ring has formed
		c := testring.New(t, testring.Options{Seed: seed, Nodes: faultNodes, Attach: func(m *testring.Member) (any, func()) {
			off := offset(m)
			mg, err := New(m.KV, Config{TTL: testTTL, DriftMargin: testDrift, Holder: m.ID.Short(),
				Clock: func() time.Time { return time.Now().Add(off) }})
			if err != nil {
				t.Fatalf("seed %d: resource.New: %v", seed, err)
			}
			inc := incarnation.Add(1)
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for i := range faultWorkers {
				w := &worker{m: mg, h: h, off: off, cnt: &cnt, unexpected: &unexpected, label: fmt.Sprintf("w%d", i),
					rng: rand.New(rand.NewSource(seed*1000 + inc*10 + int64(i)))}
				wg.Go(func() {
					select {
					case <-begin:
						w.run(ctx)
					case <-ctx.Done():
					}
				})
			}
			return mg, func() {
				cancel()
				wg.Wait()
				s := mg.Stats()
				cnt.acquired.Add(int64(s.Acquired))
				cnt.takenOver.Add(int64(s.TakenOver))
				cnt.renewed.Add(int64(s.Renewed))
				cnt.released.Add(int64(s.Released))
				cnt.lost.Add(int64(s.Lost))
				cnt.unknown.Add(int64(s.Unknown))
				mg.Close()
			}
		}})
		close(begin)
		c.Net.SetLoss(0.03)
		c.Net.SetDuplicate(0.02)
		var faults []string
		note := func(f string, args ...any) {
			faults = append(faults, fmt.Sprintf("%s ", fmtT(time.Now()))+fmt.Sprintf(f, args...))
		}
		var crashed, cut *testring.Member
		pauses := 0
		var restartAt, healAt time.Time
		end := time.Now().Add(faultRun)
		pick := func() *testring.Member {
			for {
				m := c.Any()
				if m != cut {
					return m
				}
			}
		}
		for time.Now().Before(end) {
			time.Sleep(time.Second + time.Duration(c.Rng.Int63n(int64(2*time.Second))))
			now := time.Now()
			// testring.Restart joins through the first live member in ID
			// order, even one that is cut off: restart only when none is.
			if crashed != nil && now.After(restartAt) && cut == nil {
				c.Restart(crashed)
				note("restart %s", crashed.ID.Short())
				crashed = nil
			}
			if cut != nil && now.After(healAt) {
				c.Net.Resume(cut.ID)
				c.Net.Heal()
				note("heal %s", cut.ID.Short())
				cut = nil
			}
			switch c.Rng.Intn(3) {
			case 0:
				if crashed == nil {
					crashed = pick()
					restartAt = now.Add(2*time.Second + time.Duration(c.Rng.Int63n(int64(6*time.Second))))
					note("crash %s", crashed.ID.Short())
					c.Crash(crashed)
				}
			case 1:
				// Cut off (pause) a node, preferably one holding a lease,
				// for 1.2–2.5 TTL: it keeps running and believing its
				// leases until they expire, while others may take them.
				if cut == nil {
					cut = holderNode(c, h, crashed)
					for cut == nil || cut == crashed {
						cut = c.Any()
					}
					healAt = now.Add(testTTL*6/5 + time.Duration(c.Rng.Int63n(int64(testTTL*13/10))))
					// Half the time a pause proper: what it sends
					// meanwhile (renewals, actions) arrives late, after
					// its leases ran out, instead of being lost.
					if c.Rng.Intn(2) == 0 {
						pauses++
						note("pause %s until %s", cut.ID.Short(), fmtT(healAt))
						c.Net.Pause(cut.ID)
					} else {
						note("cut off %s until %s", cut.ID.Short(), fmtT(healAt))
						c.Net.Partition([]id.ID{cut.ID})
					}
				}
			case 2:
				// Split the ring in two for 1.2–2.5 TTL.
				if cut == nil && c.Rng.Intn(2) == 0 {
					live := c.Live()
					c.Rng.Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] })
					var side []id.ID
					for _, m := range live[:len(live)/2] {
						side = append(side, m.ID)
					}
					cut = live[0]
					healAt = now.Add(testTTL*6/5 + time.Duration(c.Rng.Int63n(int64(testTTL*13/10))))
					note("split %d | %d until %s", len(side), len(live)-len(side), fmtT(healAt))
					c.Net.Partition(side)
				}
			}
		}
		if cut != nil {
			c.Net.Resume(cut.ID)
		}
		c.Net.Heal()
		c.Net.SetLoss(0)
		c.Net.SetDuplicate(0)
		if crashed != nil {
			c.Restart(crashed)
		}
		healed := time.Now()
		note("heal all, loss off")
		time.Sleep(3 * testTTL)
		c.Close()
		time.Sleep(3 * testTTL) // delayed deliveries arrive
		h.mu.Lock()
		defer h.mu.Unlock()
		r := check(h.grants, h.actions)
		after := 0
		for _, g := range h.grants {
			if g.Start.After(healed) {
				after++
			}
		}
		t.Logf("seed %d: %d faults (%d pauses); %d grants used (%d takeovers after expiry, %d arrived expired); ends %v; %d renewals; %d actions (%d delayed), %d stale refused by the guard; acquire refusals: %d held, %d exhausted, %d unavailable; releases that found the lease gone: %d; %d writes with unknown outcome resolved by reading back; %d grants after healing",
			seed, len(faults), pauses, r.Grants, r.Takeovers, cnt.late.Load(), r.ByHow, cnt.renewed.Load(), r.Actions, r.Delayed, r.Refused,
			cnt.held.Load(), cnt.exhausted.Load(), cnt.unavailable.Load(), cnt.relLost.Load(), cnt.unknown.Load(), after)
		unexpected.Range(func(k, v any) bool {
			t.Errorf("seed %d: unexpected error %dx: %v", seed, *(v.(*int64)), k)
			return true
		})
		if len(r.Violations) > 0 || after == 0 || r.Grants < 20 {
			dir := filepath.Join(os.TempDir(), fmt.Sprintf("shoal-resource-seed-%d", seed))
			_ = os.MkdirAll(dir, 0o755)
			b, _ := json.MarshalIndent(struct {
				Faults  []string
				Grants  []*grantEv
				Actions []*actionEv
			}{faults, h.grants, h.actions}, "", " ")
			_ = os.WriteFile(filepath.Join(dir, "history.json"), b, 0o644)
			for _, v := range r.Violations {
				t.Errorf("seed %d: %s", seed, v)
			}
			if after == 0 || r.Grants < 20 {
				t.Errorf("seed %d: too little progress: %d grants, %d after healing", seed, r.Grants, after)
			}
			t.Errorf("seed %d: history and fault schedule saved in %s; replay with -resource.seed=%d", seed, dir, seed)
		}
	})
}

// holderNode is a live member (not skip) whose workers hold a lease now.
func holderNode(c *testring.Cluster, h *history, skip *testring.Member) *testring.Member {
	h.mu.Lock()
	holding := map[string]bool{}
	for _, g := range h.grants {
		if g.End.IsZero() {
			base, _, _ := strings.Cut(g.Holder, "/")
			holding[base] = true
		}
	}
	h.mu.Unlock()
	for _, m := range c.Live() {
		if m != skip && holding[m.ID.Short()] {
			return m
		}
	}
	return nil
}

// worker is one holder: acquire, hold while acting through the sink,
// release; again.
type worker struct {
	m          *Manager
	h          *history
	off        time.Duration // the node's clock minus true time
	cnt        *faultCounters
	unexpected *sync.Map
	label      string
	rng        *rand.Rand
}

func (w *worker) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (w *worker) unexpectedErr(err error) {
	v, _ := w.unexpected.LoadOrStore(err.Error(), new(int64))
	atomic.AddInt64(v.(*int64), 1)
}

func (w *worker) run(ctx context.Context) {
	for ctx.Err() == nil {
		if err := w.m.DefinePool(ctx, "p", faultNames); err == nil {
			break
		} else if !errors.Is(err, ErrUnavailable) {
			w.unexpectedErr(err)
		}
		w.sleep(ctx, time.Second)
	}
	for w.sleep(ctx, time.Duration(w.rng.Int63n(int64(400*time.Millisecond)))) {
		actx, cancel := context.WithTimeout(ctx, 8*time.Second)
		var l *Lease
		var err error
		if w.rng.Intn(3) == 0 {
			l, err = w.m.AcquireName(actx, "p", faultNames[w.rng.Intn(len(faultNames))], As(w.label))
		} else {
			l, err = w.m.Acquire(actx, "p", As(w.label))
		}
		cancel()
		switch {
		case err == nil:
		case errors.Is(err, ErrHeld):
			w.cnt.held.Add(1)
			continue
		case errors.Is(err, ErrPoolExhausted):
			w.cnt.exhausted.Add(1)
			continue
		case errors.Is(err, ErrUnavailable):
			w.cnt.unavailable.Add(1)
			continue
		default:
			w.unexpectedErr(err)
			continue
		}
		if !l.Valid(w.m.now()) {
			w.cnt.late.Add(1) // the grant took longer than its TTL to confirm
			continue
		}
		g := &grantEv{Res: l.Name, Token: l.Token, Holder: l.Holder, Start: time.Now(), Until: l.Until().Add(-w.off), Takeover: l.takeover}
		w.h.fence(g)
		w.hold(ctx, l, g)
	}
}

func (w *worker) hold(ctx context.Context, l *Lease, g *grantEv) {
	kctx, stopKA := context.WithCancel(ctx)
	ka := w.m.KeepAlive(kctx, l)
	done := time.NewTimer(testTTL*3/10 + time.Duration(w.rng.Int63n(int64(testTTL*22/10))))
	defer done.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	how := ""
	for how == "" {
		select {
		case <-ctx.Done():
			how = "stopped"
		case err, ok := <-ka:
			how = "lost"
			if !ok || !errors.Is(err, ErrLeaseLost) {
				how = "stopped"
			}
		case <-done.C:
			how = "released"
		case <-tick.C:
			if !l.Valid(w.m.now()) {
				continue // not acting: KeepAlive will say whether it comes back
			}
			a := &actionEv{Res: l.Name, Token: l.Token, Issued: time.Now(), grant: g}
			w.h.update(func() {
				if u := l.Until().Add(-w.off); u.After(g.Until) {
					g.Until = u
				}
			})
			if w.rng.Intn(7) == 0 {
				a.Delayed = true
				time.AfterFunc(testTTL/2+time.Duration(w.rng.Int63n(int64(testTTL*3/2))), func() { w.h.deliver(a) })
			} else {
				w.h.deliver(a)
			}
		}
	}
	stopKA()
	for range ka {
	}
	w.h.update(func() {
		if u := l.Until().Add(-w.off); u.After(g.Until) {
			g.Until = u
		}
		g.End, g.How = time.Now(), how
	})
	if how != "released" {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 8*time.Second)
	defer cancel()
	err := w.m.Release(rctx, l)
	switch {
	case err == nil:
	case errors.Is(err, ErrLeaseLost):
		w.cnt.relLost.Add(1)
	case errors.Is(err, ErrUnavailable):
		w.cnt.unavailable.Add(1)
	default:
		w.unexpectedErr(err)
	}
}
