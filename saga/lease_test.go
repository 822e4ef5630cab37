package saga

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/id"
)

// slowModel is a saga whose first step takes long: it records how many
// executions of that step overlap and how many were cut short.
type slowModel struct {
	d                           time.Duration
	mu                          sync.Mutex
	active, maxActive, finished int
	cut                         int
	applied                     bool
}

func (m *slowModel) define(s *Sagas) error {
	return s.Define("slow",
		Step{Name: "long", Do: func(ctx context.Context, r Run) error {
			m.mu.Lock()
			m.active++
			m.maxActive = max(m.maxActive, m.active)
			m.mu.Unlock()
			err := sleep(ctx, m.d)
			m.mu.Lock()
			defer m.mu.Unlock()
			m.active--
			if err != nil {
				m.cut++
				return err
			}
			m.finished++
			m.applied = true
			return nil
		}, Undo: func(context.Context, Run) error {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.applied = false
			return nil
		}},
		Step{Name: "quick", Do: func(context.Context, Run) error { return nil }},
	)
}

// TestLongStepKeepsLease: a step longer than the lease runs once; the
// heartbeat keeps other nodes from taking the run over.
func TestLongStepKeepsLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		seed := baseSeed() + 3
		sm := &slowModel{d: 25 * time.Second}
		e := newEnv(t, seed, 5, nil, sm.define)
		defer e.c.Close()
		if err := sagasOf(e.c.Any()).Start(context.Background(), "slow", "long-1", nil); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		st := e.wait("long-1", 2*time.Minute)
		sm.mu.Lock()
		defer sm.mu.Unlock()
		if st.State != StateDone || sm.finished != 1 || sm.cut != 0 || sm.maxActive != 1 {
			t.Fatalf("seed %d: %+v; step finished %d times, cut %d, at most %d at once", seed, st, sm.finished, sm.cut, sm.maxActive)
		}
	})
}

// TestIsolatedRunnerStops: a runner cut off from the ring mid-step cannot
// renew its lease; it stops the step when the lease ends, before another
// node takes over, so the step never runs twice at once.
func TestIsolatedRunnerStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		seed := baseSeed() + 4
		sm := &slowModel{d: 25 * time.Second}
		var runner atomic.Pointer[id.ID]
		e := newEnv(t, seed, 5, func(self id.ID) hookFn {
			return func(_ context.Context, b Boundary) error {
				if b == (Boundary{Step: 0, Point: "before"}) {
					runner.CompareAndSwap(nil, &self)
				}
				return nil
			}
		}, sm.define)
		defer e.c.Close()
		if err := sagasOf(e.c.Any()).Start(context.Background(), "slow", "iso-1", nil); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		for runner.Load() == nil {
			time.Sleep(100 * time.Millisecond)
		}
		r := *runner.Load()
		time.Sleep(time.Second)
		e.c.Net.Partition([]id.ID{r})
		var others []id.ID
		for _, m := range e.c.Live() {
			if m.ID != r {
				others = append(others, m.ID)
			}
		}
		deadline := time.Now().Add(5 * time.Minute)
		var st Status
		for time.Now().Before(deadline) {
			s := sagasOf(member(e.c, others[0]))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			got, err := s.Wait(ctx, "iso-1")
			cancel()
			if err == nil {
				st = got
				break
			}
		}
		e.c.Net.Heal()
		time.Sleep(30 * time.Second)
		sm.mu.Lock()
		defer sm.mu.Unlock()
		if st.State != StateDone || st.Runner == r.String() || sm.maxActive != 1 || sm.cut != 1 || sm.finished != 1 || !sm.applied {
			t.Fatalf("seed %d: %+v (isolated runner %s); step finished %d times, cut %d, at most %d at once", seed, st, r.Short(), sm.finished, sm.cut, sm.maxActive)
		}
		t.Logf("seed %d: isolated runner's step was cut at its lease's end; %s resumed and finished", seed, st.Runner[:8])
	})
}
