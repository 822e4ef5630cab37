package ring

import (
	"flag"
	"fmt"
	"math/rand"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/shoal-p2p/shoal/id"
	"pgregory.net/rapid"
)

// rapidSeed fixes rapid's base seed so that every run checks the same cases.
// A failure prints the seed of the failing case (-rapid.seed=N) and writes a
// fail file under testdata/rapid. An explicit -rapid.seed or RAPID_SEED
// overrides it; -rapid.seed=0 explores with a random seed.
const rapidSeed = "20260102"

func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.seed" })
	if _, env := os.LookupEnv("RAPID_SEED"); !set && !env {
		if err := flag.Set("rapid.seed", rapidSeed); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}

// top returns an ID whose first byte is b and the rest zero: easy to read in
// failures and to place on the ring by hand.
func top(b byte) id.ID {
	var x id.ID
	x[0] = b
	return x
}

func shorts(xs []id.ID) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = x.Short()
	}
	return "[" + strings.Join(s, " ") + "]"
}

// bruteSides is the leaf set by definition: the half nearest nodes going
// clockwise (right) and counter-clockwise (left), nearest first.
func bruteSides(self id.ID, half int, nodes []id.ID) (left, right []id.ID) {
	var others []id.ID
	for _, x := range nodes {
		if x != self && !slices.Contains(others, x) {
			others = append(others, x)
		}
	}
	right = slices.Clone(others)
	slices.SortFunc(right, func(a, b id.ID) int { return id.Clockwise(self, a).Cmp(id.Clockwise(self, b)) })
	left = slices.Clone(others)
	slices.SortFunc(left, func(a, b id.ID) int { return id.Clockwise(a, self).Cmp(id.Clockwise(b, self)) })
	return left[:min(half, len(left))], right[:min(half, len(right))]
}

// checkSides verifies each side's order and bound, and that the two sides
// are what brute force says for nodes.
func checkSides(t interface {
	Helper()
	Fatalf(string, ...any)
}, l *leafSet, nodes []id.ID) {
	t.Helper()
	for _, side := range []struct {
		name string
		list []id.ID
		dist func(id.ID) id.ID
	}{{"left", l.left, l.ccw}, {"right", l.right, l.cw}} {
		if len(side.list) > l.half {
			t.Fatalf("%s side holds %d > half=%d: %s", side.name, len(side.list), l.half, shorts(side.list))
		}
		for i := 1; i < len(side.list); i++ {
			if !side.dist(side.list[i-1]).Less(side.dist(side.list[i])) {
				t.Fatalf("%s side not sorted nearest first: %s", side.name, shorts(side.list))
			}
		}
	}
	wl, wr := bruteSides(l.self, l.half, nodes)
	if !slices.Equal(l.left, wl) || !slices.Equal(l.right, wr) {
		t.Fatalf("self %s: leaf set left=%s right=%s, want left=%s right=%s",
			l.self.Short(), shorts(l.left), shorts(l.right), shorts(wl), shorts(wr))
	}
}

func TestLeafSetInsertKeepsSidesSortedAndBounded(t *testing.T) {
	self := top(0x80)
	l := newLeafSet(self, 4) // two on each side
	var inserted []id.ID
	steps := []struct {
		x                   id.ID
		changed             bool
		evicted             []id.ID
		wantLeft, wantRight []id.ID
	}{
		// A lone node is both the nearest clockwise and counter-clockwise.
		{top(0x90), true, nil, []id.ID{top(0x90)}, []id.ID{top(0x90)}},
		{top(0x70), true, nil, []id.ID{top(0x70), top(0x90)}, []id.ID{top(0x90), top(0x70)}},
		// Nearer on the right: pushes 0x70 off the right, but it stays on the left.
		{top(0x88), true, nil, []id.ID{top(0x70), top(0x90)}, []id.ID{top(0x88), top(0x90)}},
		// Nearer on the left: pushes 0x90 off the left; still on the right.
		{top(0x78), true, nil, []id.ID{top(0x78), top(0x70)}, []id.ID{top(0x88), top(0x90)}},
		// Farther than both sides: no change.
		{top(0x10), false, nil, []id.ID{top(0x78), top(0x70)}, []id.ID{top(0x88), top(0x90)}},
		{top(0xf0), false, nil, []id.ID{top(0x78), top(0x70)}, []id.ID{top(0x88), top(0x90)}},
		// Already present: no change.
		{top(0x88), false, nil, []id.ID{top(0x78), top(0x70)}, []id.ID{top(0x88), top(0x90)}},
		// Self is never a member.
		{self, false, nil, []id.ID{top(0x78), top(0x70)}, []id.ID{top(0x88), top(0x90)}},
		// A nearer node on the right evicts 0x90 from the set entirely.
		{top(0x8c), true, []id.ID{top(0x90)}, []id.ID{top(0x78), top(0x70)}, []id.ID{top(0x88), top(0x8c)}},
		// Nearest-first insertion in the middle of the left side.
		{top(0x74), true, []id.ID{top(0x70)}, []id.ID{top(0x78), top(0x74)}, []id.ID{top(0x88), top(0x8c)}},
	}
	for i, st := range steps {
		inserted = append(inserted, st.x)
		changed, evicted := l.insert(st.x)
		if changed != st.changed || !slices.Equal(evicted, st.evicted) {
			t.Fatalf("step %d insert %s: changed=%v evicted=%s, want %v %s", i, st.x.Short(), changed, shorts(evicted), st.changed, shorts(st.evicted))
		}
		if !slices.Equal(l.left, st.wantLeft) || !slices.Equal(l.right, st.wantRight) {
			t.Fatalf("step %d insert %s: left=%s right=%s, want %s %s", i, st.x.Short(), shorts(l.left), shorts(l.right), shorts(st.wantLeft), shorts(st.wantRight))
		}
		checkSides(t, &l, inserted)
		for _, ev := range evicted {
			if l.contains(ev) {
				t.Fatalf("step %d: evicted %s is still a member", i, ev.Short())
			}
		}
	}
	if got := l.size(); got != 4 {
		t.Fatalf("size = %d, want 4", got)
	}
	if !l.full() {
		t.Fatal("both sides hold half but full() is false")
	}
	if x, ok := l.nearestLeft(); !ok || x != top(0x78) {
		t.Fatalf("nearestLeft = %s %v", x.Short(), ok)
	}
	if x, ok := l.nearestRight(); !ok || x != top(0x88) {
		t.Fatalf("nearestRight = %s %v", x.Short(), ok)
	}
}

func TestLeafSetEvictionReportsOnlyNodesGone(t *testing.T) {
	self := top(0x00)
	l := newLeafSet(self, 2) // one on each side
	l.insert(top(0x80))      // the only node: on both sides
	// 0x40 is nearer clockwise and pushes 0x80 off the right, but 0x80 (at
	// 0x80) still beats 0x40 (at 0xc0) counter-clockwise: not evicted.
	changed, ev := l.insert(top(0x40))
	if !changed || len(ev) != 0 {
		t.Fatalf("insert 0x40: changed=%v evicted=%s, want true []", changed, shorts(ev))
	}
	if !slices.Equal(l.left, []id.ID{top(0x80)}) || !slices.Equal(l.right, []id.ID{top(0x40)}) {
		t.Fatalf("left=%s right=%s", shorts(l.left), shorts(l.right))
	}
	// 0xf0 is nearer counter-clockwise: 0x80 leaves its last side.
	changed, ev = l.insert(top(0xf0))
	if !changed || !slices.Equal(ev, []id.ID{top(0x80)}) {
		t.Fatalf("insert 0xf0: changed=%v evicted=%s, want [80000000]", changed, shorts(ev))
	}
	if l.contains(top(0x80)) {
		t.Fatal("evicted node still a member")
	}
}

// The all-zero ID is a valid node ID; an eviction of it from one side must be
// reported like any other.
func TestLeafSetEvictsZeroID(t *testing.T) {
	self := top(0x80)
	l := newLeafSet(self, 4)
	for _, x := range []id.ID{top(0x90), top(0xa0), {}, top(0x70)} {
		l.insert(x)
	}
	// right = [90 a0], left = [70 00]; the zero ID is only on the left.
	if !slices.Equal(l.left, []id.ID{top(0x70), {}}) || !slices.Equal(l.right, []id.ID{top(0x90), top(0xa0)}) {
		t.Fatalf("setup: left=%s right=%s", shorts(l.left), shorts(l.right))
	}
	changed, ev := l.insert(top(0x60)) // nearer on the left, not on the right
	if !changed || !slices.Equal(ev, []id.ID{{}}) {
		t.Fatalf("insert 0x60: changed=%v evicted=%s, want [00000000]", changed, shorts(ev))
	}
	if l.contains(id.ID{}) {
		t.Fatal("zero ID still a member")
	}
}

func TestLeafSetRemove(t *testing.T) {
	self := top(0x80)
	l := newLeafSet(self, 4)
	for _, x := range []id.ID{top(0x70), top(0x90)} {
		l.insert(x)
	}
	if !l.remove(top(0x90)) {
		t.Fatal("remove of a member reported false")
	}
	if l.contains(top(0x90)) || slices.Contains(l.left, top(0x90)) || slices.Contains(l.right, top(0x90)) {
		t.Fatalf("0x90 still present: left=%s right=%s", shorts(l.left), shorts(l.right))
	}
	if l.remove(top(0x90)) || l.remove(self) {
		t.Fatal("remove of a non-member reported true")
	}
	if got := l.members(); !slices.Equal(got, []id.ID{top(0x70)}) {
		t.Fatalf("members = %s", shorts(got))
	}
	l.remove(top(0x70))
	if _, ok := l.nearestLeft(); ok {
		t.Fatal("empty set has a left neighbour")
	}
	if _, ok := l.nearestRight(); ok {
		t.Fatal("empty set has a right neighbour")
	}
	if l.size() != 0 || l.full() {
		t.Fatalf("empty set: size=%d full=%v", l.size(), l.full())
	}
}

// In a ring with fewer than LeafSetSize+1 nodes every node knows every other:
// nodes appear on both sides and every key is covered.
func TestLeafSetSmallRingCoversEverything(t *testing.T) {
	const size = 16
	rng := rand.New(rand.NewSource(7))
	keys := []id.ID{{}, top(0xff).Add(id.ID{19: 0xff}), top(0x80)}
	for i := 0; i < 200; i++ {
		var k id.ID
		rng.Read(k[:])
		keys = append(keys, k)
	}
	for others := 0; others <= size; others++ {
		t.Run(fmt.Sprintf("others=%d", others), func(t *testing.T) {
			var self id.ID
			rng.Read(self[:])
			nodes := []id.ID{self}
			for len(nodes) < others+1 {
				var x id.ID
				rng.Read(x[:])
				nodes = append(nodes, x)
			}
			l := newLeafSet(self, size)
			for _, x := range nodes {
				l.insert(x)
			}
			checkSides(t, &l, nodes)
			if l.size() != others {
				t.Fatalf("size = %d, want %d (every node)", l.size(), others)
			}
			if others <= size/2 {
				// Each side holds every node.
				for _, x := range nodes[1:] {
					if !slices.Contains(l.left, x) || !slices.Contains(l.right, x) {
						t.Fatalf("node %s not on both sides: left=%s right=%s", x.Short(), shorts(l.left), shorts(l.right))
					}
				}
			}
			if others < size {
				for _, k := range append(keys, nodes...) {
					if !l.covers(k) {
						t.Fatalf("%d of %d other nodes known (the whole ring), but covers(%s) is false; left=%s right=%s",
							others, size, k.Short(), shorts(l.left), shorts(l.right))
					}
					// And the closest member is the true owner.
					if got, want := l.closest(k, nil), nodes[id.Closest(k, nodes)]; got != want {
						t.Fatalf("closest(%s) = %s, want %s", k.Short(), got.Short(), want.Short())
					}
				}
			}
		})
	}
}

func TestLeafSetCoversFullSet(t *testing.T) {
	self := top(0x80)
	l := newLeafSet(self, 4)
	for _, x := range []id.ID{top(0x60), top(0x70), top(0x90), top(0xa0), top(0x10), top(0xf0)} {
		l.insert(x)
	}
	// left = [70 60], right = [90 a0]: the span is [0x60, 0xa0].
	tests := []struct {
		key  id.ID
		want bool
	}{
		{top(0x60), true},
		{top(0x60).Sub(id.ID{19: 1}), false},
		{top(0xa0), true},
		{top(0xa0).Add(id.ID{19: 1}), false},
		{self, true},
		{top(0x85), true},
		{top(0x00), false},
		{top(0xff), false},
		{top(0x10), false},
	}
	for _, tc := range tests {
		if got := l.covers(tc.key); got != tc.want {
			t.Errorf("covers(%s) = %v, want %v", tc.key, got, tc.want)
		}
	}
	// A span that wraps past zero.
	l = newLeafSet(top(0x04), 4)
	for _, x := range []id.ID{top(0x02), top(0xfe), top(0x08), top(0x0c), top(0x80)} {
		l.insert(x)
	}
	for _, tc := range []struct {
		key  id.ID
		want bool
	}{{top(0xfe), true}, {top(0xff), true}, {id.ID{}, true}, {top(0x0c), true}, {top(0x0d), false}, {top(0xfd), false}, {top(0x80), false}} {
		if got := l.covers(tc.key); got != tc.want {
			t.Errorf("wrapping span: covers(%s) = %v, want %v", tc.key.Short(), got, tc.want)
		}
	}
}

func TestLeafSetClosestWithSkip(t *testing.T) {
	self := top(0x80)
	l := newLeafSet(self, 4)
	for _, x := range []id.ID{top(0x70), top(0x60), top(0x90), top(0xa0)} {
		l.insert(x)
	}
	skip := func(xs ...id.ID) func(id.ID) bool {
		return func(x id.ID) bool { return slices.Contains(xs, x) }
	}
	tests := []struct {
		key  id.ID
		skip func(id.ID) bool
		want id.ID
	}{
		{top(0x91), nil, top(0x90)},
		{top(0x91), skip(top(0x90)), top(0xa0)},       // next nearest member
		{top(0x89), skip(top(0x90), top(0xa0)), self}, // self is never skipped
		{top(0x71), skip(top(0x70)), self},            // 0x80 (at 0x0f) beats 0x60 (at 0x11)
		{top(0x88), nil, self},                        // tie 0x80/0x90: smaller wins
		{top(0x68), nil, top(0x60)},                   // tie 0x60/0x70: smaller wins
		{top(0x10), nil, top(0x60)},                   // outside the span: nearest known
		{top(0x65), skip(top(0x60), top(0x70)), self}, // all the left skipped
		{top(0x95), func(id.ID) bool { return true }, self},
	}
	for _, tc := range tests {
		if got := l.closest(tc.key, tc.skip); got != tc.want {
			t.Errorf("closest(%s) = %s, want %s", tc.key.Short(), got.Short(), tc.want.Short())
		}
	}
}

func TestLeafSetMembersDistinct(t *testing.T) {
	self := top(0x80)
	l := newLeafSet(self, 8)
	nodes := []id.ID{top(0x10), top(0x70), top(0x90)}
	for _, x := range nodes {
		l.insert(x)
	}
	m := l.members()
	if len(m) != 3 {
		t.Fatalf("members = %s, want 3 distinct", shorts(m))
	}
	// Right side first, nearest first.
	if !slices.Equal(m, []id.ID{top(0x90), top(0x10), top(0x70)}) {
		t.Fatalf("members = %s, want [90 10 70] (right side, then left-only)", shorts(m))
	}
}

// Property: whatever IDs arrive, in whatever order and with repeats, the
// leaf set equals the brute-force nearest half on each side, and the nodes
// reported evicted are exactly the ones that were members and are gone.
func TestPropLeafSetMatchesBruteForce(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		size := 2 * rapid.IntRange(1, 4).Draw(t, "half")
		self := genRingID().Draw(t, "self")
		pool := rapid.SliceOfN(rapid.OneOf(genRingID(), genNearID(self)), 1, 40).Draw(t, "pool")
		// Repeats: draw the insertion sequence from the pool (plus self).
		seq := rapid.SliceOfN(rapid.SampledFrom(append(pool, self)), 1, 80).Draw(t, "sequence")

		l := newLeafSet(self, size)
		var seen []id.ID
		everMember := map[id.ID]bool{}
		evictedCount := map[id.ID]int{}
		for _, x := range seq {
			beforeL, beforeR := slices.Clone(l.left), slices.Clone(l.right)
			changed, ev := l.insert(x)
			seen = append(seen, x)
			checkSides(t, &l, seen)
			if same := slices.Equal(beforeL, l.left) && slices.Equal(beforeR, l.right); changed == same {
				t.Fatalf("insert %s: changed=%v but left %s -> %s, right %s -> %s", x.Short(), changed,
					shorts(beforeL), shorts(l.left), shorts(beforeR), shorts(l.right))
			}
			for _, e := range ev {
				if l.contains(e) {
					t.Fatalf("insert %s: evicted %s is still a member", x.Short(), e.Short())
				}
				if !everMember[e] {
					t.Fatalf("insert %s: evicted %s was never a member", x.Short(), e.Short())
				}
				evictedCount[e]++
			}
			if l.contains(x) {
				everMember[x] = true
			}
			for _, m := range l.members() {
				everMember[m] = true
			}
		}
		for x := range everMember {
			in := l.contains(x)
			switch {
			case in && evictedCount[x] != 0:
				t.Fatalf("%s is a member but was reported evicted", x.Short())
			case !in && evictedCount[x] != 1:
				t.Fatalf("%s was a member and is gone, reported evicted %d times (want 1)", x.Short(), evictedCount[x])
			}
		}
		// covers and closest agree with the whole-ring owner when the set
		// knows the whole ring, and with the closest member otherwise.
		key := rapid.OneOf(genRingID(), genNearID(self)).Draw(t, "key")
		all := append([]id.ID{self}, seen...)
		if l.size() < size && !l.covers(key) {
			t.Fatalf("set of %d < %d members knows the whole ring but does not cover %s", l.size(), size, key.Short())
		}
		if l.covers(key) {
			if got, want := l.closest(key, nil), all[id.Closest(key, all)]; got != want {
				t.Fatalf("covered key %s: closest = %s, true owner %s", key.Short(), got.Short(), want.Short())
			}
		}
	})
}

func genRingID() *rapid.Generator[id.ID] {
	return rapid.Custom(func(t *rapid.T) id.ID {
		var x id.ID
		switch rapid.IntRange(0, 5).Draw(t, "shape") {
		case 0, 1, 2:
			// Few distinct values: collisions, near neighbours, and the
			// zero ID (byte 0 and byte 19 zero) often.
			x[0] = byte(rapid.IntRange(0, 7).Draw(t, "top") * 32)
			x[19] = byte(rapid.IntRange(0, 1).Draw(t, "low"))
		case 3:
			// The ends of the space and its middle.
			x = rapid.SampledFrom([]id.ID{{}, top(0x80), top(0xff).Add(id.ID{1: 0xff, 19: 0xff})}).Draw(t, "edge")
		default:
			copy(x[:], rapid.SliceOfN(rapid.Byte(), id.Bytes, id.Bytes).Draw(t, "bytes"))
		}
		return x
	})
}

func genNearID(c id.ID) *rapid.Generator[id.ID] {
	return rapid.Custom(func(t *rapid.T) id.ID {
		var off id.ID
		off[19] = byte(rapid.IntRange(0, 20).Draw(t, "off"))
		if rapid.Bool().Draw(t, "below") {
			return c.Sub(off)
		}
		return c.Add(off)
	})
}
