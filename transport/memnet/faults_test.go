package memnet

import (
	"testing"
	"time"

	"github.com/shoal-p2p/shoal/id"
)

// reaches sends one message from a to b on a drained network and reports
// whether it arrived.
func reaches(n *Network, log *[]delivery, a, b id.ID) bool {
	before := len(*log)
	n.Send(a, b, "ping")
	drain(n)
	return len(*log) == before+1
}

func TestPartitionAndHeal(t *testing.T) {
	n := New(DefaultConfig())
	ids := nodes(5)
	a, b, c, d, e := ids[0], ids[1], ids[2], ids[3], ids[4]
	log := recorder(n, ids)
	n.Partition([]id.ID{a, b}, []id.ID{c})
	for _, tc := range []struct {
		from, to id.ID
		want     bool
	}{
		{a, b, true}, {b, a, true}, {d, e, true}, // within groups; d and e form the rest
		{a, c, false}, {c, a, false}, {a, d, false}, {d, c, false}, {e, b, false},
	} {
		if got := reaches(n, log, tc.from, tc.to); got != tc.want {
			t.Errorf("partitioned: %s -> %s delivered = %v, want %v", tc.from.Short(), tc.to.Short(), got, tc.want)
		}
		if got := n.Reachable(tc.from, tc.to); got != tc.want {
			t.Errorf("partitioned: Reachable(%s, %s) = %v, want %v", tc.from.Short(), tc.to.Short(), got, tc.want)
		}
	}
	// A node attached after the partition joins the rest group.
	late := id.HashString("late")
	n.Attach(late, nil)
	if !n.Reachable(late, d) || n.Reachable(late, a) {
		t.Error("a node attached after Partition is not in the rest group")
	}
	n.Heal()
	for _, x := range ids {
		for _, y := range ids {
			if !reaches(n, log, x, y) {
				t.Errorf("healed: %s -> %s not delivered", x.Short(), y.Short())
			}
		}
	}
}

func TestPartitionBlocksInFlight(t *testing.T) {
	n := New(Config{MinLatency: 10 * time.Millisecond, MaxLatency: 10 * time.Millisecond})
	ids := nodes(2)
	log := recorder(n, ids)
	n.Send(ids[0], ids[1], "in flight")
	n.RunFor(5 * time.Millisecond)
	n.Partition(ids[:1])
	n.RunFor(time.Second)
	if len(*log) != 0 || n.Stats().Blocked != 1 {
		t.Fatalf("a message in flight crossed a partition: %v, %+v", *log, n.Stats())
	}
}

func TestCutIsNonTransitive(t *testing.T) {
	n := New(DefaultConfig())
	ids := nodes(3)
	a, b, c := ids[0], ids[1], ids[2]
	log := recorder(n, ids)
	n.Cut(a, c)
	for _, tc := range []struct {
		from, to id.ID
		want     bool
	}{
		{a, b, true}, {b, a, true}, {b, c, true}, {c, b, true},
		{a, c, false}, {c, a, false},
	} {
		if got := reaches(n, log, tc.from, tc.to); got != tc.want {
			t.Errorf("%s -> %s delivered = %v, want %v", tc.from.Short(), tc.to.Short(), got, tc.want)
		}
	}
	n.Heal() // does not remove cuts
	if reaches(n, log, a, c) {
		t.Error("Heal removed a cut")
	}
	n.Cut(c, a) // already cut: no change
	n.Uncut(c, a)
	if !reaches(n, log, a, c) || !reaches(n, log, c, a) {
		t.Error("Uncut did not restore the link")
	}
	n.Uncut(a, b) // not cut: no change
	n.Cut(a, b)
	if reaches(n, log, a, b) || !reaches(n, log, a, c) || !reaches(n, log, b, c) {
		t.Error("cut bookkeeping is off after repeated Cut/Uncut")
	}
}

func TestCutRandomPairs(t *testing.T) {
	ids := nodes(20) // 190 pairs
	for _, tc := range []struct {
		fraction float64
		want     int
	}{{0, 0}, {0.25, 48}, {0.75, 143}, {1, 190}} {
		count := func(seed int64) (int, [][2]int) {
			n := New(Config{Seed: seed})
			for _, x := range ids {
				n.Attach(x, nil)
			}
			withDups := append(append([]id.ID(nil), ids...), ids[0], ids[5])
			if got := n.CutRandomPairs(withDups, tc.fraction); got != tc.want {
				t.Fatalf("CutRandomPairs(20 nodes, %v) = %d, want %d", tc.fraction, got, tc.want)
			}
			var cut [][2]int
			for i := range ids {
				for j := i + 1; j < len(ids); j++ {
					if n.Reachable(ids[i], ids[j]) != n.Reachable(ids[j], ids[i]) {
						t.Fatal("a cut is one-way")
					}
					if !n.Reachable(ids[i], ids[j]) {
						cut = append(cut, [2]int{i, j})
					}
				}
			}
			return len(cut), cut
		}
		got, cut1 := count(1)
		if got != tc.want {
			t.Errorf("fraction %v: %d pairs cut, want %d", tc.fraction, got, tc.want)
		}
		_, cut2 := count(1)
		if len(cut1) != len(cut2) {
			t.Fatalf("fraction %v: same seed, different cuts", tc.fraction)
		}
		for i := range cut1 {
			if cut1[i] != cut2[i] {
				t.Fatalf("fraction %v: same seed, different cuts", tc.fraction)
			}
		}
		if tc.want > 0 && tc.want < 190 {
			_, cut3 := count(2)
			same := true
			for i := range cut1 {
				same = same && cut1[i] == cut3[i]
			}
			if same {
				t.Errorf("fraction %v: seeds 1 and 2 cut the same pairs", tc.fraction)
			}
		}
	}
}

func TestCrashDropsInFlightAndRestartDelivers(t *testing.T) {
	n := New(Config{MinLatency: 10 * time.Millisecond, MaxLatency: 10 * time.Millisecond})
	ids := nodes(2)
	a, b := ids[0], ids[1]
	log := recorder(n, ids)
	n.Send(a, b, "doomed")
	n.RunFor(5 * time.Millisecond)
	n.Crash(b)
	if n.Up(b) {
		t.Fatal("Up after Crash")
	}
	n.Send(a, b, "to a crashed node")
	n.Send(b, a, "from a crashed node")
	n.RunFor(time.Millisecond)
	var after []any
	n.Restart(b, func(from id.ID, msg any) { after = append(after, msg) })
	if !n.Up(b) {
		t.Fatal("not Up after Restart")
	}
	n.RunFor(time.Second) // "doomed" arrives at 10ms, after the restart: dropped
	if len(*log) != 0 || len(after) != 0 {
		t.Fatalf("delivered across a crash: old handler %v, new handler %v", *log, after)
	}
	n.Send(a, b, "fresh")
	n.RunFor(time.Second)
	if len(after) != 1 || after[0] != "fresh" {
		t.Fatalf("after restart the new handler got %v, want [fresh]", after)
	}
	if s := n.Stats(); s.Blocked != 3 || s.Delivered != 1 {
		t.Fatalf("stats %+v, want 3 blocked and 1 delivered", s)
	}
}

func TestRestartOfLiveNodeDropsInFlight(t *testing.T) {
	n := New(Config{MinLatency: time.Millisecond, MaxLatency: time.Millisecond})
	ids := nodes(2)
	log := recorder(n, ids)
	n.Send(ids[0], ids[1], "x")
	n.Restart(ids[1], nil) // keeps the recording handler
	n.Send(ids[0], ids[1], "y")
	drain(n)
	if len(*log) != 1 || (*log)[0].msg != "y" {
		t.Fatalf("got %v, want only y", *log)
	}
}

func TestCrashedSendersMessagesInFlightArrive(t *testing.T) {
	n := New(Config{MinLatency: 10 * time.Millisecond, MaxLatency: 10 * time.Millisecond})
	ids := nodes(2)
	log := recorder(n, ids)
	n.Send(ids[0], ids[1], "last words")
	n.Crash(ids[0])
	drain(n)
	if len(*log) != 1 {
		t.Fatalf("a message sent before the sender crashed was lost: %v", *log)
	}
}

func TestUnknownNodes(t *testing.T) {
	n := New(Config{})
	ids := nodes(2)
	log := recorder(n, ids[:1])
	n.Send(ids[0], ids[1], "to nobody")
	n.Send(ids[1], ids[0], "from nobody")
	n.Crash(ids[1]) // no-op
	drain(n)
	if len(*log) != 0 || n.Stats().Blocked != 2 || n.Up(ids[1]) {
		t.Fatalf("unknown node: log %v, stats %+v", *log, n.Stats())
	}
}

func TestSettersPanicOnBadValues(t *testing.T) {
	n := New(Config{})
	for name, f := range map[string]func(){
		"SetLoss":        func() { n.SetLoss(1) },
		"SetDuplicate":   func() { n.SetDuplicate(-0.5) },
		"SetLatency":     func() { n.SetLatency(2, 1) },
		"CutRandomPairs": func() { n.CutRandomPairs(nodes(3), 1.5) },
		"At nil":         func() { n.At(n.Now(), nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", name)
				}
			}()
			f()
		}()
	}
}

func TestSetters(t *testing.T) {
	n := New(Config{Seed: 5})
	ids := nodes(2)
	log := recorder(n, ids)
	n.SetLatency(2*time.Second, 2*time.Second)
	n.Send(ids[0], ids[1], 0)
	drain(n)
	if (*log)[0].at != 2*time.Second {
		t.Fatalf("SetLatency: delivered at %v, want 2s", (*log)[0].at)
	}
	n.SetLoss(0.5)
	n.SetDuplicate(0.5)
	for range 1000 {
		n.Send(ids[0], ids[1], 1)
	}
	drain(n)
	if s := n.Stats(); s.Dropped < 400 || s.Duplicated < 200 {
		t.Fatalf("SetLoss/SetDuplicate had no effect: %+v", s)
	}
}

// TestPauseHoldsBothWaysAndResumeReleases: a paused node neither receives
// nor sends; on Resume it gets its inbox at once, in arrival order (a
// message in flight when it was paused included), and what it sent leaves
// with its latency; a held message counts in neither Delivered nor Blocked.
func TestPauseHoldsBothWaysAndResumeReleases(t *testing.T) {
	const lat = 10 * time.Millisecond
	n := New(Config{MinLatency: lat, MaxLatency: lat})
	ids := nodes(3)
	a, b, c := ids[0], ids[1], ids[2]
	log := recorder(n, ids)
	n.Send(a, b, "in flight")
	n.RunFor(lat / 2)
	n.Pause(b)
	if !n.Paused(b) || n.Paused(a) {
		t.Fatal("Paused does not report the pause")
	}
	n.Send(a, b, "first")
	n.Send(c, b, "second")
	n.Send(b, a, "from the paused node")
	n.RunFor(time.Second)
	if len(*log) != 0 {
		t.Fatalf("delivered while paused: %+v", *log)
	}
	if st := n.Stats(); st.Held != 4 || st.Delivered != 0 || st.Blocked != 0 {
		t.Fatalf("stats while paused = %+v, want 4 held and nothing else", st)
	}
	n.Resume(b)
	resumed := n.Now().Sub(defaultStart)
	drain(n)
	want := []struct {
		from, to id.ID
		msg      string
		at       time.Duration
	}{
		{a, b, "in flight", resumed}, {a, b, "first", resumed}, {c, b, "second", resumed},
		{b, a, "from the paused node", resumed + lat},
	}
	if len(*log) != len(want) {
		t.Fatalf("after Resume: %d deliveries, want %d: %+v", len(*log), len(want), *log)
	}
	for i, w := range want {
		d := (*log)[i]
		if d.from != w.from || d.to != w.to || d.msg != w.msg || d.at != w.at {
			t.Errorf("delivery %d = %v→%v %q at %v, want %v→%v %q at %v",
				i, d.from.Short(), d.to.Short(), d.msg, d.at, w.from.Short(), w.to.Short(), w.msg, w.at)
		}
	}
	st := n.Stats()
	if st.Held != 0 || st.Sent+st.Duplicated != st.Delivered+st.Dropped+st.Blocked+st.Held {
		t.Fatalf("stats after Resume = %+v", st)
	}
	if !reaches(n, log, b, c) || !reaches(n, log, c, b) {
		t.Fatal("the resumed node does not talk normally")
	}
}

// TestPausedNodeCrashDropsBacklog: a paused process that is killed never
// sends its backlog nor reads its inbox; after a restart it is not paused.
func TestPausedNodeCrashDropsBacklog(t *testing.T) {
	n := New(DefaultConfig())
	ids := nodes(2)
	a, b := ids[0], ids[1]
	log := recorder(n, ids)
	n.Pause(b)
	n.Send(a, b, "to the paused node")
	n.Send(b, a, "from the paused node")
	drain(n)
	n.Crash(b)
	n.Resume(b) // not paused any more: does nothing
	drain(n)
	if len(*log) != 0 {
		t.Fatalf("a crashed paused node's backlog was delivered: %+v", *log)
	}
	st := n.Stats()
	if st.Held != 0 || st.Blocked != 2 || st.Sent+st.Duplicated != st.Delivered+st.Dropped+st.Blocked+st.Held {
		t.Fatalf("stats = %+v, want the 2 held messages blocked", st)
	}
	n.Restart(b, nil)
	if n.Paused(b) {
		t.Fatal("restarted node is still paused")
	}
	if !reaches(n, log, a, b) || !reaches(n, log, b, a) {
		t.Fatal("the restarted node does not talk")
	}
	n.Pause(a)
	n.Send(b, a, "held")
	drain(n)
	n.Restart(a, nil) // restarting an up node crashes it first
	n.Resume(a)
	drain(n)
	if n.Stats().Held != 0 || len(*log) != 2 {
		t.Fatalf("a restart did not drop the paused node's inbox: %+v", *log)
	}
}
