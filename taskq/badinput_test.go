package taskq

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestBadInput: unknown queue, payload over the limit, bad names and
// configs, and a completion with an expired lease, each refused with its
// error (also when the request crossed the network to the owner).
func TestBadInput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 21
		c := newRing(t, seed, 4)
		defer c.Close()
		ctx, cancel := ctxT(time.Minute)
		defer cancel()
		q := qs(c.Any())
		if _, err := q.Enqueue(ctx, "nosuch", []byte("x")); !errors.Is(err, ErrUnknownQueue) {
			t.Errorf("seed %d: enqueue to unknown queue: %v, want ErrUnknownQueue", seed, err)
		}
		if _, err := q.Stats(ctx, "nosuch"); !errors.Is(err, ErrUnknownQueue) {
			t.Errorf("seed %d: stats of unknown queue: %v", seed, err)
		}
		for _, name := range []string{"", strings.Repeat("a", MaxQueueName+1), "a}b", "a/b", "sp ace", "é"} {
			if err := q.Create(ctx, name, QueueConfig{}); !errors.Is(err, ErrBadName) {
				t.Errorf("seed %d: create %q: %v, want ErrBadName", seed, name, err)
			}
			if _, err := q.Enqueue(ctx, name, nil); !errors.Is(err, ErrBadName) {
				t.Errorf("seed %d: enqueue %q: %v, want ErrBadName", seed, name, err)
			}
			if _, err := q.Work(name, func(context.Context, Task) error { return nil }); !errors.Is(err, ErrBadName) {
				t.Errorf("seed %d: work %q: %v, want ErrBadName", seed, name, err)
			}
		}
		for _, cfg := range []QueueConfig{{Visibility: time.Millisecond}, {MaxAttempts: -1}, {MaxAttempts: MaxMaxAttempts + 1}, {Backoff: time.Minute, MaxBackoff: time.Second}, {Retention: -time.Second}} {
			if err := q.Create(ctx, "cfg", cfg); !errors.Is(err, ErrBadConfig) {
				t.Errorf("seed %d: create with %+v: %v, want ErrBadConfig", seed, cfg, err)
			}
		}
		if err := q.Create(ctx, "q", QueueConfig{Visibility: time.Second}); err != nil {
			t.Fatalf("seed %d: create: %v", seed, err)
		}
		if _, err := q.Enqueue(ctx, "q", make([]byte, DefaultConfig().MaxPayload+1)); !errors.Is(err, ErrTooLarge) {
			t.Errorf("seed %d: oversized payload: %v, want ErrTooLarge", seed, err)
		}
		if _, err := q.Enqueue(ctx, "q", []byte("x"), IdempotencyKey(strings.Repeat("k", MaxIdempotencyKey+1))); !errors.Is(err, ErrBadName) {
			t.Errorf("seed %d: long idempotency key: %v, want ErrBadName", seed, err)
		}
		if n, err := q.Redrive(ctx, "q", "not-an-id"); !errors.Is(err, ErrNotFound) || n != 0 {
			t.Errorf("seed %d: redrive of a bad ID: %d %v", seed, n, err)
		}

		// A completion for a lease that expired is refused with ErrLeaseExpired.
		id, err := q.Enqueue(ctx, "q", []byte("slow"))
		if err != nil {
			t.Fatalf("seed %d: enqueue: %v", seed, err)
		}
		var g leaseResp
		if err := q.call(ctx, "q", "lease", leaseReq{Queue: "q", Worker: "test", WaitMs: 1000}, &g, q.cfg.Retry); err != nil || g.Task == nil || g.Task.ID != id {
			t.Fatalf("seed %d: lease: %+v %v", seed, g.Task, err)
		}
		time.Sleep(3 * time.Second) // past the 1s visibility: the owner expires the lease
		err = q.call(ctx, "q", "complete", ackReq{Queue: "q", ID: id, Lease: g.Task.Lease}, nil, q.cfg.Retry)
		if !errors.Is(err, ErrLeaseExpired) {
			t.Fatalf("seed %d: late completion: %v, want ErrLeaseExpired", seed, err)
		}
		t.Logf("late completion refused: %v", err)
		if err := q.call(ctx, "q", "extend", ackReq{Queue: "q", ID: id, Lease: "bogus"}, nil, q.cfg.Retry); !errors.Is(err, ErrLeaseExpired) {
			t.Errorf("seed %d: extend with a bogus lease: %v", seed, err)
		}
		if err := q.call(ctx, "q", "complete", ackReq{Queue: "q", ID: "0123", Lease: "x"}, nil, q.cfg.Retry); !errors.Is(err, ErrLeaseExpired) {
			t.Errorf("seed %d: complete of a bad ID: %v", seed, err)
		}
		// A fresh lease, acknowledged in time, completes the task.
		var g2 leaseResp
		if err := q.call(ctx, "q", "lease", leaseReq{Queue: "q", Worker: "test", WaitMs: 3000}, &g2, q.cfg.Retry); err != nil || g2.Task == nil || g2.Task.Attempt != 2 {
			t.Fatalf("seed %d: second lease: %+v %v", seed, g2.Task, err)
		}
		if err := q.call(ctx, "q", "complete", ackReq{Queue: "q", ID: id, Lease: g2.Task.Lease}, nil, q.cfg.Retry); err != nil {
			t.Fatalf("seed %d: timely completion: %v", seed, err)
		}
		// Repeating it (a retry after a lost answer) succeeds; the old lease still fails.
		if err := q.call(ctx, "q", "complete", ackReq{Queue: "q", ID: id, Lease: g2.Task.Lease}, nil, q.cfg.Retry); err != nil {
			t.Errorf("seed %d: repeated completion: %v", seed, err)
		}
		if err := q.call(ctx, "q", "complete", ackReq{Queue: "q", ID: id, Lease: g.Task.Lease}, nil, q.cfg.Retry); !errors.Is(err, ErrLeaseExpired) {
			t.Errorf("seed %d: completion with the first lease after the second completed: %v", seed, err)
		}
		// Garbage requests straight to the service.
		for _, raw := range []any{"not an object", map[string]any{"queue": 7}, nil} {
			err := q.n.Call(ctx, queueID("q"), ServiceName, "enqueue", raw, nil)
			if err == nil {
				t.Errorf("seed %d: enqueue of %v accepted", seed, raw)
			}
		}
		if _, err := q.Work("q", nil); err == nil {
			t.Errorf("seed %d: nil handler accepted", seed)
		}
		if _, err := q.Work("q", func(context.Context, Task) error { return nil }, Concurrency(0)); err == nil {
			t.Errorf("seed %d: concurrency 0 accepted", seed)
		}
		q.Close()
		if _, err := q.Enqueue(ctx, "q", nil); !errors.Is(err, ErrClosed) {
			t.Errorf("seed %d: enqueue after close: %v", seed, err)
		}
	})
}
