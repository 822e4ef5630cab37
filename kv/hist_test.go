package kv

import (
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/shoal-p2p/shoal/id"
)

func hid(b byte) id.ID {
	var x id.ID
	x[0] = b
	return x
}

func TestArcSetSubtract(t *testing.T) {
	cases := []struct {
		name     string
		set, cut []span
		want     []span
	}{
		{"middle", []span{{hid(1), hid(9)}}, []span{{hid(3), hid(5)}}, []span{{hid(1), hid(3).Sub(id.ID{19: 1})}, {hid(5).Add(id.ID{19: 1}), hid(9)}}},
		{"all", []span{{hid(1), hid(9)}}, []span{{hid(0), hid(10)}}, nil},
		{"left edge", []span{{hid(1), hid(9)}}, []span{{hid(0), hid(4)}}, []span{{hid(4).Add(id.ID{19: 1}), hid(9)}}},
		{"right edge to max", []span{{hid(1), maxID}}, []span{{hid(4), maxID}}, []span{{hid(1), hid(4).Sub(id.ID{19: 1})}}},
		{"two cuts, two spans", []span{{hid(1), hid(5)}, {hid(8), hid(12)}}, []span{{hid(2), hid(2)}, {hid(4), hid(9)}},
			[]span{{hid(1), hid(2).Sub(id.ID{19: 1})}, {hid(2).Add(id.ID{19: 1}), hid(4).Sub(id.ID{19: 1})}, {hid(9).Add(id.ID{19: 1}), hid(12)}}},
		{"disjoint", []span{{hid(1), hid(2)}}, []span{{hid(5), hid(6)}}, []span{{hid(1), hid(2)}}},
	}
	for _, c := range cases {
		s := arcSet{s: c.set}
		s.normalize()
		s.subtract(c.cut)
		if !sameSpans(s.s, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, s.s, c.want)
		}
	}
}

// TestHistShort: a replica set counts as read once |C| − majority(|C|) + 1
// of its members answered, whoever they are; parts of the arc outside its
// spans are never short.
func TestHistShort(t *testing.T) {
	o, a, b, n := hid(1), hid(2), hid(3), hid(4)
	whole := arc{From: hid(0x80), To: hid(0x80)}
	part := []span{{hid(0x10), hid(0x20)}}
	es := []HistEntry{{Cfg: []id.ID{o, a, b}, Spans: part}}
	if got := histShort(whole, es, map[id.ID]bool{a: true, n: true}); !sameSpans(got, part) {
		t.Errorf("one member of three answered: short %v, want %v", got, part)
	}
	if got := histShort(whole, es, map[id.ID]bool{a: true, b: true}); len(got) != 0 {
		t.Errorf("two members of three answered: short %v, want none", got)
	}
	one := []HistEntry{{Cfg: []id.ID{o}, Spans: part}}
	if got := histShort(whole, one, map[id.ID]bool{o: true}); len(got) != 0 {
		t.Errorf("a ring of one read from its one member: short %v", got)
	}
	four := []HistEntry{{Cfg: []id.ID{o, a, b, n}, Spans: part}}
	if got := histShort(whole, four, map[id.ID]bool{o: true}); !sameSpans(got, part) {
		t.Errorf("one of four misses the majority of the other three: short %v, want %v", got, part)
	}
	if got := histShort(whole, four, map[id.ID]bool{o: true, n: true}); len(got) != 0 {
		t.Errorf("two of four meet every majority (three): short %v", got)
	}
	h := newHist(es)
	if !h.stale(whole, []id.ID{a, n, o}) || h.stale(whole, []id.ID{b, a, o}) {
		t.Errorf("stale: the history holds only {o,a,b}")
	}
	if h.remove([]id.ID{b, o, a}, part); len(h.list()) != 0 {
		t.Errorf("remove by the same set in another order left %v", h.list())
	}
}

// TestArcSetOpsProperty checks subtract and intersectSpans against a
// bitmap of 256 consecutive IDs.
func TestArcSetOpsProperty(t *testing.T) {
	at := func(b int) id.ID { return id.ID{19: byte(b)} }
	genSpans := func(t *rapid.T, name string) ([]span, [256]bool) {
		var bits [256]bool
		var out []span
		n := rapid.IntRange(0, 4).Draw(t, name+"-n")
		for i := range n {
			lo := rapid.IntRange(0, 255).Draw(t, fmt.Sprintf("%s-lo%d", name, i))
			hi := rapid.IntRange(lo, 255).Draw(t, fmt.Sprintf("%s-hi%d", name, i))
			out = append(out, span{at(lo), at(hi)})
			for x := lo; x <= hi; x++ {
				bits[x] = true
			}
		}
		return out, bits
	}
	rapid.Check(t, func(t *rapid.T) {
		a, abits := genSpans(t, "a")
		b, bbits := genSpans(t, "b")
		sub := arcSet{s: slices.Clone(a)}
		sub.normalize()
		sub.subtract(b)
		both := arcSet{s: slices.Clone(a)}
		both.normalize()
		both.intersectSpans(b)
		for x := range 256 {
			if got, want := sub.contains(at(x)), abits[x] && !bbits[x]; got != want {
				t.Fatalf("subtract: %d in %v − %v = %v: got %v", x, a, b, sub.s, got)
			}
			if got, want := both.contains(at(x)), abits[x] && bbits[x]; got != want {
				t.Fatalf("intersect: %d in %v ∩ %v = %v: got %v", x, a, b, both.s, got)
			}
		}
		// Normalized: sorted, disjoint, not adjacent.
		for i := 1; i < len(sub.s); i++ {
			if next, _ := inc(sub.s[i-1].Hi); !next.Less(sub.s[i].Lo) {
				t.Fatalf("subtract left overlapping or adjacent spans: %v", sub.s)
			}
		}
	})
}
