package service

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"
)

// running is a registered service: its mailbox, loop and dedupe window.
type running struct {
	h   *Host
	svc *Service

	mu       sync.Mutex
	queue    []func() // requests and continuations, in arrival order
	queued   int      // requests among them
	inFlight int
	wake     chan struct{}
	quit     chan struct{}
	finished chan struct{}
	stopped  bool
	dedupe   map[string]*dedupeEntry
	order    []string // dedupe IDs, oldest first
	st       ServiceStats
}

type dedupeEntry struct {
	done    bool
	reply   Reply
	at      time.Time
	waiters []Responder
}

func newRunning(h *Host, s *Service) *running {
	r := &running{h: h, svc: s, wake: make(chan struct{}, 1), quit: make(chan struct{}), finished: make(chan struct{})}
	if s.dedupe != nil {
		r.dedupe = make(map[string]*dedupeEntry)
	}
	return r
}

func (r *running) methodNames() []string {
	out := make([]string, 0, len(r.svc.methods))
	for m := range r.svc.methods {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// admit applies the dedupe window and admission control, then queues.
func (r *running) admit(q *request) {
	now := r.h.now()
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		answer(q.respond, q.env.ID, &Error{Code: CodeInternal, Message: "node is shutting down"})
		return
	}
	if r.dedupe != nil && q.env.ID != "" {
		r.expireLocked(now)
		if e, ok := r.dedupe[q.env.ID]; ok {
			if e.done {
				r.st.Replayed++
				rep := e.reply
				r.mu.Unlock()
				if q.respond != nil {
					q.respond(rep)
				}
				return
			}
			r.st.Joined++
			if q.respond != nil {
				e.waiters = append(e.waiters, q.respond)
			}
			r.mu.Unlock()
			return
		}
	}
	if r.queued >= r.svc.queueLen {
		r.st.Refused++
		r.mu.Unlock()
		answer(q.respond, q.env.ID, Overloaded("queue:"+r.svc.name, 10*time.Millisecond))
		return
	}
	// Resources: all or nothing, under the host lock.
	r.h.mu.Lock()
	for _, name := range r.svc.uses {
		res := r.h.resources[name]
		if !res.admits(q.size) {
			res.refused++
			hint := res.retryAfter()
			r.h.mu.Unlock()
			r.st.Refused++
			r.mu.Unlock()
			answer(q.respond, q.env.ID, Overloaded(name, hint))
			return
		}
	}
	for _, name := range r.svc.uses {
		res := r.h.resources[name]
		res.acquire(q.size)
		q.held = append(q.held, res)
	}
	r.h.mu.Unlock()
	q.admitted = now
	if r.dedupe != nil && q.env.ID != "" {
		r.dedupe[q.env.ID] = &dedupeEntry{at: now}
		r.order = append(r.order, q.env.ID)
	}
	r.queued++
	r.inFlight++
	r.queue = append(r.queue, func() { r.start(q) })
	r.mu.Unlock()
	r.signal()
}

// expireLocked drops dedupe entries over the count or age bound (finished
// ones only: a running request keeps its entry until it answers).
func (r *running) expireLocked(now time.Time) {
	cfg := r.svc.dedupe
	for len(r.order) > 0 {
		id := r.order[0]
		e := r.dedupe[id]
		if e == nil {
			r.order = r.order[1:]
			continue
		}
		if !e.done || (len(r.order) <= cfg.max && now.Sub(e.at) <= cfg.age) {
			break
		}
		delete(r.dedupe, id)
		r.order = r.order[1:]
	}
}

func (r *running) post(f func()) {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	r.queue = append(r.queue, f)
	r.mu.Unlock()
	r.signal()
}

func (r *running) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *running) loop() {
	defer close(r.finished)
	for {
		r.mu.Lock()
		if r.stopped { // stop drops what is still queued: do not drain it
			r.mu.Unlock()
			return
		}
		if len(r.queue) == 0 {
			r.mu.Unlock()
			select {
			case <-r.wake:
				continue
			case <-r.quit:
				return
			}
		}
		f := r.queue[0]
		r.queue[0] = nil
		r.queue = r.queue[1:]
		r.mu.Unlock()
		f()
	}
}

// start runs a queued request's handler.
func (r *running) start(q *request) {
	r.mu.Lock()
	r.queued--
	r.mu.Unlock()
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if dl := q.env.DeadlineTime(); !dl.IsZero() {
		if r.h.now().After(dl) {
			r.mu.Lock()
			r.st.Expired++
			r.mu.Unlock()
			r.h.stats.expired.Add(1)
			r.done(q, Reply{V: Version, ID: q.env.ID, Err: &Error{Code: CodeDeadlineExceeded, Message: "the caller's deadline passed while the request was queued"}})
			return
		}
		ctx, cancel = context.WithDeadline(ctx, dl)
	}
	c := &Call{r: r, req: q, ctx: ctx, cancel: cancel}
	r.mu.Lock()
	r.st.Handled++
	r.mu.Unlock()
	r.continueCall(c, func() { q.handler(c) })
}

// continueCall runs a handler or continuation with panic protection and
// makes sure every request is answered once nothing more can answer it.
func (r *running) continueCall(c *Call, f func()) {
	func() {
		defer func() {
			if p := recover(); p != nil {
				r.mu.Lock()
				r.st.Panics++
				r.mu.Unlock()
				r.h.log.Error("handler panicked", "service", r.svc.name, "method", c.Method(), "panic", p)
				c.Fail(&Error{Code: CodeInternal, Message: fmt.Sprintf("%s.%s panicked: %v", r.svc.name, c.Method(), p)})
			}
		}()
		f()
	}()
	if !c.replied && c.pending == 0 {
		c.Fail(&Error{Code: CodeInternal, Message: fmt.Sprintf("%s.%s returned without replying and started no work that could", r.svc.name, c.Method())})
	}
}

// done releases a request's resources, records its answer for duplicates
// and sends it.
func (r *running) done(q *request, rep Reply) {
	held := r.h.now().Sub(q.admitted) // the host clock, which admitted stamped
	r.h.mu.Lock()
	for _, res := range q.held {
		res.release(q.size, held)
	}
	q.held = nil
	r.h.mu.Unlock()
	var waiters []Responder
	r.mu.Lock()
	r.inFlight--
	if r.dedupe != nil && q.env.ID != "" {
		if e := r.dedupe[q.env.ID]; e != nil {
			if rep.Err != nil && rep.Err.Code != CodeApp {
				// Not an answer worth replaying (overload, shutdown, expiry):
				// a retry should run the handler.
				delete(r.dedupe, q.env.ID)
				// and its slot, or it would count against maxEntries and
				// later evict a retry's answer as if it were this one.
				r.order = slices.DeleteFunc(r.order, func(id string) bool { return id == q.env.ID })
			} else {
				e.done, e.reply, e.at = true, rep, r.h.now()
			}
			waiters = e.waiters
			e.waiters = nil
		}
		r.expireLocked(r.h.now())
	}
	r.mu.Unlock()
	if q.respond != nil {
		q.respond(rep)
	}
	for _, w := range waiters {
		w(rep)
	}
}

func (r *running) stats() ServiceStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.st
	st.Queued = r.queued
	st.InFlight = r.inFlight
	st.DedupeSize = len(r.dedupe)
	return st
}

// stop ends the loop. Requests still queued get no answer; their callers
// time out and retry (at another owner, if this node is leaving).
func (r *running) stop() {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	close(r.quit)
	<-r.finished
	r.mu.Lock()
	queue := r.queue
	r.queue = nil
	r.mu.Unlock()
	_ = queue // requests never started: their callers time out and retry elsewhere
}

// limit is the service's request limit: its own if set, else the host
// default, never above the ceiling.
func (r *running) limit(def, ceiling int) int {
	l := def
	if r.svc.maxReq > 0 {
		l = r.svc.maxReq
	}
	return min(l, ceiling)
}
