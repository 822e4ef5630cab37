package resource

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/internal/testring"
	"github.com/shoal-p2p/shoal/kv"
	"github.com/shoal-p2p/shoal/transport"
)

// TestBasics walks one resource through its life: define, acquire any,
// acquire by name, held, renew, list, release, re-acquire, expiry and
// takeover, exhaustion, KeepAlive.
func TestBasics(t *testing.T) {
	const seed = 1
	synctest.Test(t, func(t *testing.T) {
		c := ring(t, seed, 5, nil)
		defer c.Close()
		ctx := tctx(t)
		live := c.Live()
		a, b := mgr(live[0]), mgr(live[1])
		if err := a.DefinePool(ctx, "ips", []string{"10.0.0.2", "10.0.0.1"}); err != nil {
			t.Fatalf("seed %d: define: %v", seed, err)
		}
		if err := b.DefinePool(ctx, "ips", []string{"10.0.0.1", "10.0.0.3"}); err != nil {
			t.Fatalf("seed %d: define again: %v", seed, err)
		}
		st, err := b.List(ctx, "ips")
		if err != nil || len(st) != 3 || st[0].Name != "10.0.0.1" || st[2].Name != "10.0.0.3" || st[0].State != StateFree || st[0].Token != 0 {
			t.Fatalf("seed %d: list after define: %+v %v", seed, st, err)
		}

		l1, err := a.Acquire(ctx, "ips")
		if err != nil {
			t.Fatalf("seed %d: acquire: %v", seed, err)
		}
		if l1.Token != 1 || l1.Holder != a.cfg.Holder || !l1.Valid(a.now()) || l1.ValidUntil != l1.Expires {
			t.Fatalf("seed %d: lease %+v", seed, l1)
		}
		if d := l1.ValidUntil.Sub(a.now()); d > testTTL || d < testTTL-time.Second {
			t.Fatalf("seed %d: lease valid for %v, want about %v", seed, d, testTTL)
		}

		_, err = b.AcquireName(ctx, "ips", l1.Name, As("bob"))
		var he *HeldError
		if !errors.As(err, &he) || !errors.Is(err, ErrHeld) || he.Holder != a.cfg.Holder || he.Token != 1 || !he.Expires.Equal(l1.Expires) {
			t.Fatalf("seed %d: acquire held: %v", seed, err)
		}
		t.Logf("held: %v", err)

		time.Sleep(2 * time.Second)
		old := l1.Until()
		if err := a.Renew(ctx, l1); err != nil {
			t.Fatalf("seed %d: renew: %v", seed, err)
		}
		if !l1.Until().After(old) || l1.Token != 1 {
			t.Fatalf("seed %d: renew did not extend: %v -> %v", seed, old, l1.Until())
		}

		st, err = b.List(ctx, "ips")
		if err != nil {
			t.Fatalf("seed %d: list: %v", seed, err)
		}
		for _, s := range st {
			want := StateFree
			if s.Name == l1.Name {
				want = StateHeld
				if s.Holder != l1.Holder || s.Token != 1 || !s.Expires.Equal(l1.Expires) {
					t.Fatalf("seed %d: list shows %+v for %+v", seed, s, l1)
				}
			}
			if s.State != want {
				t.Fatalf("seed %d: list: %+v, want state %s", seed, s, want)
			}
		}

		if err := a.Release(ctx, l1); err != nil {
			t.Fatalf("seed %d: release: %v", seed, err)
		}
		if l1.Valid(a.now()) {
			t.Fatalf("seed %d: released lease still valid", seed)
		}
		l2, err := b.AcquireName(ctx, "ips", l1.Name, As("bob"))
		if err != nil {
			t.Fatalf("seed %d: acquire after release: %v", seed, err)
		}
		if l2.Token != 2 || l2.Holder != b.cfg.Holder+"/bob" {
			t.Fatalf("seed %d: re-acquired lease %+v, want token 2 held by %s/bob", seed, l2, b.cfg.Holder)
		}

		// b stops renewing: a may take it only after TTL + DriftMargin.
		time.Sleep(testTTL + testDrift/2)
		if st, _ := a.List(ctx, "ips"); st[indexOf(st, l2.Name)].State != StateExpired {
			t.Fatalf("seed %d: list after TTL: %+v", seed, st)
		}
		if _, err := a.AcquireName(ctx, "ips", l2.Name); !errors.Is(err, ErrHeld) {
			t.Fatalf("seed %d: takeover inside the drift margin: %v", seed, err)
		}
		time.Sleep(testDrift)
		l3, err := a.AcquireName(ctx, "ips", l2.Name)
		if err != nil || l3.Token != 3 || !l3.takeover {
			t.Fatalf("seed %d: takeover after expiry: %+v %v", seed, l3, err)
		}
		if err := b.Renew(ctx, l2); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("seed %d: renew of a lost lease: %v", seed, err)
		}
		if err := b.Release(ctx, l2); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("seed %d: release of a lost lease: %v", seed, err)
		}

		// Exhaustion: l3 holds one name; take the other two.
		var held []*Lease
		for range 2 {
			l, err := b.Acquire(ctx, "ips")
			if err != nil {
				t.Fatalf("seed %d: acquire: %v", seed, err)
			}
			held = append(held, l)
		}
		_, err = c.Any().Extra.(*Manager).Acquire(ctx, "ips")
		var ex *ExhaustedError
		if !errors.As(err, &ex) || !errors.Is(err, ErrPoolExhausted) || ex.Size != 3 || !ex.Soonest.Equal(l3.Expires) {
			t.Fatalf("seed %d: acquire from a full pool: %v", seed, err)
		}
		t.Logf("exhausted: %v", err)

		// KeepAlive holds a lease over several TTLs; after it stops, the
		// lease expires and the resource can be taken.
		kctx, stop := context.WithCancel(ctx)
		ka := b.KeepAlive(kctx, held[0])
		time.Sleep(3 * testTTL)
		if !held[0].Valid(b.now()) {
			t.Fatalf("seed %d: kept-alive lease expired", seed)
		}
		if _, err := a.AcquireName(ctx, "ips", held[0].Name); !errors.Is(err, ErrHeld) {
			t.Fatalf("seed %d: kept-alive lease taken: %v", seed, err)
		}
		stop()
		if err, ok := <-ka; ok {
			t.Fatalf("seed %d: KeepAlive ended with %v", seed, err)
		}
		time.Sleep(testTTL + testDrift + 100*time.Millisecond)
		l4, err := a.AcquireName(ctx, "ips", held[0].Name)
		if err != nil || l4.Token <= held[0].Token {
			t.Fatalf("seed %d: acquire after KeepAlive stopped: %+v %v", seed, l4, err)
		}
		s := a.Stats()
		if s.Acquired != 3 || s.TakenOver != 2 || s.Released != 1 || s.Renewed != 1 {
			t.Fatalf("seed %d: stats of a: %+v", seed, s)
		}
	})
}

// TestKeepAliveReportsLoss: a holder cut off from the ring cannot renew;
// its KeepAlive reports the loss once the lease expires.
func TestKeepAliveReportsLoss(t *testing.T) {
	const seed = 2
	synctest.Test(t, func(t *testing.T) {
		c := ring(t, seed, 5, nil)
		defer c.Close()
		ctx := tctx(t)
		live := c.Live()
		if err := mgr(live[0]).DefinePool(ctx, "p", []string{"r"}); err != nil {
			t.Fatalf("seed %d: define: %v", seed, err)
		}
		// The holder must not be a replica of the pool's keys, or it would
		// take part of the pool's data with it when cut off.
		p, err := live[0].KV.Placement(ctx, metaKey("p"))
		if err != nil {
			t.Fatalf("seed %d: placement: %v", seed, err)
		}
		var hm *testring.Member
		for _, m := range live {
			if !slices.ContainsFunc(p.Replicas, func(r transport.Peer) bool { return r.ID == m.ID }) && m.ID != p.Owner.ID {
				hm = m
				break
			}
		}
		if hm == nil {
			t.Fatalf("seed %d: every node replicates the pool", seed)
		}
		h := mgr(hm)
		l, err := h.AcquireName(ctx, "p", "r")
		if err != nil {
			t.Fatalf("seed %d: acquire: %v", seed, err)
		}
		ka := h.KeepAlive(ctx, l)
		time.Sleep(testTTL / 2)
		c.Net.Partition([]id.ID{hm.ID})
		err = <-ka
		if !errors.Is(err, ErrLeaseLost) || l.Valid(h.now()) {
			t.Fatalf("seed %d: KeepAlive cut off: %v (valid %v)", seed, err, l.Valid(h.now()))
		}
		t.Logf("cut off: %v", err)
		if _, ok := <-ka; ok {
			t.Fatalf("seed %d: KeepAlive channel not closed", seed)
		}
		c.Net.Heal()
		time.Sleep(testDrift + time.Second)
		o := mgr(c.Owner(kv.KeyID(metaKey("p"))))
		l2, err := o.AcquireName(ctx, "p", "r")
		if err != nil || l2.Token != 2 {
			t.Fatalf("seed %d: takeover: %+v %v", seed, l2, err)
		}
	})
}

func indexOf(st []Status, name string) int {
	for i, s := range st {
		if s.Name == name {
			return i
		}
	}
	return -1
}

// TestConcurrentAcquire: goroutines of several nodes, some sharing one
// holder name, race for one resource; exactly one wins each round.
func TestConcurrentAcquire(t *testing.T) {
	const seed = 5
	synctest.Test(t, func(t *testing.T) {
		c := ring(t, seed, 5, nil)
		defer c.Close()
		ctx := tctx(t)
		live := c.Live()
		if err := mgr(live[0]).DefinePool(ctx, "p", []string{"r"}); err != nil {
			t.Fatalf("seed %d: define: %v", seed, err)
		}
		var last uint64
		for round := range 3 {
			var mu sync.Mutex
			var won []*Lease
			var wg sync.WaitGroup
			for i := range 8 {
				m := mgr(live[i%3])
				wg.Go(func() {
					l, err := m.AcquireName(ctx, "p", "r")
					if err == nil {
						mu.Lock()
						won = append(won, l)
						mu.Unlock()
					} else if !errors.Is(err, ErrHeld) {
						t.Errorf("seed %d: round %d: %v", seed, round, err)
					}
				})
			}
			wg.Wait()
			if len(won) != 1 || won[0].Token != last+1 {
				t.Fatalf("seed %d: round %d: %d winners %+v, want one with token %d", seed, round, len(won), won, last+1)
			}
			last = won[0].Token
			if err := won[0].m.Release(ctx, won[0]); err != nil {
				t.Fatalf("seed %d: release: %v", seed, err)
			}
		}
	})
}
