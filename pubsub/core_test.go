package pubsub

import (
	"math/rand"
	"reflect"
	"testing"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
)

func TestSeqOrder(t *testing.T) {
	e := uint64(1000)
	cases := []struct {
		last, s uint64
		next    bool
		gap     uint64
	}{
		{0, seqOf(e, 1), true, 0},
		{0, seqOf(e, 3), false, 0},
		{seqOf(e, 1), seqOf(e, 2), true, 0},
		{seqOf(e, 1), seqOf(e, 4), false, 2},
		{seqOf(e, 9), seqOf(e+5, 1), true, 0},  // a new root's first message
		{seqOf(e, 9), seqOf(e+5, 4), false, 3}, // three of the new epoch missed
		{seqOf(e, 9), seqOf(e, 9), false, 0},
		{seqOf(e, seqMask), seqOf(e+1, 1), true, 0}, // counter overflow moves to the next epoch
	}
	for _, c := range cases {
		if got := isNext(c.last, c.s); got != c.next {
			t.Errorf("isNext(%x, %x) = %v, want %v", c.last, c.s, got, c.next)
		}
		if got := gapBetween(c.last, c.s); got != c.gap {
			t.Errorf("gapBetween(%x, %x) = %d, want %d", c.last, c.s, got, c.gap)
		}
	}
	if a, b := clockEpoch(epochBase.Add(time.Hour)), clockEpoch(epochBase.Add(time.Hour+time.Millisecond)); b != a+1 {
		t.Errorf("clock epochs %d %d", a, b)
	}
}

func peer(b byte) transport.Peer {
	var x id.ID
	x[0] = b
	return transport.Peer{ID: x, Addrs: []string{"mem/x"}}
}

func newTestCore(self byte) *core {
	cfg := withDefaults(LocalConfig())
	return newCore(peer(self), cfg, rand.New(rand.NewSource(1)))
}

func decodeOut(t *testing.T, o output) []*msg {
	t.Helper()
	var out []*msg
	for _, om := range o.msgs {
		m, err := decode(om.b)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// TestCoreReorderAndGap drives a child's core by hand: out-of-order data is
// delivered in order, a hole is asked for and, when not filled within
// ReorderTimeout, skipped with the gap counted.
func TestCoreReorderAndGap(t *testing.T) {
	c := newTestCore(1)
	parent := peer(2)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	attached, _ := c.subscribe(now, "t", 1)
	if attached {
		t.Fatal("attached before any answer")
	}
	if ms := decodeOut(t, c.take()); len(ms) != 1 || ms[0].kind != kSub {
		t.Fatalf("want one routed subscribe, got %+v", ms)
	}
	e := uint64(77)
	c.direct(now, parent, &msg{kind: kSubAck, topic: "t", seq: seqOf(e, 3)})
	if o := c.take(); !reflect.DeepEqual(o.attached, []string{"t"}) {
		t.Fatalf("attached: %+v", o.attached)
	}
	data := func(n uint64) *msg { return &msg{kind: kData, topic: "t", seq: seqOf(e, n), data: []byte{byte(n)}} }
	c.direct(now, parent, data(5))
	c.direct(now, parent, data(4))
	o := c.take()
	if len(o.locals) != 2 || seqN(o.locals[0].seq) != 4 || seqN(o.locals[1].seq) != 5 {
		t.Fatalf("locals %+v, want 4 then 5", o.locals)
	}
	if ms := decodeOut(t, o); len(ms) != 1 || ms[0].kind != kResend || seqN(ms[0].seq) != 3 || seqN(ms[0].seq2) != 5 {
		t.Fatalf("want a resend of (3,5), got %+v", ms)
	}
	c.direct(now, parent, data(4)) // duplicate
	c.direct(now, parent, data(8)) // hole 6, 7
	o = c.take()
	if len(o.locals) != 0 {
		t.Fatalf("delivered past a hole: %+v", o.locals)
	}
	c.tick(now.Add(c.cfg.ReorderTimeout), nil)
	o = c.take()
	if len(o.locals) != 1 || seqN(o.locals[0].seq) != 8 || c.st.gaps != 2 || c.st.duplicates != 1 {
		t.Fatalf("after the hold: locals %+v gaps %d duplicates %d", o.locals, c.st.gaps, c.st.duplicates)
	}
}

// TestCoreRootDedupesPublishRetries: a retried publish (same publisher, same
// ID) is acknowledged with its first seq and not multicast again.
func TestCoreRootDedupesPublishRetries(t *testing.T) {
	c := newTestCore(1)
	kid, pub := peer(2), peer(3)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c.routed(now, kid, &msg{kind: kSub, topic: "t"})
	c.take()
	c.routed(now, pub, &msg{kind: kPub, topic: "t", id: 7, data: []byte("x")})
	first := decodeOut(t, c.take())
	c.routed(now, pub, &msg{kind: kPub, topic: "t", id: 7, data: []byte("x")})
	again := decodeOut(t, c.take())
	if len(first) != 2 || first[0].kind != kData || first[1].kind != kPubAck {
		t.Fatalf("first publish: %+v", first)
	}
	if len(again) != 1 || again[0].kind != kPubAck || again[0].seq != first[1].seq || seqN(first[1].seq) != 1 {
		t.Fatalf("retry: %+v (first ack seq %x)", again, first[1].seq)
	}
}

// TestCoreRenumberedPublish: a publish retried across a root change. A
// member that saw the first root's copy and then becomes root answers the
// retry with the first number and sends nothing again; a member that gets a
// second copy numbered by a root that had not seen the first keeps it in
// order (and passes it on) but does not deliver it twice.
func TestCoreRenumberedPublish(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	pub := peer(9)
	e := uint64(77)
	data := func(ep, n, pubID uint64) *msg {
		return &msg{kind: kData, topic: "t", seq: seqOf(ep, n), publisher: pub.ID, id: pubID, data: []byte{byte(n)}}
	}
	member := func() (*core, transport.Peer) {
		c := newTestCore(1)
		parent := peer(2)
		c.subscribe(now, "t", 1)
		c.direct(now, parent, &msg{kind: kSubAck, topic: "t", seq: seqOf(e, 0)})
		c.take()
		return c, parent
	}

	// A member becomes root and gets the retry of a publish it has seen.
	c, parent := member()
	c.direct(now, parent, data(e, 1, 7))
	if o := c.take(); len(o.locals) != 1 {
		t.Fatalf("first copy: locals %+v", o.locals)
	}
	c.routed(now, pub, &msg{kind: kPub, topic: "t", id: 7, data: []byte{1}})
	o := c.take()
	ms := decodeOut(t, o)
	var acks []*msg
	for _, m := range ms {
		switch m.kind {
		case kPubAck:
			acks = append(acks, m)
		case kData:
			t.Fatalf("the new root numbered a publish it had seen again: %+v", m)
		}
	}
	if len(acks) != 1 || acks[0].seq != seqOf(e, 1) || acks[0].id != 7 || len(o.locals) != 0 {
		t.Fatalf("retry at the new root: acks %+v locals %+v, want one ack with seq %x", acks, o.locals, seqOf(e, 1))
	}
	// A new publish there is numbered in a new epoch and delivered.
	c.routed(now, pub, &msg{kind: kPub, topic: "t", id: 8, data: []byte{2}})
	if o := c.take(); len(o.locals) != 1 || seqEpoch(o.locals[0].seq) <= e {
		t.Fatalf("new publish at the new root: locals %+v", o.locals)
	}

	// A member gets the same publish numbered twice, with one of a child.
	c, parent = member()
	kid := peer(3)
	c.routed(now, kid, &msg{kind: kSub, topic: "t", seq: seqOf(e, 0)})
	c.take()
	c.direct(now, parent, data(e, 1, 7))
	c.direct(now, parent, data(e+1, 1, 7)) // renumbered by the next root
	c.direct(now, parent, data(e+1, 2, 8))
	o = c.take()
	if len(o.locals) != 2 || o.locals[0].seq != seqOf(e, 1) || o.locals[1].seq != seqOf(e+1, 2) {
		t.Fatalf("locals %+v, want seq %x and %x only", o.locals, seqOf(e, 1), seqOf(e+1, 2))
	}
	if c.st.renumbered != 1 || c.st.gaps != 0 {
		t.Fatalf("renumbered %d gaps %d, want 1 and 0", c.st.renumbered, c.st.gaps)
	}
	var toKid []uint64
	for _, m := range decodeOut(t, o) {
		if m.kind == kData {
			toKid = append(toKid, m.seq)
			if m.id == 0 {
				t.Errorf("data passed on without its publish ID: %+v", m)
			}
		}
	}
	if len(toKid) != 3 {
		t.Fatalf("passed on to the child: %x, want all three", toKid)
	}
	// Data from an older node (no publish ID) is delivered as before.
	c.direct(now, parent, data(e+1, 3, 0))
	c.direct(now, parent, data(e+1, 4, 0))
	if o := c.take(); len(o.locals) != 2 {
		t.Fatalf("data without publish IDs: locals %+v", o.locals)
	}
}

// TestCoreHeartbeatBatching: one heartbeat per parent for all its topics.
func TestCoreHeartbeatBatching(t *testing.T) {
	c := newTestCore(1)
	p := peer(2)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, name := range []string{"a", "b", "c"} {
		c.subscribe(now, name, uint64(i+1))
		c.direct(now, p, &msg{kind: kSubAck, topic: name})
	}
	c.take()
	c.tick(now.Add(c.cfg.HeartbeatInterval), nil)
	ms := decodeOut(t, c.take())
	if len(ms) != 1 || ms[0].kind != kHB || len(ms[0].entries) != 3 {
		t.Fatalf("want one heartbeat with 3 topics, got %+v", ms)
	}
	// The parent forgot "b": the child re-subscribes to it only.
	c.direct(now, p, &msg{kind: kHBAck, entries: []entry{{topic: "a", ok: true}, {topic: "b"}, {topic: "c", ok: true}}})
	ms = decodeOut(t, c.take())
	if len(ms) != 1 || ms[0].kind != kSub || ms[0].topic != "b" {
		t.Fatalf("want a re-subscribe to b, got %+v", ms)
	}
}

func FuzzDecode(f *testing.F) {
	for _, m := range []*msg{
		{kind: kSub, flags: fToRoot | fHandoff, topic: "news", seq: 1 << 40},
		{kind: kData, topic: "news", seq: 5, publisher: id.HashString("p"), data: []byte("hello")},
		{kind: kAny, topic: "work", id: 9, hops: 3, origin: peer(7), data: []byte("job")},
		{kind: kHBAck, entries: []entry{{topic: "a", seq: 3, ok: true}, {topic: "b"}}},
		{kind: kAnyDone, id: 1, flags: fOK},
	} {
		f.Add(m.bytes())
	}
	f.Add([]byte{1, 3, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decode(b)
		if err != nil {
			return
		}
		again, err := decode(m.bytes())
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if !reflect.DeepEqual(m, again) {
			t.Fatalf("round trip changed the message:\n%+v\n%+v", m, again)
		}
	})
}

// BenchmarkRootFanout: the root's work for one publish to 100 children
// (sequencing, history, one encoded copy shared by every send).
func BenchmarkRootFanout(b *testing.B) {
	c := newTestCore(1)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 100; i++ {
		var x id.ID
		x[0], x[1] = 2, byte(i)
		c.routed(now, transport.Peer{ID: x}, &msg{kind: kSub, topic: "t"})
	}
	c.take()
	pub := peer(9)
	data := make([]byte, 256)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.routed(now, pub, &msg{kind: kPub, topic: "t", id: uint64(i + 1), data: data})
		if o := c.take(); len(o.msgs) != 101 {
			b.Fatalf("%d messages", len(o.msgs))
		}
	}
}
