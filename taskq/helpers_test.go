package taskq

import (
	"context"
	"flag"
	"log/slog"
	"testing"
	"time"

	"github.com/shoal-p2p/shoal/internal/testring"
	"github.com/shoal-p2p/shoal/service"
)

var (
	seedFlag  = flag.Int64("taskq.seed", 0, "replay one seed of the fault tests")
	seedsFlag = flag.Int("taskq.seeds", 1, "number of seeds each fault test runs (each test's own first)")
)

// testConfig is tuned for memnet rings inside synctest.
func testConfig() Config {
	c := DefaultConfig()
	c.Retry = service.DefaultRetryPolicy()
	c.Retry.PerAttempt = 500 * time.Millisecond
	c.Retry.Overall = 5 * time.Second
	c.PollWait = 2 * time.Second
	c.Reconcile = 2 * time.Second
	return c
}

// newRing starts a ring with Queues on every member (on every restart too).
func newRing(t *testing.T, seed int64, nodes int, opts ...func(*testring.Options)) *testring.Cluster {
	t.Helper()
	o := testring.Options{Seed: seed, Nodes: nodes, Attach: func(m *testring.Member) (any, func()) {
		q, err := New(m.Node, m.KV, testConfig())
		if err != nil {
			t.Errorf("seed %d: taskq.New: %v", seed, err)
			return nil, nil
		}
		return q, func() { q.Close() }
	}}
	for _, f := range opts {
		f(&o)
	}
	return testring.New(t, o)
}

func qs(m *testring.Member) *Queues { return m.Extra.(*Queues) }

func ctxT(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// waitFor polls cond every 100ms of (virtual) time until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if cond() {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return cond()
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
