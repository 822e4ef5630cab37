package saga

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestBasics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		seed := baseSeed()
		e := newEnv(t, seed, 5, nil)
		defer e.c.Close()
		ctx := context.Background()
		s := sagasOf(e.c.Any())

		// A 3-step saga runs to done.
		if err := s.Start(ctx, "trip", "ok-1", []byte("x")); err != nil {
			t.Fatalf("seed %d: Start: %v", seed, err)
		}
		st := e.wait("ok-1", time.Minute)
		if st.State != StateDone || st.Step != 3 || st.Steps != 3 || st.Saga != "trip" || st.ID != "ok-1" || st.Runner == "" || st.Updated.IsZero() {
			t.Fatalf("seed %d: status %+v", seed, st)
		}
		e.check("ok-1", st, -1)
		if got := strings.Join(e.model.snapshot("ok-1").log, ", "); got != "do 0, do 1, do 2" {
			t.Fatalf("seed %d: log %s", seed, got)
		}

		// Start is idempotent by ID; another saga or input is ErrExists.
		other := sagasOf(e.c.Any())
		if err := other.Start(ctx, "trip", "ok-1", []byte("x")); err != nil {
			t.Fatalf("seed %d: second Start: %v", seed, err)
		}
		if err := other.Start(ctx, "trip", "ok-1", []byte("y")); !errors.Is(err, ErrExists) {
			t.Fatalf("seed %d: Start with other input: %v", seed, err)
		}
		if err := other.Start(ctx, "trip-fail", "ok-1", []byte("x")); !errors.Is(err, ErrExists) {
			t.Fatalf("seed %d: Start of other saga: %v", seed, err)
		}
		time.Sleep(10 * time.Second)
		if got := e.model.snapshot("ok-1").do; got != [3]int{1, 1, 1} {
			t.Fatalf("seed %d: a repeated Start ran steps again: %v", seed, got)
		}

		// A saga whose third step always fails: 1, 2, then undo 2, undo 1.
		if err := s.Start(ctx, "trip-fail", "bad-1", nil); err != nil {
			t.Fatalf("seed %d: Start: %v", seed, err)
		}
		st = e.wait("bad-1", time.Minute)
		if st.State != StateUndone || st.Step != 0 || !strings.Contains(st.Error, "step 2: refused") {
			t.Fatalf("seed %d: status %+v", seed, st)
		}
		e.check("bad-1", st, 2)
		want := "do 0, do 1" + strings.Repeat(", do 2 fail", DefaultConfig().StepAttempts) + ", undo 1, undo 0"
		if got := strings.Join(e.model.snapshot("bad-1").log, ", "); got != want {
			t.Fatalf("seed %d: log %s, want %s", seed, got, want)
		}

		// Status and Wait of unknown runs, bad IDs, unknown sagas.
		if _, err := s.Status(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("seed %d: Status of unknown run: %v", seed, err)
		}
		if _, err := s.Wait(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("seed %d: Wait of unknown run: %v", seed, err)
		}
		if err := s.Start(ctx, "no-such-saga", "x-1", nil); !errors.Is(err, ErrUnknownSaga) {
			t.Fatalf("seed %d: Start of unknown saga: %v", seed, err)
		}
		for _, bad := range []string{"", "a/b", "a b", strings.Repeat("x", 201), "é"} {
			if err := s.Start(ctx, "trip", bad, nil); !errors.Is(err, ErrBadName) {
				t.Fatalf("seed %d: Start(%q): %v", seed, bad, err)
			}
			if _, err := s.Status(ctx, bad); !errors.Is(err, ErrBadName) {
				t.Fatalf("seed %d: Status(%q): %v", seed, bad, err)
			}
		}
		if err := s.Define("bad name", Step{Do: func(context.Context, Run) error { return nil }}); !errors.Is(err, ErrBadName) {
			t.Fatalf("seed %d: Define bad name: %v", seed, err)
		}
		if err := s.Define("trip", Step{Do: func(context.Context, Run) error { return nil }}); err == nil {
			t.Fatalf("seed %d: Define twice accepted", seed)
		}
		if err := s.Define("empty"); err == nil {
			t.Fatalf("seed %d: Define with no steps accepted", seed)
		}

		// After Close.
		s.Close()
		if err := s.Start(ctx, "trip", "late-1", nil); !errors.Is(err, ErrClosed) {
			t.Fatalf("seed %d: Start after Close: %v", seed, err)
		}
		if _, err := s.Wait(ctx, "ok-1"); !errors.Is(err, ErrClosed) {
			t.Fatalf("seed %d: Wait after Close: %v", seed, err)
		}
	})
}

// TestPermanentFailure: a Do failing with Permanent is not retried.
func TestPermanentFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		seed := baseSeed() + 1
		e := newEnv(t, seed, 3, nil)
		defer e.c.Close()
		var calls [2]int
		for _, m := range e.c.Live() {
			err := sagasOf(m).Define("perm",
				Step{Name: "a", Do: func(context.Context, Run) error { calls[0]++; return nil }, Undo: func(context.Context, Run) error { calls[1]++; return nil }},
				Step{Name: "b", Do: func(context.Context, Run) error { return Permanent(errors.New("no funds")) }},
			)
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := sagasOf(e.c.Any()).Start(context.Background(), "perm", "p-1", nil); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		st := e.wait("p-1", time.Minute)
		if st.State != StateUndone || calls != [2]int{1, 1} {
			t.Fatalf("seed %d: %+v, calls %v", seed, st, calls)
		}
	})
}

// TestManyRuns: runs spread over the ring and all end.
func TestManyRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		seed := baseSeed() + 2
		e := newEnv(t, seed, 5, nil)
		defer e.c.Close()
		owners := map[string]bool{}
		for i := range 12 {
			name := "trip"
			if i%3 == 0 {
				name = "trip-fail"
			}
			if err := sagasOf(e.c.Any()).Start(context.Background(), name, fmt.Sprintf("m-%d", i), nil); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
		}
		for i := range 12 {
			id := fmt.Sprintf("m-%d", i)
			st := e.wait(id, 2*time.Minute)
			failAt := -1
			if i%3 == 0 {
				failAt = 2
			}
			e.check(id, st, failAt)
			owners[st.Runner] = true
		}
		if len(owners) < 2 {
			t.Fatalf("seed %d: every run ran on %v", seed, owners)
		}
	})
}
