package taskq

import (
	"context"
	"encoding/json"
	"time"

	"github.com/shoal-p2p/shoal/kv"
)

func jsonMarshal(v any) ([]byte, error)   { return json.Marshal(v) }
func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// maxSweep bounds the completed tasks one reconcile deletes.
const maxSweep = 512

// ticker runs the owner's timers: every Tick it expires leases that passed
// and wakes lease requests for tasks whose delay ended; every Reconcile
// (sooner after a change of the leaf set) it re-checks ownership, merges
// the local replica and sweeps completed tasks past their retention.
func (q *Queues) ticker() {
	defer q.wg.Done()
	t := time.NewTicker(q.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-q.root.Done():
			return
		case <-t.C:
		}
		q.mu.Lock()
		scheds := make([]*sched, 0, len(q.scheds))
		for _, s := range q.scheds {
			scheds = append(scheds, s)
		}
		q.mu.Unlock()
		gen := q.n.View().Gen
		for _, s := range scheds {
			select {
			case <-s.loaded:
			default:
				continue
			}
			if s.err == nil {
				s.tick(gen)
			}
		}
	}
}

func (s *sched) tick(gen uint64) {
	now := time.Now()
	type exp struct{ id, lease string }
	var expired []exp
	s.mu.Lock()
	if s.dropped {
		s.mu.Unlock()
		return
	}
	for {
		it, ok := s.leasedQ.peek()
		if !ok || it.at > ms(now) {
			break
		}
		s.leasedQ.pop()
		e := s.tasks[it.id]
		if e == nil || e.gen != it.gen || e.rec.State != stLeased {
			continue
		}
		if _, busy := s.locks[it.id]; busy {
			continue // its unlock re-indexes it
		}
		s.locks[it.id] = make(chan struct{})
		expired = append(expired, exp{it.id, e.rec.Lease})
	}
	// Wake waiting lease requests if a task is due (a delay or backoff ended).
	for len(s.waiters) > 0 {
		it, ok := s.readyQ.peek()
		if !ok {
			break
		}
		if e := s.tasks[it.id]; e == nil || e.gen != it.gen || e.rec.State != stReady {
			s.readyQ.pop()
			continue
		}
		if it.at <= ms(now) {
			for _, w := range s.waiters {
				w.wake()
			}
			s.waiters = nil
		}
		break
	}
	reconcile := !s.maint && (now.Sub(s.lastRec) >= s.q.cfg.Reconcile || (gen != s.viewGen && now.Sub(s.lastRec) >= time.Second))
	if reconcile {
		s.maint = true
	}
	s.mu.Unlock()
	for _, x := range expired {
		if !s.q.spawn(func() {
			ctx, cancel := context.WithTimeout(s.q.root, s.q.cfg.Retry.Overall)
			defer cancel()
			s.expire(ctx, x.id, x.lease)
		}) {
			s.unlock(x.id)
		}
	}
	if reconcile {
		if !s.q.spawn(func() { s.reconcile(gen) }) {
			s.mu.Lock()
			s.maint = false
			s.mu.Unlock()
		}
	}
}

// reconcile re-checks that this node owns the queue (dropping the
// scheduler if not), refreshes the configuration, merges the local replica
// and sweeps completed tasks older than the retention.
func (s *sched) reconcile(gen uint64) {
	defer func() {
		s.mu.Lock()
		s.maint = false
		s.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(s.q.root, s.q.cfg.Reconcile)
	defer cancel()
	own, err := s.q.n.IsOwner(ctx, queueID(s.name))
	if err != nil {
		return
	}
	if !own {
		s.q.log.Debug("no longer the owner of a queue; dropping its index", "queue", s.name)
		s.q.dropSched(s)
		return
	}
	if cfg, err := s.q.readMeta(ctx, s.name); err == nil {
		s.mu.Lock()
		s.cfg = cfg
		s.mu.Unlock()
	}
	items, err := s.q.kv.Local(ctx, taskPrefix(s.name))
	if err != nil {
		return
	}
	s.mu.Lock()
	s.merge(items)
	s.viewGen, s.lastRec = gen, time.Now()
	retention := s.cfg.Retention
	cutoff := ms(time.Now().Add(-retention))
	type old struct {
		id  string
		ver uint64
	}
	var sweep []old
	for id, e := range s.tasks {
		if e.rec.State == stDone && e.rec.Finished < cutoff && e.ver != 0 && len(sweep) < maxSweep {
			if _, busy := s.locks[id]; !busy {
				sweep = append(sweep, old{id, e.ver})
			}
		}
	}
	s.mu.Unlock()
	for _, o := range sweep {
		if err := s.lock(ctx, o.id); err != nil {
			return
		}
		_, err := s.q.kv.Delete(ctx, taskKey(s.name, o.id), kv.IfVersion(o.ver))
		s.mu.Lock()
		if e := s.tasks[o.id]; e != nil {
			if err == nil && e.ver == o.ver {
				delete(s.tasks, o.id)
			} else if err != nil {
				e.ver = 0 // changed meanwhile, or the outcome is unknown: re-read before use
			}
		}
		s.mu.Unlock()
		s.unlock(o.id)
	}
}
