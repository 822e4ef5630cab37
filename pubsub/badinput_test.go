package pubsub

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/id"
)

func TestBadInput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 501
		c := newCluster(t, seed, 10, testConfig())
		defer c.close()
		time.Sleep(2 * time.Second)
		ps := c.members[0].ps
		ctx := context.Background()
		long := strings.Repeat("t", 257)
		nop := func(*Delivery) bool { return true }
		for _, topic := range []string{"", long} {
			if _, err := ps.Subscribe(ctx, topic, nop); !errors.Is(err, ErrBadTopic) {
				t.Errorf("Subscribe(%d-byte topic): %v, want ErrBadTopic", len(topic), err)
			}
			if _, err := ps.Publish(ctx, topic, []byte("x")); !errors.Is(err, ErrBadTopic) {
				t.Errorf("Publish(%d-byte topic): %v, want ErrBadTopic", len(topic), err)
			}
			if _, err := ps.Anycast(ctx, topic, []byte("x")); !errors.Is(err, ErrBadTopic) {
				t.Errorf("Anycast(%d-byte topic): %v, want ErrBadTopic", len(topic), err)
			}
		}
		if _, err := ps.Subscribe(ctx, strings.Repeat("t", 256), nop); err != nil {
			t.Errorf("a 256-byte topic is allowed: %v", err)
		}
		huge := make([]byte, 1<<20)
		if _, err := ps.Publish(ctx, "big", huge); !errors.Is(err, ErrTooLarge) {
			t.Errorf("Publish(1 MiB): %v, want ErrTooLarge", err)
		}
		if _, err := ps.Anycast(ctx, "big", huge); !errors.Is(err, ErrTooLarge) {
			t.Errorf("Anycast(1 MiB): %v, want ErrTooLarge", err)
		}
		// Just under the limit goes through the tree.
		got := make(chan int, 2)
		sub := c.members[5].ps
		if _, err := sub.Subscribe(ctx, "big", func(d *Delivery) bool { got <- len(d.Data); return true }); err != nil {
			t.Fatal(err)
		}
		if _, err := ps.Publish(ctx, "big", huge[:1<<20-64]); err != nil {
			t.Fatalf("Publish(1 MiB - 64): %v", err)
		}
		time.Sleep(200 * time.Millisecond)
		if len(got) != 1 || <-got != 1<<20-64 {
			t.Fatal("the large message was not delivered once, whole")
		}
		if _, err := ps.Subscribe(ctx, "x", nil); err == nil {
			t.Error("nil handler accepted")
		}
		if err := (Config{MaxTopicLen: 10}).Validate(); err == nil {
			t.Error("a config with zero timings validated")
		}
		// Garbage sent to pubsub is counted and ignored.
		victim := c.members[1]
		for _, b := range [][]byte{{}, {9}, {1, 99}, {1, 8, 0, 5, 'a'}, {1, 4, 0, 0, 0, 0, 0, 0, 200, 200, 200}} {
			if err := c.members[2].n.SendProto(ctx, ProtocolName, victim.n.Self(), b); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(100 * time.Millisecond)
		if st := victim.ps.Stats(); st.BadMessages < 5 {
			t.Fatalf("bad messages counted %d, want 5", st.BadMessages)
		}
		// Closed.
		m := c.members[9]
		m.ps.Close()
		if _, err := m.ps.Publish(ctx, "x", nil); !errors.Is(err, ErrClosed) {
			t.Errorf("Publish after Close: %v", err)
		}
		if _, err := m.ps.Subscribe(ctx, "x", nop); !errors.Is(err, ErrClosed) {
			t.Errorf("Subscribe after Close: %v", err)
		}
	})
}

// farSubscriber finds a node whose subscription to topic makes at least
// one forwarder besides the root.
func farSubscriber(t *testing.T, c *cluster, topic string) (*member, *Subscription) {
	t.Helper()
	root := c.owner(id.HashString(topic))
	for _, k := range c.rng.Perm(len(c.members)) {
		m := c.members[k]
		if m == root {
			continue
		}
		s, err := m.ps.Subscribe(context.Background(), topic, func(*Delivery) bool { return true })
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := c.treeNodes(topic); n >= 2 {
			return m, s
		}
		s.Close()
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("seed %d: no subscriber needs a forwarder", c.seed)
	return nil, nil
}

func (c *cluster) topicStates() (n int) {
	for _, m := range c.live() {
		n += m.ps.Stats().Topics
	}
	return n
}

// TestVanishedSubscriberPruned: a subscriber crashes; after the timeout
// every forwarder on its path, and then the idle root, drop the topic.
func TestVanishedSubscriberPruned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) { vanishRun(t, 502) })
}

func vanishRun(t *testing.T, seed int64) {
	{
		c := newCluster(t, seed, 60, testConfig())
		defer c.close()
		time.Sleep(3 * time.Second)
		const topic = "ghost"
		m, _ := farSubscriber(t, c, topic)
		n, _ := c.treeNodes(topic)
		t.Logf("seed %d: subscriber %s, %d tree nodes on its path", seed, m.id.Short(), n)
		c.crash(m)
		cfg := testConfig()
		time.Sleep(cfg.ParentTimeout + 2*cfg.HeartbeatInterval)
		root := c.owner(id.HashString(topic))
		for _, x := range c.live() {
			if k, ok := x.ps.Forwarders()[topic]; ok && (x != root || k != 0) {
				t.Fatalf("seed %d: %s still forwards %q to %d children after the subscriber vanished", seed, x.id.Short(), topic, k)
			}
		}
		time.Sleep(cfg.ParentTimeout + 2*cfg.HeartbeatInterval)
		if n := c.topicStates(); n != 0 {
			c.dumpTopic(topic)
			t.Fatalf("seed %d: %d topic states left", seed, n)
		}
	}
}

// TestCloseSubscriptionPrunes: closing the last subscription removes the
// path at once (a leave cascade), without waiting for timeouts.
func TestCloseSubscriptionPrunes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 503
		c := newCluster(t, seed, 60, testConfig())
		defer c.close()
		time.Sleep(3 * time.Second)
		const topic = "brief"
		_, s := farSubscriber(t, c, topic)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal("second Close:", err)
		}
		time.Sleep(100 * time.Millisecond) // a few link delays, far below ParentTimeout
		root := c.owner(id.HashString(topic))
		for _, x := range c.live() {
			if k, ok := x.ps.Forwarders()[topic]; ok && (x != root || k != 0) {
				c.dumpTopic(topic)
				t.Fatalf("seed %d: %s still forwards for %q (%d children) after Close", seed, x.id.Short(), topic, k)
			}
			if st := x.ps.Stats(); st.ChildrenExpired != 0 {
				t.Fatalf("seed %d: pruned by timeout, not by the leave", seed)
			}
		}
		time.Sleep(testConfig().ParentTimeout + 2*testConfig().HeartbeatInterval)
		if n := c.topicStates(); n != 0 {
			t.Fatalf("seed %d: %d topic states left (the idle root should have dropped its)", seed, n)
		}
	})
}

// TestHandlerOneAtATime: a slow handler gets every message in order, one
// call at a time, while publishes arrive concurrently; Close from inside a
// handler does not deadlock.
func TestHandlerOneAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 504
		c := newCluster(t, seed, 20, testConfig())
		defer c.close()
		time.Sleep(2 * time.Second)
		r := &recorder{node: c.members[4].id, work: 20 * time.Millisecond}
		if _, err := c.members[4].ps.Subscribe(context.Background(), "slow", r.handler); err != nil {
			t.Fatal(err)
		}
		want := map[string]uint64{}
		done := make(chan map[string]uint64)
		for g := 0; g < 5; g++ {
			pubr := c.members[6+g]
			go func() {
				w := map[string]uint64{}
				for i := 0; i < 10; i++ {
					data := pubr.id.Short() + "/" + string(rune('a'+i))
					seq, err := pubr.ps.Publish(context.Background(), "slow", []byte(data))
					if err != nil {
						t.Error(err)
					}
					w[data] = seq
				}
				done <- w
			}()
		}
		for g := 0; g < 5; g++ {
			for k, v := range <-done {
				want[k] = v
			}
		}
		time.Sleep(2 * time.Second) // 50 × 20 ms of handler work
		if err := checkExactlyOnce(r, want); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		// Close from inside the handler.
		var sub *Subscription
		closed := make(chan struct{})
		sub, err := c.members[7].ps.Subscribe(context.Background(), "slow", func(*Delivery) bool {
			sub.Close()
			close(closed)
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.members[8].ps.Publish(context.Background(), "slow", []byte("bye")); err != nil {
			t.Fatal(err)
		}
		<-closed
	})
}
