package pubsub

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestScale: a memnet ring of scaleNodes node runtimes (1,000; 200 under
// -race), 10 topics with 100 subscribers each: every publish is delivered to
// every subscriber exactly once, in sequence order.
func TestScale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			seed      = 101
			topics    = 10
			subsPer   = 100
			perTopic  = 20
			settleFor = 5 * time.Second
		)
		wall := time.Now()
		c := newCluster(t, seed, scaleNodes, testConfig())
		defer c.close()
		time.Sleep(settleFor)
		t.Logf("ring of %d nodes built in %v virtual", scaleNodes, time.Since(wall))

		type sub struct {
			topic string
			m     *member
			r     *recorder
		}
		var subs []sub
		for i := 0; i < topics; i++ {
			topic := fmt.Sprintf("topic-%d", i)
			for _, k := range c.rng.Perm(len(c.members))[:subsPer] {
				m := c.members[k]
				subs = append(subs, sub{topic, m, &recorder{node: m.id}})
			}
		}
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, len(subs))
		for _, s := range subs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.m.ps.Subscribe(context.Background(), s.topic, s.r.handler); err != nil {
					errs <- fmt.Errorf("subscribe %s on %s: %w", s.topic, s.m.id.Short(), err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("seed %d: %v", seed, err)
		}
		t.Logf("%d subscriptions attached in %v virtual", len(subs), time.Since(start))
		sent0, _ := c.wire()
		st0 := c.sum()

		pubs := make([]published, topics)
		publishers := make([][]*member, topics)
		for i := range publishers {
			for j := 0; j < perTopic; j++ {
				publishers[i] = append(publishers[i], c.pick())
			}
		}
		start = time.Now()
		errs = make(chan error, topics*perTopic)
		for i := 0; i < topics; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				topic := fmt.Sprintf("topic-%d", i)
				for j, m := range publishers[i] {
					data := fmt.Sprintf("%s/%d", topic, j)
					seq, err := m.ps.Publish(context.Background(), topic, []byte(data))
					if err != nil {
						errs <- fmt.Errorf("publish %s: %w", data, err)
						return
					}
					pubs[i].add(data, seq)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("seed %d: %v", seed, err)
		}
		t.Logf("%d publishes acknowledged in %v virtual", topics*perTopic, time.Since(start))
		time.Sleep(2 * time.Second)
		sent1, delivered := c.wire()
		st1 := c.sum()
		failed := 0
		for _, s := range subs {
			var i int
			fmt.Sscanf(s.topic, "topic-%d", &i)
			if err := checkExactlyOnce(s.r, pubs[i].seqs); err != nil {
				failed++
				if failed <= 5 {
					t.Errorf("seed %d: %s: %v", seed, s.topic, err)
					c.dumpTopic(s.topic)
				}
			}
			for _, d := range s.r.deliveries() {
				if d.Gap != 0 {
					t.Errorf("seed %d: %s: gap %d at seq %d on a fault-free ring", seed, s.topic, d.Gap, d.Seq)
					break
				}
			}
		}
		if failed > 0 {
			t.Fatalf("seed %d: %d of %d subscriptions did not get every message exactly once", seed, failed, len(subs))
		}
		want := uint64(len(subs) * perTopic)
		if delivered != want {
			t.Errorf("seed %d: %d deliveries, want %d", seed, delivered, want)
		}
		var fwd, edges int
		for i := 0; i < topics; i++ {
			n, e := c.treeNodes(fmt.Sprintf("topic-%d", i))
			fwd += n
			edges += e
		}
		t.Logf("%d deliveries; trees: %d forwarder/root states, %d edges; pubsub wire messages %d (%.2f per delivery, including heartbeats and publish routing)",
			delivered, fwd, edges, sent1-sent0, float64(sent1-sent0)/float64(delivered))
		t.Logf("of which tree data %d (%.3f per delivery), routed publish hops %d, control (acks, heartbeats over %v) %d",
			st1.DataSent-st0.DataSent, float64(st1.DataSent-st0.DataSent)/float64(delivered), st1.ForwardedHops-st0.ForwardedHops,
			2*time.Second, st1.ControlSent-st0.ControlSent)
	})
}
