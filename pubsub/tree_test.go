package pubsub

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/id"
)

// subscribeN subscribes n distinct random nodes (not in skip) to topic.
func subscribeN(t *testing.T, c *cluster, topic string, n int, skip ...*member) map[*member]*recorder {
	t.Helper()
	out := map[*member]*recorder{}
outer:
	for _, k := range c.rng.Perm(len(c.members)) {
		m := c.members[k]
		if m.crashed || len(out) == n {
			continue
		}
		for _, s := range skip {
			if s == m {
				continue outer
			}
		}
		r := &recorder{node: m.id}
		if _, err := m.ps.Subscribe(context.Background(), topic, r.handler); err != nil {
			t.Fatalf("seed %d: subscribe on %s: %v", c.seed, m.id.Short(), err)
		}
		out[m] = r
	}
	return out
}

func publishN(t *testing.T, c *cluster, topic, prefix string, n int, into map[string]uint64) {
	t.Helper()
	for i := 0; i < n; i++ {
		data := fmt.Sprintf("%s/%d", prefix, i)
		seq, err := c.pick().ps.Publish(context.Background(), topic, []byte(data))
		if err != nil {
			t.Fatalf("seed %d: publish %s: %v", c.seed, data, err)
		}
		into[data] = seq
	}
}

// TestRootHandoffOnJoin: a node joins whose ID is closer to the topic than
// the root's. The old root hands its counter and its subtree to it; the
// sequence goes on without a gap and no subscriber is lost.
func TestRootHandoffOnJoin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) { handoffRun(t, 301) })
}

func handoffRun(t *testing.T, seed int64) {
	{
		c := newCluster(t, seed, 40, testConfig())
		defer c.close()
		time.Sleep(3 * time.Second)
		const topic = "handoff"
		key := id.HashString(topic)
		old := c.owner(key)
		subs := subscribeN(t, c, topic, 12, old)
		want := map[string]uint64{}
		publishN(t, c, topic, "before", 10, want)

		nw := c.addID(key) // the topic's own ID: the closest possible
		time.Sleep(3 * testConfig().HeartbeatInterval)
		if st := nw.ps.Stats(); st.Roots != 1 || st.Handoffs != 1 {
			t.Fatalf("seed %d: new owner: roots %d handoffs %d, want 1 and 1", seed, st.Roots, st.Handoffs)
		}
		if st := old.ps.Stats(); st.Roots != 0 {
			t.Fatalf("seed %d: old root still a root", seed)
		}
		publishN(t, c, topic, "after", 10, want)
		time.Sleep(time.Second)
		for _, r := range subs {
			if err := checkExactlyOnce(r, want); err != nil {
				c.dumpTopic(topic)
				t.Fatalf("seed %d: %v", seed, err)
			}
			for _, d := range r.deliveries() {
				if d.Gap != 0 {
					t.Fatalf("seed %d: subscriber %s: gap %d at seq %x across the handoff", seed, r.node.Short(), d.Gap, d.Seq)
				}
			}
		}
		if seqEpoch(want["after/0"]) != seqEpoch(want["before/9"]) || seqN(want["after/0"]) != seqN(want["before/9"])+1 {
			t.Fatalf("seed %d: numbering did not continue: %x then %x", seed, want["before/9"], want["after/0"])
		}
	}
}

// TestRootLeavesGracefully: the root closes; its children re-subscribe at
// once (well within ParentTimeout) and delivery goes on.
func TestRootLeavesGracefully(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 302
		c := newCluster(t, seed, 40, testConfig())
		defer c.close()
		time.Sleep(3 * time.Second)
		const topic = "leave"
		root := c.owner(id.HashString(topic))
		subs := subscribeN(t, c, topic, 12, root)
		want := map[string]uint64{}
		publishN(t, c, topic, "before", 5, want)
		root.ps.Close()
		root.n.Close()
		root.crashed = true
		time.Sleep(500 * time.Millisecond) // < ParentTimeout: repaired by the leave, not by a timeout
		publishN(t, c, topic, "after", 10, want)
		time.Sleep(500 * time.Millisecond)
		for _, r := range subs {
			if err := checkExactlyOnce(r, want); err != nil {
				c.dumpTopic(topic)
				t.Fatalf("seed %d: %v", seed, err)
			}
		}
	})
}
