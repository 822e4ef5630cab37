package taskq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/shoal-p2p/shoal/kv"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/service"
)

// ServiceName is the name of the queues' service on every node.
const ServiceName = "taskq"

// Queues is the task queues' presence on one node: owner of the queues
// whose IDs are closest to it, home of the workers started here, and client
// for everything else. Its methods are safe for concurrent use.
type Queues struct {
	n   *node.Node
	kv  *kv.KV
	cfg Config
	log *slog.Logger

	root   context.Context // ends at Close
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	scheds  map[string]*sched // queues this node serves as owner
	workers map[*Worker]struct{}
	wseq    int
	wg      sync.WaitGroup // every goroutine started here
}

// New starts the task queues on a node with its store and registers the
// "taskq" service (once per node).
func New(n *node.Node, store *kv.KV, cfg Config) (*Queues, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if n == nil || store == nil {
		return nil, fmt.Errorf("taskq: New needs a node and its store")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	q := &Queues{n: n, kv: store, cfg: cfg, log: log.With("subsys", "taskq", "node", n.ID().Short()),
		scheds: make(map[string]*sched), workers: make(map[*Worker]struct{})}
	q.root, q.cancel = context.WithCancel(context.Background())
	if err := n.Handle(q.service()); err != nil {
		q.cancel()
		return nil, fmt.Errorf("taskq: %w", err)
	}
	q.wg.Add(1)
	go q.ticker()
	return q, nil
}

// Close stops the workers started here (their handlers' contexts end), the
// owner's timers and waits for every goroutine. Tasks leased by stopped
// workers return to their queues when their leases expire. The service
// stays registered and answers "unavailable", so callers retry at the next
// owner; close the node after.
func (q *Queues) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	ws := make([]*Worker, 0, len(q.workers))
	for w := range q.workers {
		ws = append(ws, w)
	}
	scheds := q.scheds
	q.scheds = map[string]*sched{}
	q.mu.Unlock()
	q.cancel()
	for _, s := range scheds {
		s.drop()
	}
	for _, w := range ws {
		w.Stop()
	}
	q.wg.Wait()
	return nil
}

// spawn runs f on a goroutine that Close waits for; false after Close.
func (q *Queues) spawn(f func()) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		f()
	}()
	return true
}

// enter registers work that Close must wait for; call the returned func when done.
func (q *Queues) enter() (func(), bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, false
	}
	q.wg.Add(1)
	return q.wg.Done, true
}

// call sends a request to the owner of queue and maps the answer's errors
// to this package's.
func (q *Queues) call(ctx context.Context, queue, method string, req, resp any, p service.RetryPolicy) error {
	if q.root.Err() != nil {
		return ErrClosed
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.Overall)
		defer cancel()
	}
	var err error
	for attempt := 1; ; attempt++ {
		err = q.n.Call(ctx, queueID(queue), ServiceName, method, req, resp, node.WithRetry(p))
		// A node that has just (re)started joins the ring before its
		// services are registered: its "unknown service" is a moment's
		// unavailability, not a permanent error. (Nodes of this version
		// answer "unavailable" then, which the call retries by itself;
		// this loop is for older nodes in a mixed ring.)
		if err == nil || !errors.Is(err, service.ErrUnknownService) || attempt >= p.Attempts || ctx.Err() != nil {
			break
		}
		t := time.NewTimer(retryWait(p, attempt))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	if err == nil {
		return nil
	}
	var se *service.Error
	if errors.As(err, &se) {
		switch se.Code {
		case service.CodeApp:
			if e := fromMessage(se.Message); e != nil {
				return e
			}
		case service.CodeUnavailable, service.CodeOverloaded, service.CodeDeadlineExceeded, service.CodeInternal, service.CodeUnknownService:
			return fmt.Errorf("%w: %s %q: %v", ErrUnavailable, method, queue, err)
		case service.CodeTooLarge:
			return fmt.Errorf("%w: %s", ErrTooLarge, se.Message)
		}
		return fmt.Errorf("taskq: %s %q: %w", method, queue, err)
	}
	if q.root.Err() != nil {
		return ErrClosed
	}
	if errors.Is(err, node.ErrClosed) {
		return fmt.Errorf("%w: %v", ErrClosed, err)
	}
	return fmt.Errorf("%w: %s %q: %v", ErrUnavailable, method, queue, err)
}

// retryWait is the policy's backoff before attempt n+1, with ±20% jitter.
func retryWait(p service.RetryPolicy, n int) time.Duration {
	d := max(p.Backoff, time.Millisecond)
	for i := 1; i < n && d < p.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, max(p.MaxBackoff, time.Millisecond))
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// Create makes a queue, or updates its configuration if it exists
// (idempotent: the same call twice has the effect of one). Zero fields take
// DefaultQueueConfig's values. A queue must be created before use.
func (q *Queues) Create(ctx context.Context, name string, cfg QueueConfig) error {
	if err := checkName(name); err != nil {
		return err
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	return q.call(ctx, name, "create", createReq{Queue: name, Config: toWire(cfg)}, nil, q.cfg.Retry)
}

// EnqueueOption adjusts one Enqueue.
type EnqueueOption func(*enqueueReq)

// IdempotencyKey names the task: a second Enqueue with the same key on the
// same queue, within the queue's Retention after the first task completed,
// adds nothing and returns the first task's ID. Keys are up to 256 bytes.
func IdempotencyKey(k string) EnqueueOption { return func(r *enqueueReq) { r.Key = k } }

// Delay makes the task ready only after d (measured on the owner's clock).
func Delay(d time.Duration) EnqueueOption {
	return func(r *enqueueReq) { r.DelayMs = max(0, d.Milliseconds()) }
}

// Enqueue adds a task to a queue and returns its ID once a majority of the
// queue's replicas hold it. On ErrUnavailable the task may or may not have
// been added: retry with the same IdempotencyKey to be sure of one task.
func (q *Queues) Enqueue(ctx context.Context, queue string, payload []byte, opts ...EnqueueOption) (string, error) {
	if err := checkName(queue); err != nil {
		return "", err
	}
	if len(payload) > q.cfg.MaxPayload {
		return "", fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(payload), q.cfg.MaxPayload)
	}
	req := enqueueReq{Queue: queue, Payload: payload}
	for _, o := range opts {
		o(&req)
	}
	if err := checkIdemKey(req.Key); err != nil {
		return "", err
	}
	var resp enqueueResp
	if err := q.call(ctx, queue, "enqueue", req, &resp, q.cfg.Retry); err != nil {
		return "", err
	}
	return resp.ID, nil
}

// Stats are a queue's counts as its owner's index has them.
type Stats struct {
	Queue   string
	Ready   int // ready now
	Delayed int // waiting for a delay or a retry backoff
	Leased  int
	Done    int // completed and still kept (Retention)
	Dead    int
	Config  QueueConfig
	Owner   string // the serving owner's node ID, hex
}

// Stats asks the queue's owner for its counts.
func (q *Queues) Stats(ctx context.Context, queue string) (Stats, error) {
	if err := checkName(queue); err != nil {
		return Stats{}, err
	}
	var r statsResp
	if err := q.call(ctx, queue, "stats", queueReq{Queue: queue}, &r, q.cfg.Retry); err != nil {
		return Stats{}, err
	}
	return Stats{Queue: queue, Ready: r.Ready, Delayed: r.Delayed, Leased: r.Leased, Done: r.Done, Dead: r.Dead, Config: r.Config.config(), Owner: r.Owner}, nil
}

// DeadTask is a task in a queue's dead-letter queue.
type DeadTask struct {
	ID        string
	Payload   []byte
	Attempts  int
	LastError string
	Enqueued  time.Time
	Died      time.Time
}

// MaxDeadList bounds one Dead answer (oldest deaths first); Redrive what
// you have seen to see more.
const MaxDeadList = 1000

// Dead lists a queue's dead-letter queue, oldest death first, at most
// MaxDeadList tasks and about 768 KiB of payloads.
func (q *Queues) Dead(ctx context.Context, queue string) ([]DeadTask, error) {
	if err := checkName(queue); err != nil {
		return nil, err
	}
	var r deadResp
	if err := q.call(ctx, queue, "dead", queueReq{Queue: queue}, &r, q.cfg.Retry); err != nil {
		return nil, err
	}
	out := make([]DeadTask, len(r.Tasks))
	for i, t := range r.Tasks {
		out[i] = DeadTask{ID: t.ID, Payload: t.Payload, Attempts: t.Attempts, LastError: t.LastError, Enqueued: fromMs(t.Enqueued), Died: fromMs(t.Died)}
	}
	return out, nil
}

// Redrive moves dead tasks back to ready with their attempts reset: the
// named ones, or every dead task when ids is empty. It returns how many
// moved; an ID that is not a dead task of the queue is skipped.
func (q *Queues) Redrive(ctx context.Context, queue string, ids ...string) (int, error) {
	if err := checkName(queue); err != nil {
		return 0, err
	}
	for _, x := range ids {
		if !isTaskID(x) {
			return 0, fmt.Errorf("%w: %q is not a task ID", ErrNotFound, x)
		}
	}
	var r redriveResp
	if err := q.call(ctx, queue, "redrive", queueReq{Queue: queue, IDs: ids}, &r, q.cfg.Retry); err != nil {
		return 0, err
	}
	return r.N, nil
}
