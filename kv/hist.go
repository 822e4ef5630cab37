package kv

import (
	"slices"
	"sort"
	"strings"

	"github.com/shoal-p2p/shoal/id"
)

// Configuration history (docs/kv.md, invariant 6): a node that is a
// synchronised replica of a range under replica set C could accept writes
// there under C, and a write committed under C is held by a majority of C,
// not necessarily by this node. So "I have synchronised this range" is not
// a claim to hold every write in it; it is a claim to hold what a read of a
// majority of each replica set it served under would give. A node records
// those replica sets (its "history") for the parts of the circle it served
// them on, reports them with its sync answers, and forgets one only after
// it has read it from a majority of its members itself. A node that
// synchronises a range must read, besides the sources its own view asks
// for, enough members of every replica set any source reports: its own
// view is the view of one side of a split, and cannot name the replica set
// the writes on the other side went to.

// HistEntry is one replica set this node served under and where.
type HistEntry struct {
	Cfg   []id.ID `json:"cfg"`
	Spans []span  `json:"spans"`
}

type histItem struct {
	cfg   []id.ID // sorted
	spans arcSet
}

// cfgHist is a node's configuration history, by replica set.
type cfgHist struct {
	m map[string]*histItem
}

func cfgIDs(ps []id.ID) []id.ID {
	out := slices.Clone(ps)
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return slices.Compact(out)
}

func cfgKey(sorted []id.ID) string {
	var b strings.Builder
	for _, x := range sorted {
		b.Write(x[:])
	}
	return b.String()
}

func newHist(es []HistEntry) cfgHist {
	h := cfgHist{m: map[string]*histItem{}}
	for _, e := range es {
		h.add(e.Cfg, e.Spans)
	}
	return h
}

// add records spans under cfg; it reports whether anything was new.
func (h *cfgHist) add(cfg []id.ID, sp []span) bool {
	if len(cfg) == 0 || len(sp) == 0 {
		return false
	}
	c := cfgIDs(cfg)
	k := cfgKey(c)
	it := h.m[k]
	if it == nil {
		it = &histItem{cfg: c}
		h.m[k] = it
	}
	before := it.spans.list()
	it.spans.addSpans(sp)
	return !sameSpans(before, it.spans.s)
}

// remove forgets spans of cfg; it reports whether anything changed.
func (h *cfgHist) remove(cfg []id.ID, sp []span) bool {
	k := cfgKey(cfgIDs(cfg))
	it := h.m[k]
	if it == nil {
		return false
	}
	before := it.spans.list()
	it.spans.subtract(sp)
	if it.spans.empty() {
		delete(h.m, k)
	}
	return !sameSpans(before, it.spans.s)
}

// keepOnly forgets everything outside set; it reports whether anything
// changed.
func (h *cfgHist) keepOnly(set arcSet) bool {
	changed := false
	for k, it := range h.m {
		before := it.spans.list()
		it.spans.intersectSpans(set.s)
		if !sameSpans(before, it.spans.s) {
			changed = true
		}
		if it.spans.empty() {
			delete(h.m, k)
		}
	}
	return changed
}

// list returns the history in a fixed order (for persistence and answers).
func (h *cfgHist) list() []HistEntry {
	keys := make([]string, 0, len(h.m))
	for k := range h.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]HistEntry, 0, len(keys))
	for _, k := range keys {
		it := h.m[k]
		out = append(out, HistEntry{Cfg: slices.Clone(it.cfg), Spans: it.spans.list()})
	}
	return out
}

// clip returns the entries' parts inside arc a.
func (h *cfgHist) clip(a arc) []HistEntry {
	var out []HistEntry
	for _, e := range h.list() {
		set := arcSet{s: e.Spans}
		if sp := set.clip(a); len(sp) > 0 {
			out = append(out, HistEntry{Cfg: e.Cfg, Spans: sp})
		}
	}
	return out
}

// stale reports whether, inside arc a, the history holds a replica set
// other than cur.
func (h *cfgHist) stale(a arc, cur []id.ID) bool {
	k := cfgKey(cfgIDs(cur))
	for key, it := range h.m {
		if key != k && len(it.spans.clip(a)) > 0 {
			return true
		}
	}
	return false
}

// histShort returns the parts of arc a where some replica set of es (the
// histories reported by the sources, and this node's own) was not read
// from enough of its members: fewer than |C| − majority(|C|) + 1 of them
// among answered (the nodes whose records arrived whole; this node counts
// as one). Such a read meets every majority of C, so it holds every write
// committed under C; a member that never served under C holds none of its
// writes, and none needs it, so counting it is right either way.
func histShort(a arc, es []HistEntry, answered map[id.ID]bool) []span {
	var bad arcSet
	for _, e := range es {
		cfg := cfgIDs(e.Cfg)
		got := 0
		for _, m := range cfg {
			if answered[m] {
				got++
			}
		}
		if got >= len(cfg)-majority(len(cfg))+1 {
			continue
		}
		set := arcSet{s: slices.Clone(e.Spans)}
		set.normalize()
		bad.addSpans(set.clip(a))
	}
	return bad.list()
}
