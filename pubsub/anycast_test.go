package pubsub

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/service"
)

// TestAnycast: with subscribers, exactly one accepts each message and it is
// the node Anycast names; declining subscribers are skipped; an anycast
// from a subscriber's node is taken there (nearest first).
func TestAnycast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) { anycastRun(t, 401) })
}

func anycastRun(t *testing.T, seed int64) {
	{
		c := newCluster(t, seed, 50, testConfig())
		defer c.close()
		time.Sleep(3 * time.Second)
		const topic = "work"
		var mu sync.Mutex
		accepted := map[string][]id.ID{} // data -> nodes whose handler accepted
		asked := map[id.ID]int{}
		subs := map[*member]bool{} // true: accepts
		for i, k := range c.rng.Perm(len(c.members))[:8] {
			m := c.members[k]
			accepts := i%2 == 0
			subs[m] = accepts
			h := func(d *Delivery) bool {
				if !d.Anycast {
					return true
				}
				mu.Lock()
				defer mu.Unlock()
				asked[m.id]++
				if accepts {
					accepted[string(d.Data)] = append(accepted[string(d.Data)], m.id)
				}
				return accepts
			}
			if _, err := m.ps.Subscribe(context.Background(), topic, h); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
		}
		const total = 60
		senders := make([]*member, total)
		for i := range senders {
			senders[i] = c.pick()
		}
		var wg sync.WaitGroup
		results := make([]id.ID, total)
		errs := make([]error, total)
		for i := 0; i < total; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(i%10) * 5 * time.Millisecond)
				p, err := senders[i].ps.Anycast(context.Background(), topic, []byte(fmt.Sprintf("job-%d", i)))
				results[i], errs[i] = p.ID, err
			}()
		}
		wg.Wait()
		time.Sleep(time.Second)
		for i := 0; i < total; i++ {
			data := fmt.Sprintf("job-%d", i)
			if errs[i] != nil {
				t.Fatalf("seed %d: anycast %s from %s: %v", seed, data, senders[i].id.Short(), errs[i])
			}
			got := accepted[data]
			if len(got) != 1 {
				t.Fatalf("seed %d: %s accepted by %d subscribers, want exactly 1", seed, data, len(got))
			}
			if got[0] != results[i] {
				t.Fatalf("seed %d: %s accepted by %s, Anycast says %s", seed, data, got[0].Short(), results[i].Short())
			}
			if m := c.byID[results[i]]; !subs[m] {
				t.Fatalf("seed %d: %s accepted by a declining subscriber", seed, data)
			}
			if s := senders[i]; subs[s] && results[i] != s.id {
				t.Fatalf("seed %d: %s sent from an accepting subscriber %s went to %s", seed, data, s.id.Short(), results[i].Short())
			}
		}
		var decliningAsked int
		for m, acc := range subs {
			if !acc {
				decliningAsked += asked[m.id]
			}
		}
		if decliningAsked == 0 {
			t.Fatalf("seed %d: no declining subscriber was ever asked: the skip path is untested", seed)
		}
		t.Logf("seed %d: %d anycasts, each accepted once; declining subscribers asked and skipped %d times", seed, total, decliningAsked)
	}
}

// TestAnycastNoSubscribers: with no subscriber the error comes back after
// one round trip to the root; when all decline, after the search.
func TestAnycastNoSubscribers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 402
		c := newCluster(t, seed, 50, testConfig())
		defer c.close()
		time.Sleep(3 * time.Second)
		for i := 0; i < 10; i++ {
			topic := fmt.Sprintf("void-%d", i)
			from := c.pick()
			start := time.Now()
			_, err := from.ps.Anycast(context.Background(), topic, []byte("x"))
			took := time.Since(start)
			if !errors.Is(err, ErrNoSubscribers) {
				t.Fatalf("seed %d: want ErrNoSubscribers, got %v", seed, err)
			}
			// One round trip to the root for comparison: a publish (routed to
			// the root, acknowledged straight back) on the same topic.
			start = time.Now()
			if _, err := from.ps.Publish(context.Background(), topic, []byte("x")); err != nil {
				t.Fatal(err)
			}
			rtt := time.Since(start)
			// Links take 1–5 ms; a route in 50 nodes takes at most 4 hops here.
			if took > 25*time.Millisecond {
				t.Fatalf("seed %d: ErrNoSubscribers after %v (publish round trip %v)", seed, took, rtt)
			}
			t.Logf("seed %d: %s: ErrNoSubscribers after %v virtual; publish round trip to the same root %v", seed, topic, took, rtt)
		}
		// Everyone declines.
		for _, k := range c.rng.Perm(len(c.members))[:4] {
			if _, err := c.members[k].ps.Subscribe(context.Background(), "picky", func(*Delivery) bool { return false }); err != nil {
				t.Fatal(err)
			}
		}
		_, err := c.pick().ps.Anycast(context.Background(), "picky", []byte("x"))
		if !errors.Is(err, ErrNoSubscribers) || !strings.Contains(err.Error(), "all 4 subscribers") {
			t.Fatalf("seed %d: want ErrNoSubscribers naming 4 declines, got %v", seed, err)
		}
	})
}

// TestAnycastAdmissionControl: a subscription that Uses a resource at its
// limit declines without its handler being called; the search moves on.
func TestAnycastAdmissionControl(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 403
		c := newCluster(t, seed, 20, testConfig())
		defer c.close()
		time.Sleep(3 * time.Second)
		busy, idle := c.members[3], c.members[11]
		var mu sync.Mutex
		called := map[id.ID]int{}
		h := func(m *member) Handler {
			return func(d *Delivery) bool {
				mu.Lock()
				called[m.id]++
				mu.Unlock()
				return true
			}
		}
		if _, err := busy.ps.Subscribe(context.Background(), "gpu-jobs", h(busy), Uses("gpu")); err != nil {
			t.Fatal(err)
		}
		if _, err := idle.ps.Subscribe(context.Background(), "gpu-jobs", h(idle), Uses("gpu")); err != nil {
			t.Fatal(err)
		}
		// Fill busy's "gpu" with one long request of a service that uses it.
		release := make(chan struct{})
		hog := service.New("hog").Uses("gpu").Method("hold", func(call *service.Call) {
			call.Go(func(ctx context.Context) (any, error) { <-release; return "done", nil },
				func(v any, err error) { call.Reply(v) })
		})
		if err := busy.n.Handle(hog); err != nil {
			t.Fatal(err)
		}
		busy.n.SetLimit("gpu", service.Limits{MaxInFlight: 1})
		done := make(chan error, 1)
		go func() { done <- busy.n.CallNode(context.Background(), busy.n.Self(), "hog", "hold", nil, nil) }()
		time.Sleep(50 * time.Millisecond)
		if _, over := busy.n.OverLimit("gpu"); !over {
			t.Fatal("gpu should be at its limit")
		}
		// From busy itself: its own subscriber is nearest, but it is over
		// its limit, so the anycast goes to idle.
		for i := 0; i < 5; i++ {
			p, err := busy.ps.Anycast(context.Background(), "gpu-jobs", []byte("job"))
			if err != nil || p.ID != idle.id {
				t.Fatalf("seed %d: while busy: accepted by %s, err %v; want %s", seed, p.ID.Short(), err, idle.id.Short())
			}
		}
		mu.Lock()
		if called[busy.id] != 0 {
			t.Fatalf("seed %d: the handler of an overloaded subscription was called", seed)
		}
		mu.Unlock()
		if busy.ps.Stats().Overloaded != 5 {
			t.Fatalf("seed %d: overload declines %d, want 5", seed, busy.ps.Stats().Overloaded)
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		p, err := busy.ps.Anycast(context.Background(), "gpu-jobs", []byte("job"))
		if err != nil || p.ID != busy.id {
			t.Fatalf("seed %d: after release: accepted by %s, err %v; want the local %s", seed, p.ID.Short(), err, busy.id.Short())
		}
	})
}
