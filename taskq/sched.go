package taskq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/shoal-p2p/shoal/kv"
)

// errNotOwner: this node does not (or no longer) own the queue; the caller
// retries and is routed to the owner.
var errNotOwner = fmt.Errorf("%w: this node is not the queue's owner (ownership is moving)", ErrUnavailable)

// errConflict: a compare-and-set found another version; re-read.
var errConflict = errors.New("taskq: task changed concurrently")

// sched is the owner's scheduler of one queue: an index of its tasks
// rebuilt from the node's replica, heaps of ready and leased tasks, and the
// workers' waiting lease requests. Its methods run on request goroutines
// and the ticker; s.mu guards the fields below it, and a per-task lock
// serialises this node's writes of one task (other nodes' writes are
// fenced by the compare-and-set).
type sched struct {
	q      *Queues
	name   string
	loaded chan struct{} // closed once load finished
	err    error         // load's result, read after loaded

	mu      sync.Mutex
	cfg     QueueConfig
	tasks   map[string]*entry
	locks   map[string]chan struct{} // tasks with a write of this node in flight
	readyQ  itemHeap
	leasedQ itemHeap
	waiters []*waiter // lease requests waiting for a task, FIFO
	seq     uint64
	dropped bool
	viewGen uint64    // the node's leaf-set generation at the last reconcile
	lastRec time.Time // last reconcile
	maint   bool      // a reconcile is running
}

func newSched(q *Queues, name string) *sched {
	return &sched{q: q, name: name, loaded: make(chan struct{}), tasks: make(map[string]*entry), locks: make(map[string]chan struct{})}
}

// schedFor returns the loaded scheduler of a queue this node owns, loading
// it on first use.
func (q *Queues) schedFor(ctx context.Context, queue string) (*sched, error) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil, ErrClosed
	}
	s := q.scheds[queue]
	creator := s == nil
	if creator {
		s = newSched(q, queue)
		q.scheds[queue] = s
	}
	q.mu.Unlock()
	if creator {
		s.err = s.load(ctx)
		if s.err != nil {
			q.mu.Lock()
			if q.scheds[queue] == s {
				delete(q.scheds, queue)
			}
			q.mu.Unlock()
		}
		close(s.loaded)
	} else {
		select {
		case <-s.loaded:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: loading queue %q: %v", ErrUnavailable, queue, ctx.Err())
		}
	}
	if s.err != nil {
		return nil, s.err
	}
	s.mu.Lock()
	dropped := s.dropped
	s.mu.Unlock()
	if dropped {
		return nil, errNotOwner
	}
	return s, nil
}

// dropSched forgets a queue's scheduler (ownership moved away); the next
// request for it loads it afresh.
func (q *Queues) dropSched(s *sched) {
	q.mu.Lock()
	if q.scheds[s.name] == s {
		delete(q.scheds, s.name)
	}
	q.mu.Unlock()
	s.drop()
}

// drop wakes every waiting lease request, which then answers "not the owner".
func (s *sched) drop() {
	s.mu.Lock()
	s.dropped = true
	for _, w := range s.waiters {
		w.wake()
	}
	s.waiters = nil
	s.mu.Unlock()
}

// waiter is a lease request waiting for a task.
type waiter struct {
	ch        chan struct{}
	worker    string
	cancelled bool // the worker stopped polling (s.mu)
}

func (w *waiter) wake() {
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

// load checks ownership, reads the queue's configuration (linearizable)
// and builds the index from this node's replica.
func (s *sched) load(ctx context.Context) error {
	gen := s.q.n.View().Gen
	own, err := s.q.n.IsOwner(ctx, queueID(s.name))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if !own {
		return errNotOwner
	}
	cfg, err := s.q.readMeta(ctx, s.name)
	if err != nil {
		return err
	}
	items, err := s.q.kv.Local(ctx, taskPrefix(s.name))
	if err != nil {
		return fmt.Errorf("%w: listing the local replica: %v", ErrUnavailable, err)
	}
	s.mu.Lock()
	s.cfg = cfg
	s.merge(items)
	s.viewGen, s.lastRec = gen, time.Now()
	s.mu.Unlock()
	s.q.log.Debug("queue loaded", "queue", s.name, "tasks", len(items))
	return nil
}

func (q *Queues) readMeta(ctx context.Context, queue string) (QueueConfig, error) {
	it, err := q.kv.Get(ctx, metaKey(queue))
	if errors.Is(err, kv.ErrNotFound) {
		return QueueConfig{}, fmt.Errorf("%w: %q", ErrUnknownQueue, queue)
	}
	if err != nil {
		return QueueConfig{}, fmt.Errorf("%w: reading queue %q: %v", ErrUnavailable, queue, err)
	}
	var m metaRec
	if err := json.Unmarshal(it.Value, &m); err != nil {
		return QueueConfig{}, fmt.Errorf("taskq: queue %q has a corrupt configuration record: %v", queue, err)
	}
	return m.Config.config().withDefaults(), nil
}

// merge adds what the node's replica holds to the index (s.mu held):
// records newer than the index's, tasks it did not know, and removals.
func (s *sched) merge(items []kv.LocalItem) {
	prefix := taskPrefix(s.name)
	for _, it := range items {
		id := strings.TrimPrefix(it.Key, prefix)
		if it.Deleted {
			if e := s.tasks[id]; e != nil && e.ver != 0 && e.ver < it.Version {
				if _, busy := s.locks[id]; !busy {
					delete(s.tasks, id)
				}
			}
			continue
		}
		if e := s.tasks[id]; e != nil && e.ver != 0 && e.ver >= it.Version {
			continue // nothing newer: skip decoding
		}
		var rec taskRec
		if err := json.Unmarshal(it.Value, &rec); err != nil || rec.ID != id {
			s.q.log.Warn("skipping an undecodable task record", "queue", s.name, "key", it.Key, "err", err)
			continue
		}
		s.setLocked(id, it.Version, rec)
	}
}

// setLocked records a task's state at a version (s.mu held). A version
// older than the one held is ignored.
func (s *sched) setLocked(id string, ver uint64, rec taskRec) {
	e := s.tasks[id]
	if e != nil && e.ver != 0 && ver < e.ver {
		return
	}
	if e == nil {
		s.seq++
		e = &entry{seq: s.seq}
		s.tasks[id] = e
	}
	if rec.State == stDone {
		rec.Payload = nil
	}
	e.rec, e.ver = rec, ver
	s.indexLocked(id, e)
}

// indexLocked pushes a fresh heap item for the entry's current state.
func (s *sched) indexLocked(id string, e *entry) {
	e.gen++
	switch e.rec.State {
	case stReady:
		s.readyQ.push(item{at: e.rec.NotBefore, seq: e.seq, gen: e.gen, id: id})
		if e.rec.NotBefore <= ms(time.Now()) {
			s.wakeOneLocked()
		}
	case stLeased:
		s.leasedQ.push(item{at: e.rec.LeaseUntil, seq: e.seq, gen: e.gen, id: id})
	}
}

func (s *sched) wakeOneLocked() {
	if len(s.waiters) > 0 {
		s.waiters[0].wake()
		s.waiters = s.waiters[1:]
	}
}

// lock takes this node's write lock of a task.
func (s *sched) lock(ctx context.Context, id string) error {
	for {
		s.mu.Lock()
		if s.dropped {
			s.mu.Unlock()
			return errNotOwner
		}
		ch, busy := s.locks[id]
		if !busy {
			s.locks[id] = make(chan struct{})
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting for task %s: %v", ErrUnavailable, id, ctx.Err())
		}
	}
}

// unlock releases a task and re-indexes it (a picked task left the heaps).
func (s *sched) unlock(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch, ok := s.locks[id]; ok {
		close(ch)
		delete(s.locks, id)
	}
	if e := s.tasks[id]; e != nil {
		s.indexLocked(id, e)
	}
}

// transition decides a task's next state from its current one: nil for
// no write. exists is false for a task that has no record.
type transition func(cur taskRec, exists bool, now time.Time) (*taskRec, error)

// update applies f to a task with a compare-and-set, re-reading and
// re-deciding on conflicts. The caller holds the task's lock. assumeAbsent
// skips the read of a task the index does not know (enqueue: create-only).
func (s *sched) update(ctx context.Context, id string, assumeAbsent bool, f transition) (taskRec, error) {
	for try := 0; try < 6; try++ {
		s.mu.Lock()
		var cur taskRec
		var ver uint64
		e := s.tasks[id]
		if e != nil {
			cur, ver = e.rec, e.ver
		}
		s.mu.Unlock()
		exists := e != nil
		if (e == nil && !assumeAbsent) || (e != nil && ver == 0) || try > 0 {
			var err error
			cur, ver, exists, err = s.read(ctx, id)
			if err != nil {
				return taskRec{}, err
			}
		}
		next, err := f(cur, exists, time.Now())
		if err != nil || next == nil {
			return cur, err
		}
		if !exists {
			ver = 0
		}
		v, err := s.q.casTask(ctx, taskKey(s.name, id), ver, next)
		switch {
		case err == nil:
			s.mu.Lock()
			s.setLocked(id, v, *next)
			s.mu.Unlock()
			return *next, nil
		case errors.Is(err, errConflict):
			s.markUnknown(id)
			continue
		default:
			s.markUnknown(id)
			return taskRec{}, err
		}
	}
	return taskRec{}, fmt.Errorf("%w: task %s kept changing under this owner's writes", ErrUnavailable, id)
}

func (s *sched) markUnknown(id string) {
	s.mu.Lock()
	if e := s.tasks[id]; e != nil {
		e.ver = 0
	}
	s.mu.Unlock()
}

// read fetches a task's record (linearizable) and updates the index.
func (s *sched) read(ctx context.Context, id string) (taskRec, uint64, bool, error) {
	it, err := s.q.kv.Get(ctx, taskKey(s.name, id))
	if errors.Is(err, kv.ErrNotFound) {
		s.mu.Lock()
		if _, ok := s.tasks[id]; ok {
			delete(s.tasks, id)
		}
		s.mu.Unlock()
		return taskRec{}, it.Version, false, nil
	}
	if err != nil {
		return taskRec{}, 0, false, fmt.Errorf("%w: reading task %s: %v", ErrUnavailable, id, err)
	}
	var rec taskRec
	if err := json.Unmarshal(it.Value, &rec); err != nil {
		return taskRec{}, 0, false, fmt.Errorf("taskq: task %s of queue %q has a corrupt record: %v", id, s.name, err)
	}
	s.mu.Lock()
	s.setLocked(id, it.Version, rec)
	s.mu.Unlock()
	return rec, it.Version, true, nil
}

// casTask writes next at version ver (0: create-only). It returns the new
// version, errConflict when the key is at another version, or
// ErrUnavailable when the outcome stays unknown. An ambiguous outcome is
// settled by reading the key back: next carries a random Write token.
func (q *Queues) casTask(ctx context.Context, key string, ver uint64, next *taskRec) (uint64, error) {
	next.Write = randToken()
	b, err := json.Marshal(next)
	if err != nil {
		return 0, err
	}
	opt := kv.IfAbsent()
	if ver != 0 {
		opt = kv.IfVersion(ver)
	}
	v, err := q.kv.Put(ctx, key, b, opt)
	if err == nil {
		return v, nil
	}
	if errors.Is(err, kv.ErrVersionMismatch) {
		return 0, errConflict
	}
	if errors.Is(err, kv.ErrTooLarge) {
		return 0, fmt.Errorf("%w: %v", ErrTooLarge, err)
	}
	// Outcome unknown (ambiguous, timed out, no quorum): read it back.
	it, gerr := q.kv.Get(ctx, key)
	if gerr == nil {
		var cur taskRec
		if json.Unmarshal(it.Value, &cur) == nil && cur.Write == next.Write {
			return it.Version, nil
		}
		return 0, errConflict
	}
	if errors.Is(gerr, kv.ErrNotFound) {
		return 0, errConflict
	}
	return 0, fmt.Errorf("%w: writing %s: %v (then %v)", ErrUnavailable, key, err, gerr)
}
