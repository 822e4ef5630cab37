// Package effect is an idempotent sink for task effects, used by the demo,
// the benchmark, the real-process tests and `shoal node --worker`: a task's
// effect is the creation of one key-value record, effect/<queue>/<task>,
// with a create-only write, so it happens once however often the task runs.
// Each later run of the same task is a raw duplicate execution: it bumps the
// record's run count, so the duplicates are counted durably, across crashes.
package effect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/shoal-p2p/shoal/kv"
	"github.com/shoal-p2p/shoal/taskq"
)

// Record is the stored effect of one task.
type Record struct {
	Task  string `json:"task"`
	First int    `json:"first_attempt"` // the delivery that applied the effect
	Runs  int    `json:"runs"`          // executions that reached the sink
}

// Key is where the effect of a task is recorded.
func Key(queue, task string) string { return "effect/" + queue + "/" + task }

// Sink applies effects through a node's store.
type Sink struct {
	kv *kv.KV

	applied    atomic.Int64 // effects this process applied
	duplicates atomic.Int64 // executions that found the effect already there
}

// New returns a sink writing through k.
func New(k *kv.KV) *Sink { return &Sink{kv: k} }

// Counts are what this process saw: effects applied, and executions that
// found their task's effect already applied (raw duplicates).
func (s *Sink) Counts() (applied, duplicates int64) {
	return s.applied.Load(), s.duplicates.Load()
}

// Apply records t's effect unless it is already recorded. first reports
// whether this call applied it.
func (s *Sink) Apply(ctx context.Context, t taskq.Task) (first bool, err error) {
	key := Key(t.Queue, t.ID)
	b, _ := json.Marshal(Record{Task: t.ID, First: t.Attempt, Runs: 1})
	_, err = s.kv.Put(ctx, key, b, kv.IfAbsent())
	switch {
	case err == nil:
		s.applied.Add(1)
		return true, nil
	case errors.Is(err, kv.ErrVersionMismatch):
		// Applied by an earlier delivery: count this run, durably.
		s.duplicates.Add(1)
		_, err = s.kv.Update(ctx, key, func(old []byte, exists bool) ([]byte, error) {
			var r Record
			if exists {
				if err := json.Unmarshal(old, &r); err != nil {
					return nil, fmt.Errorf("effect record of %s is not JSON: %w", t.ID, err)
				}
			}
			r.Task = t.ID
			r.Runs++
			return json.Marshal(r)
		})
		return false, err
	case errors.Is(err, kv.ErrAmbiguous):
		// Our write may have applied it; either way it is there now if
		// the read finds it, and the task may complete.
		if _, gerr := s.kv.Get(ctx, key); gerr == nil {
			return false, nil
		}
		return false, err
	default:
		return false, err
	}
}

// Handler is a task handler that runs work (if any) and then applies the
// task's effect.
func (s *Sink) Handler(work func(ctx context.Context, t taskq.Task) error) taskq.Handler {
	return func(ctx context.Context, t taskq.Task) error {
		if work != nil {
			if err := work(ctx, t); err != nil {
				return err
			}
		}
		_, err := s.Apply(ctx, t)
		return err
	}
}

// Read returns the effect record of a task; ok is false if its effect was
// never applied.
func Read(ctx context.Context, k *kv.KV, queue, task string) (r Record, version uint64, ok bool, err error) {
	it, err := k.Get(ctx, Key(queue, task))
	if errors.Is(err, kv.ErrNotFound) {
		return r, 0, false, nil
	}
	if err != nil {
		return r, 0, false, err
	}
	if err := json.Unmarshal(it.Value, &r); err != nil {
		return r, it.Version, true, fmt.Errorf("effect record of %s is not JSON: %w", task, err)
	}
	return r, it.Version, true, nil
}
