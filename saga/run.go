package saga

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-p2p/shoal/kv"
)

// errLost means the runner no longer holds the run: another runner moved
// it on, its lease ran out, or the runtime is closing.
var errLost = errors.New("saga: lease lost")

// claimAttempts bounds the compare-and-sets a claim tries against
// concurrent writers before leaving the run to a later scan.
const claimAttempts = 4

// runner drives one run on this node while it holds the run's lease. Its
// fields are touched by one goroutine at a time: the run goroutine, or the
// heartbeat while the run goroutine waits for a step.
type runner struct {
	s     *Sagas
	id    string
	key   string
	steps []Step
	token string
	rec   record // the record as last written or read at ver
	ver   uint64
}

// run claims the run and drives it to an end, or until the lease is lost.
func (s *Sagas) run(id string) {
	s.mu.Lock()
	token := fmt.Sprintf("%016x", s.rng.Uint64())
	s.mu.Unlock()
	r := &runner{s: s, id: id, key: keyOf(id), token: token}
	if !r.claim() {
		return
	}
	s.log.Info("running", "id", id, "saga", r.rec.Saga, "state", r.rec.State, "step", r.rec.Step)
	if err := r.drive(); err != nil && s.ctx.Err() == nil {
		s.log.Info("runner stopped", "id", id, "err", err)
	}
}

// claim takes the run's lease by compare-and-set, if nobody live holds it.
func (r *runner) claim() bool {
	s := r.s
	for range claimAttempts {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RunnerLease)
		it, err := s.store.Get(ctx, r.key)
		cancel()
		if err != nil {
			if !errors.Is(err, kv.ErrNotFound) && s.ctx.Err() == nil {
				s.log.Debug("claim: read failed", "id", r.id, "err", err)
			}
			return false
		}
		rec, err := decodeRecord(it.Value)
		if err != nil {
			s.log.Warn("claim: unreadable record", "id", r.id, "err", err)
			return false
		}
		if rec.terminal() || !s.free(rec, time.Now().UnixMilli()) {
			return false
		}
		steps, ok := s.def(rec.Saga)
		if !ok || len(steps) != rec.Steps {
			s.log.Warn("claim: saga not defined here, or defined with another number of steps", "id", r.id, "saga", rec.Saga, "steps", rec.Steps, "here", len(steps))
			return false
		}
		r.steps, r.rec, r.ver = steps, rec, it.Version
		rec.Runner, rec.Token = s.self, r.token
		switch err := r.write(rec); {
		case err == nil:
			return true
		case errors.Is(err, errLost) && s.ctx.Err() == nil:
			continue // someone else wrote: look again
		default:
			return false
		}
	}
	return false
}

// drive runs steps forward or back from the record's state until the run
// ends or the runner stops.
func (r *runner) drive() error {
	for !r.rec.terminal() {
		var err error
		switch {
		case r.rec.State == StateRunning && r.rec.Step < r.rec.Steps:
			err = r.forward()
		case r.rec.State == StateRunning:
			next := r.rec
			next.State = StateDone
			err = r.write(next)
		case r.rec.State == StateCompensating && r.rec.Step > 0:
			err = r.back()
		default: // compensating, nothing left to undo
			next := r.rec
			next.State = StateUndone
			err = r.write(next)
		}
		if err != nil {
			return err
		}
	}
	r.s.log.Info("run ended", "id", r.id, "state", r.rec.State, "error", r.rec.Error)
	return nil
}

// forward does step r.rec.Step.
func (r *runner) forward() error {
	k := r.rec.Step
	// An earlier runner wrote Begun for this step: it may have applied the
	// action before it died.
	uncertain := r.rec.Begun > k
	next := r.rec
	next.Begun = k + 1
	if err := r.write(next); err != nil { // also renews the lease
		return err
	}
	if err := r.at(false, k, "before"); err != nil {
		return err
	}
	err, timedOut := r.exec(false, k)
	if errors.Is(err, errLost) {
		return err
	}
	if err := r.at(false, k, "after"); err != nil {
		return err
	}
	next = r.rec.afterDo(err, uncertain || timedOut)
	if err != nil {
		r.s.log.Info("step failed; compensating", "id", r.id, "step", k, "name", r.steps[k].Name, "err", err, "undo_from", next.Step-1)
	}
	if err := r.write(next); err != nil {
		return err
	}
	return r.at(false, k, "written")
}

// back undoes step r.rec.Step-1.
func (r *runner) back() error {
	k := r.rec.Step - 1
	if err := r.write(r.rec); err != nil { // renews the lease
		return err
	}
	if err := r.at(true, k, "before"); err != nil {
		return err
	}
	err, _ := r.exec(true, k)
	if errors.Is(err, errLost) {
		return err
	}
	if err := r.at(true, k, "after"); err != nil {
		return err
	}
	if err != nil {
		r.s.log.Error("undo gave up; run failed", "id", r.id, "step", k, "err", err)
	}
	if err := r.write(r.rec.afterUndo(err)); err != nil {
		return err
	}
	return r.at(true, k, "written")
}

// at calls the test hook at a boundary.
func (r *runner) at(undo bool, k int, point string) error {
	h := r.s.hook.Load()
	if h == nil {
		return nil
	}
	return (*h)(r.s.ctx, boundary{Undo: undo, Step: k, Point: point})
}

// exec runs step k's Do (or Undo) with retries while a heartbeat keeps the
// lease. It returns the last error (errLost if the lease went) and whether
// an attempt timed out, leaving its effect unknown.
func (r *runner) exec(undo bool, k int) (err error, timedOut bool) {
	s := r.s
	f := r.steps[k].Do
	if undo {
		f = r.steps[k].Undo
		if f == nil {
			return nil, false
		}
	}
	run := Run{ID: r.id, Saga: r.rec.Saga, Input: r.rec.Input, Step: k}
	stepCtx, cancelStep := context.WithCancel(s.ctx)
	defer cancelStep()
	var lost atomic.Bool
	var hb sync.WaitGroup
	hbCtx, stopHB := context.WithCancel(stepCtx)
	hb.Add(1)
	go func() {
		defer hb.Done()
		if r.heartbeat(hbCtx) != nil && hbCtx.Err() == nil {
			lost.Store(true)
			cancelStep()
		}
	}()
	for attempt := 1; ; attempt++ {
		run.Attempt = attempt
		actx, cancel := context.WithTimeout(stepCtx, s.cfg.StepTimeout)
		err = call(actx, f, run)
		if err != nil && actx.Err() != nil && stepCtx.Err() == nil {
			timedOut = true
		}
		cancel()
		if err == nil || stepCtx.Err() != nil || errors.Is(err, ErrPermanent) {
			break
		}
		if (!undo && attempt >= s.cfg.StepAttempts) || (undo && s.cfg.UndoAttempts > 0 && attempt >= s.cfg.UndoAttempts) {
			break
		}
		s.log.Debug("attempt failed; retrying", "id", r.id, "step", k, "undo", undo, "attempt", attempt, "err", err)
		if sleep(stepCtx, s.backoff(attempt)) != nil {
			break
		}
	}
	stopHB()
	hb.Wait()
	if lost.Load() || s.ctx.Err() != nil {
		return errLost, timedOut
	}
	return err, timedOut
}

// call runs a step function, turning a panic into an error.
func call(ctx context.Context, f func(context.Context, Run) error, run Run) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return f(ctx, run)
}

// heartbeat renews the lease every RunnerLease/3 until ctx ends; it
// returns an error once the lease is lost.
func (r *runner) heartbeat(ctx context.Context) error {
	t := time.NewTicker(r.s.cfg.RunnerLease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := r.writeCtx(ctx, r.rec); err != nil {
				return err
			}
		}
	}
}

func (r *runner) write(next record) error { return r.writeCtx(r.s.ctx, next) }

// writeCtx stores next (renewing the lease) by compare-and-set at the
// version last read or written. A mismatch means another runner moved on:
// errLost. An unavailable store is retried until this runner's lease ends.
func (r *runner) writeCtx(ctx context.Context, next record) error {
	s := r.s
	now := time.Now()
	next.Runner, next.Token = s.self, r.token
	next.RunnerUntil = now.Add(s.cfg.RunnerLease).UnixMilli()
	next.Updated = now.UnixMilli()
	val := next.encode()
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil {
			return errLost
		}
		// The current lease (not the one being written) bounds the retries:
		// past it another node may take over.
		held := time.UnixMilli(r.rec.RunnerUntil)
		if r.rec.Token != r.token {
			held = now.Add(s.cfg.RunnerLease) // claiming: the lease starts now
		}
		if !time.Now().Before(held) {
			return errLost
		}
		wctx, cancel := context.WithDeadline(ctx, held)
		v, err := s.store.Put(wctx, r.key, val, kv.IfVersion(r.ver))
		if errors.Is(err, kv.ErrAmbiguous) {
			// Outcome unknown: the record says whether it was ours (the
			// token makes our value unique).
			var it kv.Item
			it, err = s.store.Get(wctx, r.key)
			if err == nil && bytes.Equal(it.Value, val) {
				v = it.Version
			} else if err == nil {
				err = kv.ErrVersionMismatch
			}
		}
		switch {
		case err == nil:
			cancel()
			r.rec, r.ver = next, v
			return nil
		case errors.Is(err, kv.ErrVersionMismatch):
			ok := r.adopt(wctx)
			cancel()
			if !ok {
				return errLost
			}
			continue
		}
		cancel()
		if ctx.Err() != nil {
			return errLost
		}
		s.log.Debug("storing progress failed; retrying", "id", r.id, "attempt", attempt, "err", err)
		if sleep(ctx, min(s.backoff(attempt), s.cfg.RunnerLease/10)) != nil {
			return errLost
		}
	}
}

// adopt handles a compare-and-set that found another version: if the
// stored record is still this runner's, in the same state (a renewal whose
// answer was lost), the runner carries on from that version.
func (r *runner) adopt(ctx context.Context) bool {
	it, err := r.s.store.Get(ctx, r.key)
	if err != nil {
		return false
	}
	have, err := decodeRecord(it.Value)
	if err != nil || have.Token != r.token || have.State != r.rec.State || have.Step != r.rec.Step || have.Begun != r.rec.Begun {
		return false
	}
	r.rec, r.ver = have, it.Version
	return true
}
