package taskq

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestBasics: create, enqueue, idempotent enqueue, delay, completion,
// retries with attempt numbers up to MaxAttempts, dead letters, redrive,
// stats.
func TestBasics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 11
		c := newRing(t, seed, 5)
		defer c.Close()
		ctx, cancel := ctxT(2 * time.Minute)
		defer cancel()
		a, b := qs(c.Live()[0]), qs(c.Live()[3])
		if err := a.Create(ctx, "jobs", QueueConfig{Visibility: 2 * time.Second, MaxAttempts: 3, Backoff: 100 * time.Millisecond, MaxBackoff: time.Second}); err != nil {
			t.Fatalf("seed %d: create: %v", seed, err)
		}
		if err := b.Create(ctx, "jobs", QueueConfig{Visibility: 2 * time.Second, MaxAttempts: 3, Backoff: 100 * time.Millisecond, MaxBackoff: time.Second}); err != nil {
			t.Fatalf("seed %d: create again: %v", seed, err)
		}
		id1, err := a.Enqueue(ctx, "jobs", []byte("one"), IdempotencyKey("k1"))
		if err != nil {
			t.Fatalf("seed %d: enqueue: %v", seed, err)
		}
		id1b, err := b.Enqueue(ctx, "jobs", []byte("one again"), IdempotencyKey("k1"))
		if err != nil || id1b != id1 {
			t.Fatalf("seed %d: idempotent enqueue: %q %v, want %q", seed, id1b, err, id1)
		}
		start := time.Now()
		idDelayed, err := a.Enqueue(ctx, "jobs", []byte("later"), Delay(10*time.Second))
		if err != nil {
			t.Fatalf("seed %d: enqueue delayed: %v", seed, err)
		}
		idFail, err := b.Enqueue(ctx, "jobs", []byte("fail"))
		if err != nil {
			t.Fatalf("seed %d: enqueue failing: %v", seed, err)
		}
		st, err := a.Stats(ctx, "jobs")
		if err != nil || st.Ready != 2 || st.Delayed != 1 || st.Config.MaxAttempts != 3 {
			t.Fatalf("seed %d: stats before work: %+v %v", seed, st, err)
		}

		var mu sync.Mutex
		ran := map[string][]int{}
		doneAt := map[string]time.Time{}
		h := func(ctx context.Context, tk Task) error {
			mu.Lock()
			ran[tk.ID] = append(ran[tk.ID], tk.Attempt)
			doneAt[tk.ID] = time.Now()
			mu.Unlock()
			if string(tk.Payload) == "fail" {
				return errors.New("boom")
			}
			return nil
		}
		var ws []*Worker
		for _, m := range c.Live() {
			w, err := qs(m).Work("jobs", h, Concurrency(2))
			if err != nil {
				t.Fatalf("seed %d: work: %v", seed, err)
			}
			ws = append(ws, w)
		}
		ok := waitFor(time.Minute, func() bool {
			st, err := a.Stats(ctx, "jobs")
			return err == nil && st.Done == 2 && st.Dead == 1
		})
		st, _ = a.Stats(ctx, "jobs")
		if !ok {
			t.Fatalf("seed %d: stats after work: %+v", seed, st)
		}
		mu.Lock()
		if got := ran[idFail]; len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 3 {
			t.Errorf("seed %d: failing task ran with attempts %v, want [1 2 3]", seed, got)
		}
		if got := ran[id1]; len(got) != 1 {
			t.Errorf("seed %d: task ran %d times", seed, len(got))
		}
		if d := doneAt[idDelayed].Sub(start); d < 10*time.Second {
			t.Errorf("seed %d: delayed task ran after %v, want >= 10s", seed, d)
		}
		mu.Unlock()
		dead, err := b.Dead(ctx, "jobs")
		if err != nil || len(dead) != 1 || dead[0].ID != idFail || dead[0].Attempts != 3 || dead[0].LastError != "boom" || string(dead[0].Payload) != "fail" {
			t.Fatalf("seed %d: dead: %+v %v", seed, dead, err)
		}
		// Fix the handler, redrive: the task runs again from attempt 1.
		for _, w := range ws {
			w.Stop()
		}
		ws = nil
		for _, m := range c.Live()[:2] {
			w, err := qs(m).Work("jobs", func(ctx context.Context, tk Task) error {
				mu.Lock()
				ran[tk.ID] = append(ran[tk.ID], tk.Attempt)
				mu.Unlock()
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			ws = append(ws, w)
		}
		n, err := a.Redrive(ctx, "jobs")
		if err != nil || n != 1 {
			t.Fatalf("seed %d: redrive: %d %v", seed, n, err)
		}
		if !waitFor(30*time.Second, func() bool {
			st, err := a.Stats(ctx, "jobs")
			return err == nil && st.Done == 3 && st.Dead == 0
		}) {
			st, _ := a.Stats(ctx, "jobs")
			t.Fatalf("seed %d: after redrive: %+v", seed, st)
		}
		mu.Lock()
		if got := ran[idFail]; len(got) != 4 || got[3] != 1 {
			t.Errorf("seed %d: redriven task attempts %v, want [1 2 3 1]", seed, got)
		}
		mu.Unlock()
		// Still idempotent after completion (within Retention).
		if again, err := b.Enqueue(ctx, "jobs", []byte("x"), IdempotencyKey("k1")); err != nil || again != id1 {
			t.Errorf("seed %d: enqueue after completion: %q %v, want %q", seed, again, err, id1)
		}
		st, _ = a.Stats(ctx, "jobs")
		if st.Done != 3 || st.Ready+st.Delayed+st.Leased+st.Dead != 0 || st.Owner != c.Owner(queueID("jobs")).ID.String() {
			t.Errorf("seed %d: final stats %+v", seed, st)
		}
		for _, w := range ws {
			w.Stop()
		}
	})
}

// TestRetention: a completed task is kept for the queue's Retention (an
// enqueue with its key returns it and adds nothing), then swept; after that
// the same key enqueues a new task.
func TestRetention(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 31
		c := newRing(t, seed, 4)
		defer c.Close()
		ctx, cancel := ctxT(2 * time.Minute)
		defer cancel()
		q := qs(c.Any())
		if err := q.Create(ctx, "r", QueueConfig{Retention: 3 * time.Second}); err != nil {
			t.Fatalf("seed %d: create: %v", seed, err)
		}
		var mu sync.Mutex
		runs := 0
		w, err := q.Work("r", func(context.Context, Task) error {
			mu.Lock()
			runs++
			mu.Unlock()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		done := func(n int) bool {
			st, err := q.Stats(ctx, "r")
			return err == nil && st.Done == n
		}
		id, err := q.Enqueue(ctx, "r", []byte("x"), IdempotencyKey("once"))
		if err != nil || !waitFor(10*time.Second, func() bool { return done(1) }) {
			t.Fatalf("seed %d: first run: %v", seed, err)
		}
		if again, err := q.Enqueue(ctx, "r", []byte("x"), IdempotencyKey("once")); err != nil || again != id {
			t.Fatalf("seed %d: within retention: %q %v", seed, again, err)
		}
		if !waitFor(30*time.Second, func() bool { return done(0) }) {
			t.Fatalf("seed %d: done task not swept after its retention", seed)
		}
		if _, err := q.kv.Get(ctx, taskKey("r", id)); err == nil {
			t.Fatalf("seed %d: swept task still stored", seed)
		}
		if _, err := q.Enqueue(ctx, "r", []byte("x"), IdempotencyKey("once")); err != nil || !waitFor(10*time.Second, func() bool { return done(1) }) {
			t.Fatalf("seed %d: after retention: %v", seed, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if runs != 2 {
			t.Errorf("seed %d: %d runs, want 2", seed, runs)
		}
	})
}
