package kv

import (
	"slices"
	"sort"

	"github.com/shoal-p2p/shoal/id"
)

// arc is the part of the circle from From (exclusive) clockwise to To
// (inclusive). From == To means the whole circle.
type arc struct {
	From id.ID `json:"from"`
	To   id.ID `json:"to"`
}

func (a arc) contains(x id.ID) bool {
	if a.From == a.To {
		return true
	}
	return x == a.To || id.Between(x, a.From, a.To)
}

// span is a non-wrapping interval [Lo, Hi] of the ID line (inclusive).
type span struct{ Lo, Hi id.ID }

var maxID = func() id.ID {
	var x id.ID
	for i := range x {
		x[i] = 0xff
	}
	return x
}()

func inc(x id.ID) (id.ID, bool) { // x+1, and whether it overflowed
	y := x.Add(id.ID{19: 1})
	return y, y == (id.ID{})
}

// spans turns an arc into at most two non-wrapping spans.
func (a arc) spans() []span {
	if a.From == a.To {
		return []span{{id.ID{}, maxID}}
	}
	lo, wrapped := inc(a.From)
	if wrapped { // From is the max ID: the arc starts at 0
		return []span{{id.ID{}, a.To}}
	}
	if !a.To.Less(lo) {
		return []span{{lo, a.To}}
	}
	return []span{{lo, maxID}, {id.ID{}, a.To}}
}

// arcSet is a set of IDs as sorted, disjoint, non-adjacent spans.
type arcSet struct{ s []span }

func (set *arcSet) normalize() {
	sort.Slice(set.s, func(i, j int) bool { return set.s[i].Lo.Less(set.s[j].Lo) })
	var out []span
	for _, sp := range set.s {
		if n := len(out); n > 0 {
			last := &out[n-1]
			next, ovf := inc(last.Hi)
			if ovf || !next.Less(sp.Lo) { // overlapping or adjacent
				if last.Hi.Less(sp.Hi) {
					last.Hi = sp.Hi
				}
				continue
			}
		}
		out = append(out, sp)
	}
	set.s = out
}

func (set *arcSet) add(a arc) {
	set.s = append(set.s, a.spans()...)
	set.normalize()
}

func (set *arcSet) contains(x id.ID) bool {
	i := sort.Search(len(set.s), func(i int) bool { return x.Less(set.s[i].Lo) })
	return i > 0 && !set.s[i-1].Hi.Less(x)
}

// covers reports whether the whole arc is in the set.
func (set *arcSet) covers(a arc) bool {
	for _, sp := range a.spans() {
		i := sort.Search(len(set.s), func(i int) bool { return sp.Lo.Less(set.s[i].Lo) })
		if i == 0 || set.s[i-1].Hi.Less(sp.Hi) {
			return false
		}
	}
	return true
}

// intersect keeps only the parts of the set inside the arcs given.
func (set *arcSet) intersect(keep []arc) {
	var sp []span
	for _, a := range keep {
		sp = append(sp, a.spans()...)
	}
	set.intersectSpans(sp)
}

func (set *arcSet) empty() bool { return len(set.s) == 0 }

// list returns the spans (for persistence).
func (set *arcSet) list() []span { return append([]span(nil), set.s...) }

// unionOf returns the spans of all the sets as one set.
func unionOf(sets ...*arcSet) arcSet {
	var out arcSet
	for _, set := range sets {
		out.s = append(out.s, set.s...)
	}
	out.normalize()
	return out
}

// addSpans adds spans to the set.
func (set *arcSet) addSpans(sp []span) {
	set.s = append(set.s, sp...)
	set.normalize()
}

// clip returns the parts of the set inside arc a.
func (set *arcSet) clip(a arc) []span {
	c := arcSet{s: append([]span(nil), set.s...)}
	c.intersect([]arc{a})
	return c.s
}

// coveredBy returns the spans covered by at least need of the span lists
// (each list is one source's coverage, assumed disjoint within itself).
func coveredBy(lists [][]span, need int) []span {
	if need <= 0 {
		return []span{{id.ID{}, maxID}}
	}
	type ev struct {
		at    id.ID
		end   bool // at is one past a span's end
		delta int
	}
	var evs []ev
	for _, l := range lists {
		for _, sp := range l {
			evs = append(evs, ev{at: sp.Lo, delta: +1})
			if next, ovf := inc(sp.Hi); !ovf {
				evs = append(evs, ev{at: next, delta: -1})
			}
		}
	}
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].at != evs[j].at {
			return evs[i].at.Less(evs[j].at)
		}
		return evs[i].delta < evs[j].delta
	})
	var out []span
	count := 0
	var start id.ID
	for i := 0; i < len(evs); {
		at := evs[i].at
		before := count
		for i < len(evs) && evs[i].at == at {
			count += evs[i].delta
			i++
		}
		switch {
		case before < need && count >= need:
			start = at
		case before >= need && count < need:
			hi := at.Sub(id.ID{19: 1})
			out = append(out, span{start, hi})
		}
	}
	if count >= need {
		out = append(out, span{start, maxID})
	}
	return out
}

// subtract removes spans from the set.
func (set *arcSet) subtract(sp []span) {
	if len(sp) == 0 || len(set.s) == 0 {
		return
	}
	cut := arcSet{s: slices.Clone(sp)}
	cut.normalize()
	var out []span
	for _, s := range set.s {
		lo := s.Lo
		done := false
		for _, c := range cut.s {
			if c.Hi.Less(lo) || s.Hi.Less(c.Lo) {
				continue
			}
			if lo.Less(c.Lo) {
				out = append(out, span{lo, c.Lo.Sub(id.ID{19: 1})})
			}
			next, ovf := inc(c.Hi)
			if ovf || s.Hi.Less(next) {
				done = true
				break
			}
			lo = next
		}
		if !done {
			out = append(out, span{lo, s.Hi})
		}
	}
	set.s = out
	set.normalize()
}

// intersectSpans keeps only the parts of the set inside sp.
func (set *arcSet) intersectSpans(sp []span) {
	var out []span
	for _, k := range sp {
		for _, s := range set.s {
			lo, hi := s.Lo, s.Hi
			if lo.Less(k.Lo) {
				lo = k.Lo
			}
			if k.Hi.Less(hi) {
				hi = k.Hi
			}
			if !hi.Less(lo) {
				out = append(out, span{lo, hi})
			}
		}
	}
	set.s = out
	set.normalize()
}
