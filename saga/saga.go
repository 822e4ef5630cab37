package saga

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-p2p/shoal/kv"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/service"
)

// ServiceName is the name of the saga service on every node.
const ServiceName = "saga"

// Step is one step of a saga: an action and the undo that compensates it.
// Both must be idempotent: either may run more than once for one run (see
// the package documentation for exactly when). Undo must also be harmless
// when the action was never applied, and must keep working: it is retried
// until it succeeds. A nil Undo means the step has nothing to undo.
type Step struct {
	Name string
	Do   func(ctx context.Context, r Run) error
	Undo func(ctx context.Context, r Run) error
}

// Run is what a step's Do or Undo learns about the run it works for.
type Run struct {
	ID      string // the run's ID, given to Start
	Saga    string // the saga's name
	Input   []byte // given to Start
	Step    int    // index of the step, from 0
	Attempt int    // 1 for the first attempt of this Do or Undo by this runner
}

// Status is a run as stored.
type Status struct {
	ID    string `json:"id"`
	Saga  string `json:"saga"`
	State string `json:"state"` // running, compensating, done, undone, failed
	// Step counts the steps whose actions are, or may be, applied: while
	// running it is the index of the next step to do, while compensating
	// the next step to undo is Step-1; done has Step = Steps, undone 0.
	Step    int       `json:"step"`
	Steps   int       `json:"steps"`
	Error   string    `json:"error,omitempty"`  // why it compensates (first failure), or why it failed
	Runner  string    `json:"runner,omitempty"` // ID of the node that holds (or last held) the run
	Updated time.Time `json:"updated"`
}

// Terminal reports whether the run has ended (done, undone or failed).
func (s Status) Terminal() bool {
	return s.State == StateDone || s.State == StateUndone || s.State == StateFailed
}

// boundary names a point of a run where a test may crash the runner.
type boundary struct {
	Undo  bool   // on the undo path
	Step  int    // the step's index
	Point string // "before", "after" (the Do or Undo returned), "written" (progress stored)
}

// Sagas is the saga runtime on one node: it defines sagas, starts runs and
// runs those it owns.
type Sagas struct {
	n     *node.Node
	store *kv.KV
	cfg   Config
	log   *slog.Logger
	self  string

	// hook, if set (tests only), is called at each boundary by the runner;
	// an error makes the runner stop there as if it had died.
	hook atomic.Pointer[func(ctx context.Context, b boundary) error]

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	defs    map[string][]Step
	running map[string]bool // run IDs with a runner goroutine in this process
	closed  bool
	rng     *rand.Rand
}

// New starts the saga runtime on a node with its store: it registers the
// "saga" service and starts looking for runs to resume. Define the sagas
// right after New, before runs arrive (a run of a saga this node does not
// know is left to other nodes or to a later scan).
func New(n *node.Node, store *kv.KV, cfg Config) (*Sagas, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	self := n.ID()
	seed := uint64(0)
	for _, b := range self[:8] {
		seed = seed<<8 | uint64(b)
	}
	s := &Sagas{
		n: n, store: store, cfg: cfg, self: self.String(),
		log:     log.With("subsys", "saga", "node", self.Short()),
		defs:    map[string][]Step{},
		running: map[string]bool{},
		rng:     rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano()))),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	svc := service.New(ServiceName).Method("run", s.handleRun)
	if err := n.Handle(svc); err != nil {
		s.cancel()
		return nil, err
	}
	s.wg.Add(1)
	go s.scanner()
	return s, nil
}

// Close stops the runtime: runners stop where they are (their runs are
// resumed by whichever node owns them once the lease passes) and Close
// waits for them. Call it before closing the store.
func (s *Sagas) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// Define registers a saga. Every node must define the same sagas, with the
// same steps in the same order, before runs of them arrive.
func (s *Sagas) Define(name string, steps ...Step) error {
	if !validName(name) {
		return fmt.Errorf("%w: saga name %q", ErrBadName, name)
	}
	if len(steps) == 0 {
		return fmt.Errorf("saga: %q has no steps", name)
	}
	for i, st := range steps {
		if st.Do == nil {
			return fmt.Errorf("saga: %q step %d (%s) has no Do", name, i, st.Name)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.defs[name]; ok {
		return fmt.Errorf("saga: %q is already defined", name)
	}
	s.defs[name] = append([]Step(nil), steps...)
	return nil
}

func (s *Sagas) def(name string) ([]Step, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.defs[name]
	return d, ok
}

// Start begins a run of the named saga under id, which identifies it from
// then on. It is idempotent by id: starting an id that exists with the same
// saga and input does nothing more and returns nil; with another saga or
// input it returns ErrExists. Start returns once the run is stored; the
// owner of the run's key runs it.
func (s *Sagas) Start(ctx context.Context, name, id string, input []byte) error {
	if !validName(id) {
		return fmt.Errorf("%w: run ID %q", ErrBadName, id)
	}
	steps, ok := s.def(name)
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownSaga, name)
	}
	if s.ctx.Err() != nil {
		return ErrClosed
	}
	now := time.Now().UnixMilli()
	rec := record{Saga: name, Input: input, Steps: len(steps), State: StateRunning, Created: now, Updated: now}
	key := keyOf(id)
	if err := s.create(ctx, key, rec); errors.Is(err, ErrExists) {
		return err
	} else if err != nil {
		return fmt.Errorf("saga: start %q: %w", id, err)
	}
	// Ask the owner to run it now; if this is lost, the owner's scan finds it.
	nctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := s.n.Notify(nctx, kv.KeyID(key), ServiceName, "run", runReq{ID: id}); err != nil {
		s.log.Debug("asking the owner to run failed; its scan will", "id", id, "err", err)
	}
	return nil
}

// create stores a new run's record, or finds the same run stored already.
func (s *Sagas) create(ctx context.Context, key string, rec record) error {
	for attempt := 1; ; attempt++ {
		_, err := s.store.Put(ctx, key, rec.encode(), kv.IfAbsent())
		if err == nil || !(errors.Is(err, kv.ErrVersionMismatch) || errors.Is(err, kv.ErrAmbiguous)) {
			return err
		}
		it, gerr := s.store.Get(ctx, key)
		if errors.Is(gerr, kv.ErrNotFound) && attempt < 3 {
			continue // an ambiguous create that did not happen: try again
		}
		if gerr != nil {
			return fmt.Errorf("%w (then reading it: %v)", err, gerr)
		}
		have, derr := decodeRecord(it.Value)
		if derr != nil {
			return fmt.Errorf("%w: %s holds an unreadable record: %v", ErrExists, key, derr)
		}
		if have.Saga != rec.Saga || !bytes.Equal(have.Input, rec.Input) {
			return fmt.Errorf("%w: %s is a run of %q", ErrExists, key, have.Saga)
		}
		return nil
	}
}

// Status reads a run (linearizably).
func (s *Sagas) Status(ctx context.Context, id string) (Status, error) {
	if !validName(id) {
		return Status{}, fmt.Errorf("%w: run ID %q", ErrBadName, id)
	}
	if s.ctx.Err() != nil {
		return Status{}, ErrClosed
	}
	it, err := s.store.Get(ctx, keyOf(id))
	if errors.Is(err, kv.ErrNotFound) {
		return Status{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if err != nil {
		return Status{}, fmt.Errorf("saga: status of %q: %w", id, err)
	}
	r, err := decodeRecord(it.Value)
	if err != nil {
		return Status{}, err
	}
	return Status{ID: id, Saga: r.Saga, State: r.State, Step: r.Step, Steps: r.Steps, Error: r.Error, Runner: r.Runner, Updated: time.UnixMilli(r.Updated)}, nil
}

// Wait polls a run until it is done, undone or failed, or ctx ends. It
// rides out an unavailable store (retrying) and returns ErrNotFound at once
// for an ID that was never started.
func (s *Sagas) Wait(ctx context.Context, id string) (Status, error) {
	pause := 20 * time.Millisecond
	for {
		st, err := s.Status(ctx, id)
		switch {
		case err == nil && st.Terminal():
			return st, nil
		case errors.Is(err, ErrNotFound), errors.Is(err, ErrBadName), errors.Is(err, ErrClosed):
			return st, err
		case err != nil:
			s.log.Debug("wait: status failed; retrying", "id", id, "err", err)
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			if err == nil {
				err = ctx.Err()
			}
			return st, fmt.Errorf("saga: waiting for %q: %w", id, err)
		case <-t.C:
		}
		pause = min(2*pause, time.Second)
	}
}

type runReq struct {
	ID string `json:"id"`
}

// handleRun is the owner being asked to run a run now. It never blocks:
// kick starts a goroutine.
func (s *Sagas) handleRun(c *service.Call) {
	var req runReq
	if err := c.Decode(&req); err != nil {
		c.Fail(err)
		return
	}
	if !validName(req.ID) {
		c.Fail(&service.Error{Code: service.CodeBadRequest, Message: "bad run ID"})
		return
	}
	s.kick(req.ID)
	c.Reply(struct{}{})
}

// kick starts a runner for id unless this process has one already.
func (s *Sagas) kick(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.running[id] {
		return
	}
	s.running[id] = true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.run(id)
		s.mu.Lock()
		delete(s.running, id)
		s.mu.Unlock()
	}()
}

func (s *Sagas) isRunning(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running[id]
}

// scanner resumes the runs this node owns that no live runner holds.
func (s *Sagas) scanner() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.ScanInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.scan()
		}
	}
}

func (s *Sagas) scan() {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ScanInterval)
	defer cancel()
	items, err := s.store.Local(ctx, keyPrefix)
	if err != nil {
		s.log.Debug("scan: listing the replica failed", "err", err)
		return
	}
	now := time.Now().UnixMilli()
	for _, it := range items {
		if it.Deleted {
			continue
		}
		id := it.Key[len(keyPrefix):]
		r, err := decodeRecord(it.Value)
		if err != nil || r.terminal() || !validName(id) || s.isRunning(id) {
			continue
		}
		if !s.free(r, now) {
			continue
		}
		if own, err := s.n.IsOwner(ctx, kv.KeyID(it.Key)); err != nil || !own {
			continue
		}
		s.kick(id)
	}
}

// free: no live runner holds r, as far as this node can tell: nobody
// claimed it, its lease and margin have passed, or it names this node, which
// (scan checks) has no runner for it, so the holder was an earlier
// incarnation.
func (s *Sagas) free(r record, nowMs int64) bool {
	return r.Runner == "" || r.Runner == s.self || nowMs > r.RunnerUntil+s.margin().Milliseconds()
}

// margin is how long past a lease's end other nodes wait before taking a
// run over: an allowance for clock skew between nodes.
func (s *Sagas) margin() time.Duration { return s.cfg.RunnerLease / 2 }

// backoff is the jittered pause before attempt n+1 (n >= 1).
func (s *Sagas) backoff(n int) time.Duration {
	d := s.cfg.Backoff
	for i := 1; i < n && d < s.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.cfg.MaxBackoff)
	s.mu.Lock()
	j := 0.8 + 0.4*s.rng.Float64()
	s.mu.Unlock()
	return time.Duration(float64(d) * j)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
