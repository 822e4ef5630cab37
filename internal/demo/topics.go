package demo

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/pubsub"
)

// demoTopic is the topic of the demo's publish/subscribe step.
const demoTopic = "news"

// inbox keeps what one subscriber received.
type inbox struct {
	m    *member
	mu   sync.Mutex
	msgs []pubsub.Delivery
}

func (b *inbox) handle(d *pubsub.Delivery) bool {
	c := *d
	c.Data = append([]byte(nil), d.Data...)
	b.mu.Lock()
	b.msgs = append(b.msgs, c)
	b.mu.Unlock()
	return true
}

// find returns the first delivery of data, publish or anycast.
func (b *inbox) find(data string, anycast bool) (pubsub.Delivery, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, d := range b.msgs {
		if string(d.Data) == data && d.Anycast == anycast {
			return d, true
		}
	}
	return pubsub.Delivery{}, false
}

// waitAll waits up to d for every inbox to hold the publish of data and
// returns how many do, with the sequence number and gap one of them saw.
func waitAll(ctx context.Context, boxes []*inbox, data string, d time.Duration) (got int, seq, gap uint64) {
	deadline := time.Now().Add(d)
	for {
		got, seq, gap = 0, 0, 0
		for _, b := range boxes {
			if m, ok := b.find(data, false); ok {
				got++
				seq, gap = m.Seq, max(gap, m.Gap)
			}
		}
		if got == len(boxes) || time.Now().After(deadline) || ctx.Err() != nil {
			return got, seq, gap
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// topicStep is step 5: subscribers on several nodes, a publish reaching
// all, an anycast reaching exactly one, and publishing again after the
// topic's root is killed. It returns how long the tree took to carry a
// publish to every subscriber after the crash (0 if it did not).
func (r *Ring) topicStep(ctx context.Context, out io.Writer, fail func(string, ...any)) time.Duration {
	key := id.HashString(demoTopic) // pubsub routes a topic to the owner of this key
	root := r.Owner(key)
	var others []*member
	for _, m := range r.live() {
		if m != root {
			others = append(others, m)
		}
	}
	if len(others) == 0 {
		fmt.Fprintf(out, "5. Publish/subscribe: skipped, the ring has too few live nodes left.\n\n")
		return 0
	}
	publisher, subs := others[0], others[1:]
	if len(subs) == 0 {
		subs = others // a tiny ring: the publisher subscribes too
	}
	if len(subs) > 4 {
		subs = subs[:4]
	}
	fmt.Fprintf(out, "5. Topic %q (ID %s): its root is its owner, node %s. Subscribing on %s:\n",
		demoTopic, key.Short(), root.n.ID().Short(), plural(len(subs), "node"))
	boxes := make([]*inbox, len(subs))
	for i, m := range subs {
		boxes[i] = &inbox{m: m}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		sub, err := m.ps.Subscribe(sctx, demoTopic, boxes[i].handle)
		cancel()
		if err != nil {
			fail("subscribe on node %s: %v", m.n.ID().Short(), err)
			return 0
		}
		defer sub.Close()
		fmt.Fprintf(out, "   node %s subscribed\n", m.n.ID().Short())
	}

	publish := func(data string, timeout time.Duration) (uint64, error) {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return publisher.ps.Publish(pctx, demoTopic, []byte(data))
	}
	first := "first edition"
	start := time.Now()
	seq, err := publish(first, 3*time.Second)
	if err != nil {
		fail("publish %q from node %s: %v", first, publisher.n.ID().Short(), err)
	} else {
		got, _, _ := waitAll(ctx, boxes, first, 3*time.Second)
		if got != len(boxes) {
			fail("publish #%d reached %d of %d subscribers", seq, got, len(boxes))
		} else {
			fmt.Fprintf(out, "   publish %q from node %s: the root numbered it #%d; it reached every subscriber (%d) in %v  ok\n",
				first, publisher.n.ID().Short(), seq, len(boxes), time.Since(start).Round(time.Millisecond))
		}
	}

	job := "one job for one worker"
	actx, cancel := context.WithTimeout(ctx, 3*time.Second)
	taker, err := publisher.ps.Anycast(actx, demoTopic, []byte(job))
	cancel()
	if err != nil {
		fail("anycast from node %s: %v", publisher.n.ID().Short(), err)
	} else {
		time.Sleep(200 * time.Millisecond) // would a second subscriber get it too?
		var holders []id.ID
		for _, b := range boxes {
			if _, ok := b.find(job, true); ok {
				holders = append(holders, b.m.n.ID())
			}
		}
		switch {
		case len(holders) != 1:
			fail("anycast reached %d subscribers, want exactly 1", len(holders))
		case holders[0] != taker.ID:
			fail("anycast reported as accepted by %s but delivered to %s", taker.ID.Short(), holders[0].Short())
		default:
			fmt.Fprintf(out, "   anycast %q from node %s: accepted by node %s, and only by it  ok\n",
				job, publisher.n.ID().Short(), taker.ID.Short())
		}
	}

	fmt.Fprintf(out, "   killing node %s, the topic's root, without warning…\n", root.n.ID().Short())
	r.Kill(root)
	heir := r.Owner(key)
	killed := time.Now()
	var last error
	for i := 1; time.Since(killed) < 15*time.Second && ctx.Err() == nil; i++ {
		data := fmt.Sprintf("edition %d, after the crash", i)
		seq, err := publish(data, time.Second)
		if err != nil {
			last = err
			time.Sleep(50 * time.Millisecond)
			continue
		}
		got, _, gap := waitAll(ctx, boxes, data, time.Second)
		if got < len(boxes) {
			last = fmt.Errorf("publish #%d reached %d of %d subscribers", seq, got, len(boxes))
			continue
		}
		took := time.Since(killed)
		gapNote := "no gap"
		if gap > 0 {
			gapNote = fmt.Sprintf("gap of %d reported", gap)
		}
		fmt.Fprintf(out, "   the tree re-formed at node %s: publish #%d reached every subscriber (%d) %.2fs after the crash (%s)  ok\n\n",
			heir.n.ID().Short(), seq, len(boxes), took.Seconds(), gapNote)
		return took
	}
	fail("after killing the topic's root %s, no publish reached every subscriber within 15s (last: %v)", root.n.ID().Short(), last)
	fmt.Fprintln(out)
	return 0
}
