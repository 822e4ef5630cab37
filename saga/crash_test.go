package saga

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/internal/testring"
)

type crashCase struct {
	saga   string
	failAt int
	b      Boundary
}

// crashCases: every boundary of the forward path of "trip" (3 steps × 3
// points), the forward boundaries of the always-failing third step of
// "trip-fail", and its undo path (undo of steps 2 and 1, × 3 points).
func crashCases() []crashCase {
	var out []crashCase
	points := []string{"before", "after", "written"}
	for k := range 3 {
		for _, p := range points {
			out = append(out, crashCase{"trip", -1, Boundary{Step: k, Point: p}})
		}
	}
	for _, p := range points {
		out = append(out, crashCase{"trip-fail", 2, Boundary{Step: 2, Point: p}})
	}
	for _, k := range []int{1, 0} {
		for _, p := range points {
			out = append(out, crashCase{"trip-fail", 2, Boundary{Undo: true, Step: k, Point: p}})
		}
	}
	return out
}

// TestCrashAtEveryBoundary crashes the node running a 3-step saga at each
// boundary of the forward and the undo path, with and without restarting
// it, and checks that the run ends fully done or fully undone.
func TestCrashAtEveryBoundary(t *testing.T) {
	var cases, dupDo, dupUndo, undoUnapplied, resumedElsewhere int
	for i, cc := range crashCases() {
		for _, restart := range []bool{false, true} {
			path := "do"
			if cc.b.Undo {
				path = "undo"
			}
			name := fmt.Sprintf("%s/%s%d-%s/restart=%v", cc.saga, path, cc.b.Step, cc.b.Point, restart)
			seed := baseSeed() + 100 + int64(2*i)
			if restart {
				seed++
			}
			t.Run(name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					r := crashOnce(t, seed, cc, restart)
					cases++
					dupDo += r.dupDo
					dupUndo += r.dupUndo
					undoUnapplied += r.undoUnapplied
					if r.elsewhere {
						resumedElsewhere++
					}
					t.Logf("seed %d: %s; resumed on another node: %v; actions run twice: %d, undos run twice: %d, undos of unapplied actions: %d; log: %v",
						seed, r.state, r.elsewhere, r.dupDo, r.dupUndo, r.undoUnapplied, r.log)
				})
			})
		}
	}
	t.Logf("%d boundary crashes (%d boundaries × restart or not), all ended done or undone; %d resumed by another node; actions run twice: %d; undos run twice: %d; undos of never-applied actions: %d",
		cases, len(crashCases()), resumedElsewhere, dupDo, dupUndo, undoUnapplied)
}

type crashResult struct {
	state                         string
	elsewhere                     bool
	dupDo, dupUndo, undoUnapplied int
	log                           []string
}

func crashOnce(t *testing.T, seed int64, cc crashCase, restart bool) crashResult {
	var fired atomic.Bool
	var cl atomic.Pointer[testring.Cluster]
	crashed := make(chan id.ID, 1)
	runID := fmt.Sprintf("crash-%d", seed)
	e := newEnv(t, seed, 5, func(self id.ID) hookFn {
		return func(ctx context.Context, b Boundary) error {
			if b != cc.b || !fired.CompareAndSwap(false, true) {
				return nil
			}
			c := cl.Load()
			go func() {
				c.Crash(member(c, self))
				crashed <- self
			}()
			<-ctx.Done() // the runner dies here: Crash closes its Sagas
			return ctx.Err()
		}
	})
	cl.Store(e.c)
	defer e.c.Close()

	if err := sagasOf(e.c.Any()).Start(context.Background(), cc.saga, runID, []byte("input")); err != nil {
		t.Fatalf("seed %d: Start: %v", seed, err)
	}
	var victim id.ID
	select {
	case victim = <-crashed:
	case <-time.After(2 * time.Minute):
		t.Fatalf("seed %d: boundary %+v never reached; log %v", seed, cc.b, e.model.snapshot(runID).log)
	}
	if restart {
		time.Sleep(testConfig().RunnerLease / 2) // within the lease: the node itself resumes
		e.c.Restart(member(e.c, victim))
	}
	st := e.wait(runID, 5*time.Minute)
	// Give a stray runner time to act wrongly (a lease and its margin),
	// then check again.
	time.Sleep(2 * testConfig().RunnerLease)
	st2 := e.wait(runID, time.Minute)
	if st2.State != st.State {
		t.Fatalf("seed %d: ended %s, later %s", seed, st.State, st2.State)
	}
	r := crashResult{state: st.State, elsewhere: st.Runner != victim.String(), log: e.model.snapshot(runID).log}
	r.dupDo, r.dupUndo, r.undoUnapplied = e.check(runID, st, cc.failAt)
	return r
}
