package resource

import (
	"context"
	"flag"
	"testing"
	"time"

	"github.com/shoal-p2p/shoal/internal/testring"
)

var (
	flagSeed  = flag.Int64("resource.seed", 0, "replay the fault test with this seed")
	flagSeeds = flag.Int("resource.seeds", 1, "number of seeds the fault test runs")
)

// Test timing: kv in testring retries for up to 4s, so a 6s lease leaves
// room for a slow grant while expiries still happen within a short run.
const (
	testTTL   = 6 * time.Second
	testDrift = 500 * time.Millisecond
)

// ring starts n nodes, each with a Manager (Member.Extra) whose clock is
// time.Now shifted by offset(member).
func ring(t *testing.T, seed int64, n int, offset func(m *testring.Member) time.Duration) *testring.Cluster {
	t.Helper()
	return testring.New(t, testring.Options{Seed: seed, Nodes: n, Attach: func(m *testring.Member) (any, func()) {
		var off time.Duration
		if offset != nil {
			off = offset(m)
		}
		mgr, err := New(m.KV, Config{TTL: testTTL, DriftMargin: testDrift, Holder: m.ID.Short(),
			Clock: func() time.Time { return time.Now().Add(off) }})
		if err != nil {
			t.Fatalf("seed %d: resource.New: %v", seed, err)
		}
		return mgr, func() { mgr.Close() }
	}})
}

func mgr(m *testring.Member) *Manager { return m.Extra.(*Manager) }

func tctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
