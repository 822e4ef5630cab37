package saga

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/internal/testring"
)

var (
	seedFlag = flag.Int64("saga.seed", 0, "base seed of the ring tests (0: the fixed default)")
	logFlag  = flag.Bool("saga.log", false, "print the saga runtimes' logs")
)

func baseSeed() int64 {
	if *seedFlag != 0 {
		return *seedFlag
	}
	return 7001
}

// effects is the in-test model of what one run's steps did to the world:
// each action is a member of a set (idempotent), applied by Do and removed
// by Undo.
type effects struct {
	applied, ever [3]bool
	do, undo      [3]int
	undoUnapplied int      // undos of an action that was never applied
	log           []string // "do 0", "do 2 fail", "undo 1", in order
}

type model struct {
	mu    sync.Mutex
	runs  map[string]*effects
	delay time.Duration // how long each Do and Undo takes; default 10ms
}

func (m *model) get(runID string) *effects {
	e := m.runs[runID]
	if e == nil {
		e = &effects{}
		m.runs[runID] = e
	}
	return e
}

// snapshot copies one run's effects.
func (m *model) snapshot(runID string) effects {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := *m.get(runID)
	e.log = append([]string(nil), e.log...)
	return e
}

// steps builds the 3 steps of a test saga; step failAt (if >= 0) always
// fails without effect.
func (m *model) steps(failAt int) []Step {
	delay := m.delay
	if delay == 0 {
		delay = 10 * time.Millisecond
	}
	var out []Step
	for k := range 3 {
		out = append(out, Step{
			Name: fmt.Sprintf("step%d", k),
			Do: func(ctx context.Context, r Run) error {
				if err := sleep(ctx, delay); err != nil {
					return err
				}
				m.mu.Lock()
				defer m.mu.Unlock()
				e := m.get(r.ID)
				e.do[k]++
				if k == failAt {
					e.log = append(e.log, fmt.Sprintf("do %d fail", k))
					return errors.New("refused")
				}
				e.applied[k], e.ever[k] = true, true
				e.log = append(e.log, fmt.Sprintf("do %d", k))
				return nil
			},
			Undo: func(ctx context.Context, r Run) error {
				if err := sleep(ctx, delay); err != nil {
					return err
				}
				m.mu.Lock()
				defer m.mu.Unlock()
				e := m.get(r.ID)
				e.undo[k]++
				if !e.ever[k] {
					e.undoUnapplied++
				}
				e.applied[k] = false
				e.log = append(e.log, fmt.Sprintf("undo %d", k))
				return nil
			},
		})
	}
	return out
}

type hookFn = func(ctx context.Context, b Boundary) error

// env is a test ring where every member runs Sagas with the sagas "trip"
// (3 steps) and "trip-fail" (its third step always fails) defined.
type env struct {
	t     testing.TB
	seed  int64
	c     *testring.Cluster
	model *model
}

// testConfig shortens the lease and the scan so that resumption after a
// crash takes fewer (virtual) seconds of the ring's background work.
func testConfig() Config {
	c := DefaultConfig()
	c.RunnerLease = 4 * time.Second
	c.ScanInterval = time.Second
	if *logFlag {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return c
}

// newEnv starts a ring of n nodes; hook, if set, gives each incarnation of
// a member its boundary hook; define, if set, defines more sagas.
func newEnv(t testing.TB, seed int64, n int, hook func(self id.ID) hookFn, define ...func(s *Sagas) error) *env {
	t.Helper()
	return newEnvModel(t, seed, n, &model{runs: map[string]*effects{}}, hook, define...)
}

// newEnvModel is newEnv with a model of the caller's.
func newEnvModel(t testing.TB, seed int64, n int, mod *model, hook func(self id.ID) hookFn, define ...func(s *Sagas) error) *env {
	t.Helper()
	e := &env{t: t, seed: seed, model: mod}
	e.c = testring.New(t, testring.Options{Seed: seed, Nodes: n, Attach: func(m *testring.Member) (any, func()) {
		s, err := New(m.Node, m.KV, testConfig())
		if err != nil {
			t.Fatalf("seed %d: saga.New: %v", seed, err)
		}
		for name, failAt := range map[string]int{"trip": -1, "trip-fail": 2} {
			if err := s.Define(name, e.model.steps(failAt)...); err != nil {
				t.Fatalf("seed %d: Define: %v", seed, err)
			}
		}
		for _, d := range define {
			if err := d(s); err != nil {
				t.Fatalf("seed %d: Define: %v", seed, err)
			}
		}
		if hook != nil {
			s.SetHook(hook(m.ID))
		}
		return s, func() { s.Close() }
	}})
	return e
}

func sagasOf(m *testring.Member) *Sagas { return m.Extra.(*Sagas) }

// member is the cluster's record of a member (Attach sees a copy).
func member(c *testring.Cluster, x id.ID) *testring.Member {
	for _, m := range c.All() {
		if m.ID == x {
			return m
		}
	}
	return nil
}

// wait waits for a run to end from live members, moving to another if the
// one asked goes down.
func (e *env) wait(runID string, limit time.Duration) Status {
	e.t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		st, err := sagasOf(e.c.Any()).Wait(ctx, runID)
		cancel()
		if err == nil {
			return st
		}
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrBadName) {
			e.t.Fatalf("seed %d: wait %s: %v", e.seed, runID, err)
		}
	}
	e.t.Fatalf("seed %d: run %s did not end within %v", e.seed, runID, limit)
	return Status{}
}

// check verifies a run's end against the model: done with every action
// applied and none undone, or undone with every applied action undone, and
// no action after the first undo. It returns the duplicate runs.
func (e *env) check(runID string, st Status, failAt int) (dupDo, dupUndo, undoUnapplied int) {
	e.t.Helper()
	ef := e.model.snapshot(runID)
	fail := func(format string, a ...any) {
		e.t.Helper()
		e.t.Fatalf("seed %d: run %s ended %s (%+v): %s; log: %s", e.seed, runID, st.State, st, fmt.Sprintf(format, a...), strings.Join(ef.log, ", "))
	}
	switch st.State {
	case StateDone:
		if failAt >= 0 {
			fail("done although step %d always fails", failAt)
		}
		for k := range 3 {
			if !ef.applied[k] || ef.undo[k] != 0 {
				fail("step %d: applied %v, undone %d times", k, ef.applied[k], ef.undo[k])
			}
		}
	case StateUndone:
		for k := range 3 {
			if ef.applied[k] {
				fail("step %d still applied", k)
			}
		}
	default:
		fail("not an end state")
	}
	undoing := false
	for _, l := range ef.log {
		if strings.HasPrefix(l, "undo") {
			undoing = true
		} else if undoing {
			fail("%q after an undo", l)
		}
	}
	for k := range 3 {
		if k != failAt && ef.do[k] > 1 {
			dupDo += ef.do[k] - 1
		}
		if ef.undo[k] > 1 {
			dupUndo += ef.undo[k] - 1
		}
	}
	return dupDo, dupUndo, ef.undoUnapplied
}
