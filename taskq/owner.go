package taskq

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/shoal-p2p/shoal/kv"
	"github.com/shoal-p2p/shoal/service"
)

// The owner's side of service "taskq". Each method decodes its request on
// the service loop and does its work (kv reads and compare-and-sets, a
// lease's long poll) on a goroutine of its own through Call.Go, so the loop
// never blocks; the queue's scheduler is shared by those goroutines under
// its mutex.

const maxErrorText = 1024

func (q *Queues) service() *service.Service {
	return service.New(ServiceName).
		Method("create", handle(q, q.opCreate)).
		Method("enqueue", handle(q, q.opEnqueue)).
		Method("lease", handle(q, q.opLease)).
		Method("unpoll", handle(q, q.opUnpoll)).
		Method("extend", handle(q, q.opExtend)).
		Method("complete", handle(q, q.opComplete)).
		Method("fail", handle(q, q.opFail)).
		Method("stats", handle(q, q.opStats)).
		Method("dead", handle(q, q.opDead)).
		Method("redrive", handle(q, q.opRedrive))
}

// handle decodes a request of type R and runs op off the loop, with a
// context that ends at the caller's deadline or at Close.
func handle[R any](q *Queues, op func(ctx context.Context, reqID string, r R) (any, error)) service.Handler {
	return func(c *service.Call) {
		var r R
		if err := c.Decode(&r); err != nil {
			c.Fail(err)
			return
		}
		reqID := c.ID()
		c.Go(func(ctx context.Context) (any, error) {
			done, ok := q.enter()
			if !ok {
				return nil, ErrClosed
			}
			defer done()
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stop := context.AfterFunc(q.root, cancel)
			defer stop()
			return op(ctx, reqID, r)
		}, func(v any, err error) {
			if err != nil {
				c.Fail(wireError(err))
				return
			}
			c.Reply(v)
		})
	}
}

// wireError turns an owner-side failure into what travels: retryable
// refusals for unavailability, application errors that start with this
// package's sentinel texts otherwise.
func wireError(err error) error {
	switch {
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrClosed), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return service.Unavailable(50*time.Millisecond, "%v", err)
	case errors.Is(err, ErrTooLarge):
		return &service.Error{Code: service.CodeTooLarge, Message: err.Error()}
	}
	return service.AppError("%s", err.Error())
}

func (q *Queues) opCreate(ctx context.Context, _ string, r createReq) (any, error) {
	if err := checkName(r.Queue); err != nil {
		return nil, err
	}
	cfg := r.Config.config().withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	want := toWire(cfg)
	_, err := q.kv.Update(ctx, metaKey(r.Queue), func(old []byte, exists bool) ([]byte, error) {
		m := metaRec{Name: r.Queue, Created: ms(time.Now())}
		if exists {
			if err := jsonUnmarshal(old, &m); err == nil && m.Config == want {
				return nil, errUnchanged
			}
		}
		m.Config = want
		return jsonMarshal(m)
	})
	if err != nil && !errors.Is(err, errUnchanged) {
		if errors.Is(err, kv.ErrAmbiguous) || errors.Is(err, kv.ErrUnavailable) || errors.Is(err, kv.ErrConflict) {
			return nil, fmt.Errorf("%w: creating queue %q: %v", ErrUnavailable, r.Queue, err)
		}
		return nil, err
	}
	q.mu.Lock()
	s := q.scheds[r.Queue]
	q.mu.Unlock()
	if s != nil {
		s.mu.Lock()
		s.cfg = cfg
		s.mu.Unlock()
	}
	return struct{}{}, nil
}

var errUnchanged = errors.New("unchanged")

func (q *Queues) opEnqueue(ctx context.Context, reqID string, r enqueueReq) (any, error) {
	if err := checkName(r.Queue); err != nil {
		return nil, err
	}
	if err := checkIdemKey(r.Key); err != nil {
		return nil, err
	}
	if len(r.Payload) > q.cfg.MaxPayload {
		return nil, fmt.Errorf("%w: %d bytes, limit %d at the queue's owner", ErrTooLarge, len(r.Payload), q.cfg.MaxPayload)
	}
	s, err := q.schedFor(ctx, r.Queue)
	if err != nil {
		return nil, err
	}
	var id string
	switch {
	case r.Key != "":
		id = idemTaskID(r.Queue, r.Key)
	case reqID != "":
		id = reqTaskID(r.Queue, reqID)
	default:
		id = reqTaskID(r.Queue, randToken())
	}
	s.mu.Lock()
	e := s.tasks[id]
	known := e != nil && e.ver != 0
	s.mu.Unlock()
	if known {
		return enqueueResp{ID: id}, nil
	}
	if err := s.lock(ctx, id); err != nil {
		return nil, err
	}
	defer s.unlock(id)
	created := false
	_, err = s.update(ctx, id, true, func(cur taskRec, exists bool, now time.Time) (*taskRec, error) {
		if exists {
			return nil, nil
		}
		created = true
		return &taskRec{ID: id, Payload: r.Payload, State: stReady, NotBefore: ms(now) + r.DelayMs, Enqueued: ms(now)}, nil
	})
	if err != nil {
		return nil, err
	}
	return enqueueResp{ID: id, Created: created}, nil
}

// maxPoll bounds how long the owner holds one lease request.
const maxPoll = 10 * time.Second

func (q *Queues) opLease(ctx context.Context, _ string, r leaseReq) (any, error) {
	if err := checkName(r.Queue); err != nil {
		return nil, err
	}
	s, err := q.schedFor(ctx, r.Queue)
	if err != nil {
		return nil, err
	}
	wait := min(time.Duration(r.WaitMs)*time.Millisecond, maxPoll)
	if dl, ok := ctx.Deadline(); ok {
		// Answer before the caller gives up, so a granted lease is not lost.
		wait = min(wait, time.Until(dl)-time.Until(dl)/4-50*time.Millisecond)
	}
	end := time.Now().Add(max(wait, 0))
	worker := r.Worker
	if len(worker) > 128 {
		worker = worker[:128]
	}
	var w *waiter
	for {
		s.mu.Lock()
		if s.dropped {
			s.mu.Unlock()
			return nil, errNotOwner
		}
		if w != nil && w.cancelled {
			s.mu.Unlock()
			return leaseResp{}, nil
		}
		id, ok := s.pickReadyLocked(ms(time.Now()))
		if !ok {
			w = &waiter{ch: make(chan struct{}, 1), worker: worker}
			s.waiters = append(s.waiters, w)
		}
		s.mu.Unlock()
		if ok {
			g, err := s.leaseOne(ctx, id, worker)
			if err != nil {
				return nil, err
			}
			if g != nil {
				return leaseResp{Task: g}, nil
			}
			continue
		}
		left := time.Until(end)
		if left <= 0 {
			s.removeWaiter(w)
			return leaseResp{}, nil
		}
		t := time.NewTimer(left)
		select {
		case <-w.ch:
			t.Stop()
		case <-t.C:
			s.removeWaiter(w)
			return leaseResp{}, nil
		case <-ctx.Done():
			t.Stop()
			s.removeWaiter(w)
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
		}
	}
}

func (s *sched) removeWaiter(w *waiter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.waiters {
		if x == w {
			s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
			return
		}
	}
	// Already signalled: pass the wake-up on, it may have been for a task.
	s.wakeOneLocked()
}

// opUnpoll (one-way, from a stopping worker) ends that worker's waiting
// lease requests, so they do not lease a task nobody will run.
func (q *Queues) opUnpoll(ctx context.Context, _ string, r leaseReq) (any, error) {
	q.mu.Lock()
	s := q.scheds[r.Queue]
	q.mu.Unlock()
	if s == nil || r.Worker == "" {
		return struct{}{}, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := s.waiters[:0]
	for _, w := range s.waiters {
		if w.worker == r.Worker {
			w.cancelled = true
			w.wake()
			continue
		}
		keep = append(keep, w)
	}
	s.waiters = keep
	return struct{}{}, nil
}

// pickReadyLocked takes the first ready task that is due and not being
// written, and locks it (s.mu held).
func (s *sched) pickReadyLocked(now int64) (string, bool) {
	for {
		it, ok := s.readyQ.peek()
		if !ok {
			return "", false
		}
		e := s.tasks[it.id]
		if e == nil || e.gen != it.gen || e.rec.State != stReady {
			s.readyQ.pop()
			continue
		}
		if it.at > now {
			return "", false
		}
		s.readyQ.pop()
		if _, busy := s.locks[it.id]; busy {
			continue // its unlock re-indexes it
		}
		s.locks[it.id] = make(chan struct{})
		return it.id, true
	}
}

// leaseOne leases a picked (locked) task: nil if it turned out not ready.
func (s *sched) leaseOne(ctx context.Context, id, worker string) (*grant, error) {
	defer s.unlock(id)
	s.mu.Lock()
	vis := s.cfg.Visibility
	s.mu.Unlock()
	var g *grant
	_, err := s.update(ctx, id, false, func(cur taskRec, exists bool, now time.Time) (*taskRec, error) {
		g = nil
		if !exists || cur.State != stReady || cur.NotBefore > ms(now) {
			return nil, nil
		}
		next := cur
		next.State = stLeased
		next.Attempt++
		next.Lease = randToken()
		next.LeaseUntil = ms(now.Add(vis))
		next.Worker = worker
		g = &grant{ID: id, Payload: cur.Payload, Attempt: next.Attempt, Enqueued: cur.Enqueued, Lease: next.Lease, VisibilityMs: vis.Milliseconds()}
		return &next, nil
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

func (q *Queues) opExtend(ctx context.Context, _ string, r ackReq) (any, error) {
	return q.ack(ctx, r, "extend")
}

func (q *Queues) opComplete(ctx context.Context, _ string, r ackReq) (any, error) {
	return q.ack(ctx, r, "complete")
}

func (q *Queues) opFail(ctx context.Context, _ string, r ackReq) (any, error) {
	return q.ack(ctx, r, "fail")
}

type ackResp struct {
	LeaseUntil int64 `json:"lease_until,omitempty"`
}

// ack applies a worker's complete, fail or extend, which must name the
// task's current, unexpired lease. A repeat of a complete or fail that
// already applied succeeds again.
func (q *Queues) ack(ctx context.Context, r ackReq, kind string) (any, error) {
	if err := checkName(r.Queue); err != nil {
		return nil, err
	}
	if !isTaskID(r.ID) || r.Lease == "" {
		return nil, fmt.Errorf("%w: %s of %q: no such task and lease", ErrLeaseExpired, kind, r.ID)
	}
	s, err := q.schedFor(ctx, r.Queue)
	if err != nil {
		return nil, err
	}
	if err := s.lock(ctx, r.ID); err != nil {
		return nil, err
	}
	defer s.unlock(r.ID)
	s.mu.Lock()
	cfg := s.cfg
	s.mu.Unlock()
	rec, err := s.update(ctx, r.ID, false, func(cur taskRec, exists bool, now time.Time) (*taskRec, error) {
		if !exists {
			return nil, fmt.Errorf("%w: task %s of queue %q no longer exists", ErrLeaseExpired, r.ID, r.Queue)
		}
		if cur.Lease == r.Lease && cur.State != stLeased {
			if kind == "complete" && cur.State == stDone || kind == "fail" && cur.State != stDone {
				return nil, nil // a repeat of what already applied
			}
		}
		if cur.State != stLeased || cur.Lease != r.Lease {
			return nil, fmt.Errorf("%w: %s of task %s in queue %q refused: the lease is no longer the task's current one (the task is %s, attempt %d)", ErrLeaseExpired, kind, r.ID, r.Queue, cur.State, cur.Attempt)
		}
		if ms(now) > cur.LeaseUntil {
			return nil, fmt.Errorf("%w: %s of task %s in queue %q refused: its lease ended %v ago (visibility %v); the task is about to be retried", ErrLeaseExpired, kind, r.ID, r.Queue, now.Sub(fromMs(cur.LeaseUntil)).Round(time.Millisecond), cfg.Visibility)
		}
		next := cur
		switch kind {
		case "extend":
			next.LeaseUntil = ms(now.Add(cfg.Visibility))
		case "complete":
			next.State, next.Finished, next.LeaseUntil, next.Payload, next.LastError = stDone, ms(now), 0, nil, ""
		case "fail":
			msg := r.Error
			if msg == "" {
				msg = "handler failed"
			}
			retryOrDead(&next, cfg, msg, now)
		}
		return &next, nil
	})
	if err != nil {
		return nil, err
	}
	return ackResp{LeaseUntil: rec.LeaseUntil}, nil
}

// retryOrDead moves a task whose delivery failed back to ready after a
// jittered backoff, or to the dead-letter queue after MaxAttempts.
func retryOrDead(t *taskRec, cfg QueueConfig, msg string, now time.Time) {
	if len(msg) > maxErrorText {
		msg = msg[:maxErrorText]
	}
	t.LastError, t.Worker, t.LeaseUntil = msg, "", 0
	if t.Attempt >= cfg.MaxAttempts {
		t.State, t.Finished = stDead, ms(now)
		return
	}
	d := cfg.backoff(t.Attempt)
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	t.State, t.NotBefore = stReady, ms(now.Add(d))
}

// expire returns a task whose lease passed to the queue (or to dead).
func (s *sched) expire(ctx context.Context, id, lease string) {
	defer s.unlock(id)
	s.mu.Lock()
	cfg := s.cfg
	s.mu.Unlock()
	_, err := s.update(ctx, id, false, func(cur taskRec, exists bool, now time.Time) (*taskRec, error) {
		if !exists || cur.State != stLeased || cur.Lease != lease || cur.LeaseUntil > ms(now) {
			return nil, nil
		}
		next := cur
		retryOrDead(&next, cfg, fmt.Sprintf("lease expired: no word from worker %s within the visibility timeout (%v)", cur.Worker, cfg.Visibility), now)
		next.Lease = ""
		return &next, nil
	})
	if err != nil {
		s.q.log.Debug("expiring a lease failed; will retry", "queue", s.name, "task", id, "err", err)
	}
}

func (q *Queues) opStats(ctx context.Context, _ string, r queueReq) (any, error) {
	if err := checkName(r.Queue); err != nil {
		return nil, err
	}
	s, err := q.schedFor(ctx, r.Queue)
	if err != nil {
		return nil, err
	}
	now := ms(time.Now())
	s.mu.Lock()
	defer s.mu.Unlock()
	out := statsResp{Config: toWire(s.cfg), Owner: q.n.ID().String()}
	for _, e := range s.tasks {
		switch e.rec.State {
		case stReady:
			if e.rec.NotBefore > now {
				out.Delayed++
			} else {
				out.Ready++
			}
		case stLeased:
			out.Leased++
		case stDone:
			out.Done++
		case stDead:
			out.Dead++
		}
	}
	return out, nil
}

const maxDeadBytes = 768 << 10

func (q *Queues) opDead(ctx context.Context, _ string, r queueReq) (any, error) {
	if err := checkName(r.Queue); err != nil {
		return nil, err
	}
	s, err := q.schedFor(ctx, r.Queue)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	var list []deadTask
	for id, e := range s.tasks {
		if e.rec.State == stDead {
			list = append(list, deadTask{ID: id, Payload: e.rec.Payload, Attempts: e.rec.Attempt, LastError: e.rec.LastError, Enqueued: e.rec.Enqueued, Died: e.rec.Finished})
		}
	}
	s.mu.Unlock()
	sort.Slice(list, func(i, j int) bool {
		if list[i].Died != list[j].Died {
			return list[i].Died < list[j].Died
		}
		return list[i].ID < list[j].ID
	})
	out := deadResp{Tasks: []deadTask{}}
	bytes := 0
	for _, t := range list {
		if len(out.Tasks) == MaxDeadList || bytes+len(t.Payload) > maxDeadBytes {
			break
		}
		bytes += len(t.Payload)
		out.Tasks = append(out.Tasks, t)
	}
	return out, nil
}

func (q *Queues) opRedrive(ctx context.Context, _ string, r queueReq) (any, error) {
	if err := checkName(r.Queue); err != nil {
		return nil, err
	}
	s, err := q.schedFor(ctx, r.Queue)
	if err != nil {
		return nil, err
	}
	ids := r.IDs
	if len(ids) == 0 {
		s.mu.Lock()
		for id, e := range s.tasks {
			if e.rec.State == stDead {
				ids = append(ids, id)
			}
		}
		s.mu.Unlock()
		sort.Strings(ids)
	}
	n := 0
	for _, id := range ids {
		if !isTaskID(id) {
			continue
		}
		if err := s.lock(ctx, id); err != nil {
			return redriveResp{N: n}, err
		}
		moved := false
		_, err := s.update(ctx, id, false, func(cur taskRec, exists bool, now time.Time) (*taskRec, error) {
			moved = false
			if !exists || cur.State != stDead {
				return nil, nil
			}
			next := cur
			next.State, next.Attempt, next.NotBefore, next.Finished, next.Lease = stReady, 0, ms(now), 0, ""
			moved = true
			return &next, nil
		})
		s.unlock(id)
		if err != nil {
			return redriveResp{N: n}, err
		}
		if moved {
			n++
		}
	}
	return redriveResp{N: n}, nil
}
