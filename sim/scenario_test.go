package sim

import (
	"testing"
	"time"

	"github.com/shoal-p2p/shoal/id"
)

// lookupsFor issues n random lookups spaced by gap and lets them finish.
func lookupsFor(s *Sim, n int, gap time.Duration) LookupStats {
	s.ResetLookups()
	for i := 0; i < n; i++ {
		s.RandomLookup()
		s.RunFor(gap)
	}
	s.RunFor(45 * time.Second)
	return s.Lookups()
}

func TestJoinThroughProtocol(t *testing.T) {
	const seed = 2
	s := newSim(t, seed)
	first := s.Join()
	s.RunFor(time.Second)
	for i := 0; i < 150; i++ {
		s.Join()
		s.RunFor(200 * time.Millisecond)
	}
	// A burst of concurrent joins through the same node.
	for i := 0; i < 50; i++ {
		s.Join(first)
	}
	s.RunFor(60 * time.Second)
	if got := len(s.ReadyNodes()); got != 201 {
		t.Fatalf("seed %d: %d of 201 nodes ready", seed, got)
	}
	if ok, bad := s.Converged(); !ok {
		t.Fatalf("seed %d: %d nodes have a wrong leaf set", seed, bad)
	}
	st := lookupsFor(s, 2000, 5*time.Millisecond)
	t.Logf("seed=%d correct=%.2f%% avg_hops=%.2f", seed, st.CorrectPct(), st.AvgHops())
	if st.Correct != st.Issued {
		t.Fatalf("seed %d: %d of %d correct; wrong: %+v", seed, st.Correct, st.Issued, st.Wrong)
	}
}

func TestChurn(t *testing.T) {
	const seed, n = 3, 1000
	s := newSim(t, seed)
	s.Bootstrap(n)
	s.RunFor(10 * time.Second)
	// Median session of 5 virtual minutes: failure rate per node ln2/5min.
	perMin := float64(n) * 0.693 / 5
	gap := time.Duration(float64(time.Minute) / perMin)
	s.ResetLookups()
	end := s.Now().Add(5 * time.Minute)
	next := s.Now()
	crashes := 0
	for s.Now().Before(end) {
		if !s.Now().Before(next) {
			s.CrashRandom()
			s.Join()
			crashes++
			next = s.Now().Add(time.Duration(s.Rand().ExpFloat64() * float64(gap)))
		}
		s.RandomLookup()
		s.RunFor(20 * time.Millisecond)
	}
	s.RunFor(45 * time.Second)
	during := s.Lookups()
	t.Logf("seed=%d churn: crashes=%d issued=%d correct=%.3f%% delivered=%.3f%% avg_hops=%.2f failed=%d %v drops=%v", seed, crashes, during.Issued, during.CorrectPct(), during.DeliveredPct(), during.AvgHops(), during.Failed, during.FailReasons, during.Drops)
	if during.CorrectPct() < 99 {
		t.Fatalf("seed %d: %.3f%% correct during churn, want >= 99%%; wrong: %+v", seed, during.CorrectPct(), head(during.Wrong))
	}
	// After the repair time every lookup reaches the true owner.
	s.RunFor(60 * time.Second)
	after := lookupsFor(s, 3000, 10*time.Millisecond)
	t.Logf("seed=%d after repair: correct=%.3f%%", seed, after.CorrectPct())
	if after.Correct != after.Issued {
		t.Fatalf("seed %d: %d of %d correct after repair; wrong: %+v", seed, after.Correct, after.Issued, head(after.Wrong))
	}
}

func head(w []WrongDelivery) []WrongDelivery {
	if len(w) > 5 {
		return w[:5]
	}
	return w
}

func TestNonTransitiveLinks(t *testing.T) {
	const seed, n = 4, 500
	s := newSim(t, seed)
	s.Bootstrap(n)
	cut := s.Net.CutRandomPairs(s.Live(), 0.02)
	s.RunFor(2 * time.Minute)
	st := lookupsFor(s, 3000, 10*time.Millisecond)
	t.Logf("seed=%d cut=%d pairs correct=%.3f%% delivered=%.3f%% drops=%v", seed, cut, st.CorrectPct(), st.DeliveredPct(), st.Drops)
	if st.Correct != st.Issued {
		t.Fatalf("seed %d: %d of %d correct with 2%% of links cut; wrong: %+v", seed, st.Correct, st.Issued, head(st.Wrong))
	}
}

func TestPartitionHeals(t *testing.T) {
	const seed, n = 5, 200
	s := newSim(t, seed)
	s.Bootstrap(n)
	s.RunFor(10 * time.Second)
	live := s.Live()
	var a, b []id.ID
	for i, x := range live {
		if i%2 == 0 {
			a = append(a, x)
		} else {
			b = append(b, x)
		}
	}
	s.Net.Partition(a, b)
	s.RunFor(2 * time.Minute)
	// Each half became a ring of its own.
	if la := len(s.Core(a[0]).LeafSet()); la == 0 {
		t.Fatalf("seed %d: half A node has an empty leaf set", seed)
	}
	for _, x := range s.Core(a[0]).LeafSet() {
		for _, y := range b {
			if x.ID == y {
				t.Fatalf("seed %d: node of half A still lists %s of half B after 2 minutes", seed, y.Short())
			}
		}
	}
	s.Net.Heal()
	s.RunFor(5 * time.Minute)
	if ok, bad := s.Converged(); !ok {
		t.Fatalf("seed %d: after healing, %d nodes have a wrong leaf set", seed, bad)
	}
	st := lookupsFor(s, 2000, 10*time.Millisecond)
	if st.Correct != st.Issued {
		t.Fatalf("seed %d: %d of %d correct after heal; wrong: %+v", seed, st.Correct, st.Issued, head(st.Wrong))
	}
}

func TestCrashedNeighbourReplacedWithinSeconds(t *testing.T) {
	const seed, n = 6, 300
	s := newSim(t, seed)
	s.Bootstrap(n)
	s.RunFor(10 * time.Second)
	victim := s.Live()[17]
	s.Crash(victim)
	start := s.Now()
	var took time.Duration
	for i := 0; i < 600; i++ {
		s.RunFor(100 * time.Millisecond)
		if ok, _ := s.Converged(); ok {
			took = s.Now().Sub(start)
			break
		}
	}
	t.Logf("seed=%d crashed neighbour replaced in every leaf set after %v", seed, took)
	if took == 0 || took > 30*time.Second {
		t.Fatalf("seed %d: leaf sets not repaired within 30s (took %v)", seed, took)
	}
}

// Rings from 1 to 40 nodes: the leaf-set halves are short, overlap, or are
// disjoint; every lookup must reach the true owner in each case.
func TestSmallRings(t *testing.T) {
	for n := 1; n <= 40; n++ {
		seed := int64(100 + n)
		s := newSim(t, seed)
		s.Bootstrap(n)
		s.RunFor(5 * time.Second)
		st := lookupsFor(s, 300, 5*time.Millisecond)
		if st.Correct != st.Issued {
			t.Fatalf("n=%d seed %d: %d of %d correct; drops %v; wrong %+v", n, seed, st.Correct, st.Issued, st.Drops, head(st.Wrong))
		}
	}
}
