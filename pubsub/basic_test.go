package pubsub

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

func TestPublishSmall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 1
		c := newCluster(t, seed, 30, testConfig())
		defer c.close()
		time.Sleep(3 * time.Second)
		const topic = "news"
		var recs []*recorder
		used := map[*member]bool{}
		for len(recs) < 10 {
			m := c.pick()
			if used[m] {
				continue
			}
			used[m] = true
			r := &recorder{node: m.id}
			if _, err := m.ps.Subscribe(context.Background(), topic, r.handler); err != nil {
				t.Fatalf("seed %d: subscribe: %v", seed, err)
			}
			recs = append(recs, r)
		}
		var pub published
		for i := 0; i < 20; i++ {
			data := fmt.Sprintf("m%d", i)
			seq, err := c.pick().ps.Publish(context.Background(), topic, []byte(data))
			if err != nil {
				t.Fatalf("seed %d: publish %d: %v", seed, i, err)
			}
			pub.add(data, seq)
		}
		time.Sleep(time.Second)
		for _, r := range recs {
			if err := checkExactlyOnce(r, pub.seqs); err != nil {
				t.Errorf("seed %d: %v", seed, err)
			}
		}
		nodes, edges := c.treeNodes(topic)
		sent, del := c.wire()
		t.Logf("tree: %d nodes, %d edges; wire %d, delivered %d", nodes, edges, sent, del)
	})
}
