package taskq

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Task is one delivery of a task to a handler.
type Task struct {
	ID       string
	Queue    string
	Payload  []byte
	Attempt  int // 1 for the first delivery; a redriven task starts again at 1
	Enqueued time.Time
}

// Handler runs a task on a worker goroutine. Returning nil completes the
// task; an error fails this delivery (retried after a backoff, dead-lettered
// after MaxAttempts). ctx ends when the lease is lost (the task may then run
// elsewhere) or the worker stops. Tasks are delivered at least once: make
// effects idempotent, keyed by Task.ID.
type Handler func(ctx context.Context, t Task) error

// WorkOption adjusts a Worker.
type WorkOption func(*workOpts)

type workOpts struct{ conc int }

// Concurrency is how many tasks the worker runs at once (default 1), each
// on a goroutine that long-polls the queue's owner.
func Concurrency(n int) WorkOption { return func(o *workOpts) { o.conc = n } }

// Worker runs a queue's tasks on this node until Stop.
type Worker struct {
	q      *Queues
	queue  string
	h      Handler
	name   string
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Work starts a worker for queue on this node. The queue need not exist
// yet: the worker waits for it (and for an unreachable owner), retrying
// with backoff.
func (q *Queues) Work(queue string, h Handler, opts ...WorkOption) (*Worker, error) {
	if err := checkName(queue); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, fmt.Errorf("taskq: Work(%q): nil handler", queue)
	}
	o := workOpts{conc: 1}
	for _, f := range opts {
		f(&o)
	}
	if o.conc < 1 || o.conc > 1024 {
		return nil, fmt.Errorf("taskq: Concurrency must be in [1, 1024], got %d", o.conc)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, ErrClosed
	}
	q.wseq++
	w := &Worker{q: q, queue: queue, h: h, name: fmt.Sprintf("%s/%d", q.n.ID().Short(), q.wseq)}
	w.ctx, w.cancel = context.WithCancel(q.root)
	q.workers[w] = struct{}{}
	for i := 0; i < o.conc; i++ {
		w.wg.Add(1)
		q.wg.Add(1)
		go func() {
			defer q.wg.Done()
			defer w.wg.Done()
			w.poll()
		}()
	}
	return w, nil
}

// Stop ends the worker: running handlers' contexts end, and Stop waits for
// them to return. Their tasks are not acknowledged and run again after
// their leases expire.
func (w *Worker) Stop() {
	w.cancel()
	w.wg.Wait()
	if w.q.root.Err() == nil {
		// Best effort: end this worker's lease requests waiting at the owner.
		ctx, cancel := context.WithTimeout(w.q.root, w.q.cfg.Retry.PerAttempt)
		_ = w.q.n.Notify(ctx, queueID(w.queue), ServiceName, "unpoll", leaseReq{Queue: w.queue, Worker: w.name})
		cancel()
	}
	w.q.mu.Lock()
	delete(w.q.workers, w)
	w.q.mu.Unlock()
}

func (w *Worker) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-w.ctx.Done():
	}
}

func (w *Worker) poll() {
	backoff := 50 * time.Millisecond
	for w.ctx.Err() == nil {
		g, err := w.lease()
		if err != nil {
			if w.ctx.Err() != nil {
				return
			}
			w.q.log.Debug("lease failed", "queue", w.queue, "worker", w.name, "err", err)
			wait := backoff
			if errors.Is(err, ErrUnknownQueue) {
				wait = max(wait, time.Second)
			}
			w.sleep(time.Duration(float64(wait) * (0.5 + rand.Float64())))
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		if g != nil {
			w.run(g)
		}
	}
}

func (w *Worker) lease() (*grant, error) {
	p := w.q.cfg.Retry
	p.Attempts = 1
	p.PerAttempt = w.q.cfg.PollWait + p.PerAttempt
	ctx, cancel := context.WithTimeout(w.ctx, p.PerAttempt)
	defer cancel()
	var resp leaseResp
	err := w.q.call(ctx, w.queue, "lease", leaseReq{Queue: w.queue, Worker: w.name, WaitMs: w.q.cfg.PollWait.Milliseconds()}, &resp, p)
	return resp.Task, err
}

// run runs the handler for one delivery, extending the lease every
// Visibility/3 while it runs, then completes or fails the task.
func (w *Worker) run(g *grant) {
	vis := time.Duration(g.VisibilityMs) * time.Millisecond
	hctx, hcancel := context.WithCancel(w.ctx)
	defer hcancel()
	var lost sync.Once
	lostFlag := false
	markLost := func() { lost.Do(func() { lostFlag = true; hcancel() }) }
	stop := make(chan struct{})
	extDone := make(chan struct{})
	go w.extend(hctx, g, vis, stop, extDone, markLost)
	err := w.call(hctx, g)
	close(stop)
	<-extDone
	if lostFlag || w.ctx.Err() != nil {
		return // not ours to acknowledge any more
	}
	method, msg := "complete", ""
	if err != nil {
		method, msg = "fail", err.Error()
	}
	aerr := w.q.call(w.ctx, w.queue, method, ackReq{Queue: w.queue, ID: g.ID, Lease: g.Lease, Error: msg}, nil, w.q.cfg.Retry)
	if aerr != nil && w.ctx.Err() == nil {
		w.q.log.Info("acknowledging a task failed; it will be delivered again", "queue", w.queue, "task", g.ID, "method", method, "err", aerr)
	}
}

// call runs the handler, turning a panic into a failure.
func (w *Worker) call(ctx context.Context, g *grant) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("taskq: handler panicked: %v", p)
		}
	}()
	return w.h(ctx, Task{ID: g.ID, Queue: w.queue, Payload: g.Payload, Attempt: g.Attempt, Enqueued: fromMs(g.Enqueued)})
}

// extend keeps the lease alive while the handler runs. The lease is lost
// when the owner refuses an extension, or when no extension succeeded
// before the lease would have ended.
func (w *Worker) extend(ctx context.Context, g *grant, vis time.Duration, stop, done chan struct{}, markLost func()) {
	defer close(done)
	until := time.Now().Add(vis)
	every := max(vis/3, time.Millisecond)
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sent := time.Now()
		cctx, cancel := context.WithDeadline(ctx, until)
		err := w.q.call(cctx, w.queue, "extend", ackReq{Queue: w.queue, ID: g.ID, Lease: g.Lease}, nil, w.q.cfg.Retry)
		cancel()
		switch {
		case err == nil:
			until = sent.Add(vis)
		case errors.Is(err, ErrLeaseExpired) || !time.Now().Before(until):
			select {
			case <-stop:
			default:
				markLost()
			}
			return
		}
		t.Reset(max(time.Until(sent.Add(every)), time.Millisecond))
	}
}
