package sim

import (
	"math"
	"testing"
	"time"

	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/transport/memnet"
)

func newSim(t *testing.T, seed int64) *Sim {
	t.Helper()
	s, err := New(seed, ring.DefaultConfig(), memnet.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStableRingRoutesToOwner(t *testing.T) {
	const seed, n = 1, 1000
	s := newSim(t, seed)
	s.Bootstrap(n)
	s.RunFor(10 * time.Second)
	s.ResetMaintenance()
	for i := 0; i < 5000; i++ {
		s.RandomLookup()
		s.RunFor(10 * time.Millisecond)
	}
	s.RunFor(30 * time.Second)
	st := s.Lookups()
	bound := math.Log(n)/math.Log(16) + 1
	t.Logf("seed=%d issued=%d correct=%.2f%% avg_hops=%.2f p99=%d maint=%.3f msg/node/s", seed, st.Issued, st.CorrectPct(), st.AvgHops(), st.PercentileHops(99), s.MaintenancePerNodeSec())
	if st.Correct != st.Issued {
		t.Fatalf("seed %d: %d of %d lookups at the true owner; wrong: %+v", seed, st.Correct, st.Issued, st.Wrong)
	}
	if st.AvgHops() > bound {
		t.Fatalf("seed %d: avg hops %.2f > log16(N)+1 = %.2f", seed, st.AvgHops(), bound)
	}
	if m := s.MaintenancePerNodeSec(); m >= 0.5 {
		t.Fatalf("seed %d: maintenance %.3f msgs/node/s, want < 0.5", seed, m)
	}
}
