package kv

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
)

func peer(b byte) transport.Peer {
	var n id.ID
	n[0] = b
	return transport.Peer{ID: n, Addrs: []string{"/ip4/127.0.0.1/tcp/4000" + string('0'+b)}}
}

// TestPrevSame: a state whose previous configuration has the same members
// leaves it out of its encoding and still reports it; a changed one keeps
// it; and a reader that knows nothing of prev_same (an older node) reads no
// previous configuration, which is only ever the case when it equals Cfg.
func TestPrevSame(t *testing.T) {
	a, b, c, d := peer(1), peer(2), peer(3), peer(4)
	st := State{Version: 7, Cfg: []transport.Peer{a, b, c}}
	st.setPrev([]transport.Peer{c, a, b}) // same members, other order
	if !st.PrevSame || st.PrevCfg != nil {
		t.Fatalf("same members: PrevSame=%v PrevCfg=%v, want true and nil", st.PrevSame, st.PrevCfg)
	}
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "prev_cfg") {
		t.Fatalf("encoding still carries prev_cfg: %s", raw)
	}
	var back State
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if got := back.prevCfg(); !sameMembers(got, []transport.Peer{a, b, c}) {
		t.Fatalf("decoded prevCfg = %v, want a, b, c", got)
	}

	st.setPrev([]transport.Peer{a, b, d}) // a join replaced d by c
	if st.PrevSame || !sameMembers(st.prevCfg(), []transport.Peer{a, b, d}) {
		t.Fatalf("changed members: PrevSame=%v prevCfg=%v, want false and a, b, d", st.PrevSame, st.prevCfg())
	}
	st.setPrev(nil) // the key's first configuration
	if st.PrevSame || len(st.prevCfg()) != 0 {
		t.Fatalf("no previous configuration: PrevSame=%v prevCfg=%v", st.PrevSame, st.prevCfg())
	}
	if sameMembers([]transport.Peer{a, b}, []transport.Peer{a, b, c}) || sameMembers([]transport.Peer{a, b, c}, []transport.Peer{a, b, d}) {
		t.Fatal("sameMembers matched different sets")
	}
}

// TestTripwire: merge counts a state that replaces a committed one with a
// lower version under a higher ballot, and nothing else: not the same
// replacement of a state that is not known to be committed, not a newer
// state with a higher version, not an older one it refuses.
func TestTripwire(t *testing.T) {
	a, b := peer(1).ID, peer(2).ID
	committed := Record{Key: "k", Promised: Ballot{1, b}, Accepted: Ballot{1, b}, State: State{Version: 3}, Committed: true}
	uncommitted := committed
	uncommitted.Committed = false
	for _, c := range []struct {
		name  string
		local Record
		in    Record
		want  uint64
	}{
		{"committed v3 replaced by v0 under a higher ballot", committed, Record{Key: "k", Promised: Ballot{1, a}, Accepted: Ballot{2, a}}, 1},
		{"uncommitted v3 replaced by v0 under a higher ballot", uncommitted, Record{Key: "k", Promised: Ballot{1, a}, Accepted: Ballot{2, a}}, 0},
		{"committed v3 carried forward as v4", committed, Record{Key: "k", Accepted: Ballot{2, a}, State: State{Version: 4}}, 0},
		{"committed v3 re-proposed as v3", committed, Record{Key: "k", Accepted: Ballot{2, a}, State: State{Version: 3}}, 0},
		{"an older state, refused", committed, Record{Key: "k", Accepted: Ballot{1, a}, State: State{Version: 1}}, 0},
	} {
		k := &KV{log: slog.New(slog.DiscardHandler)}
		r := &replica{k: k, recs: map[string]*Record{"k": new(c.local)}}
		got, _ := r.merge(c.in)
		if n := k.Stats().VersionRegressions; n != c.want {
			t.Errorf("%s: %d regressions counted, want %d", c.name, n, c.want)
		}
		if newer(c.in.Accepted, c.in.State.Version, c.local.Accepted, c.local.State.Version) && got.State.Version != c.in.State.Version {
			t.Errorf("%s: merge kept version %d; the tripwire must not change what Paxos takes (%d)", c.name, got.State.Version, c.in.State.Version)
		}
	}
}
