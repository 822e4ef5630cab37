package memnet

import "time"

// At runs fn at time t: in discrete-event mode on the goroutine driving
// Step or RunUntil, once the virtual clock reaches t (a t in the past means
// "now", after the events already due); in realtime mode on a timer
// goroutine, via time.AfterFunc. fn must not be nil.
func (n *Network) At(t time.Time, fn func()) {
	if fn == nil {
		panic("memnet: At with a nil func")
	}
	if n.realtime {
		n.mu.Lock()
		defer n.mu.Unlock()
		n.scheduleLocked(event{fn: fn}, int64(max(time.Until(t), 0)))
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.scheduleLocked(event{fn: fn}, max(int64(t.Sub(n.start))-n.now, 0))
}

// After runs fn d from now; see At.
func (n *Network) After(d time.Duration, fn func()) {
	if fn == nil {
		panic("memnet: After with a nil func")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.scheduleLocked(event{fn: fn}, int64(max(d, 0)))
}

// Step runs the next event, advancing the virtual clock to its time, and
// reports whether there was one. A delivery that is blocked on arrival still
// counts as an event. In realtime mode Step does nothing and returns false.
func (n *Network) Step() bool {
	n.mu.Lock()
	if n.realtime || n.events.len() == 0 {
		n.mu.Unlock()
		return false
	}
	ev := n.events.pop()
	n.now = ev.at
	n.runUnlock(&ev)
	return true
}

// RunUntil runs every event due at or before t, including those scheduled
// meanwhile, and then sets the clock to t (the clock never goes back). It
// panics in realtime mode.
func (n *Network) RunUntil(t time.Time) {
	if n.realtime {
		panic("memnet: RunUntil in realtime mode")
	}
	n.mu.Lock()
	target := int64(t.Sub(n.start))
	for n.events.len() > 0 && n.events.next() <= target {
		ev := n.events.pop()
		n.now = ev.at
		n.runUnlock(&ev)
		n.mu.Lock()
	}
	n.now = max(n.now, target)
	n.mu.Unlock()
}

// RunFor is RunUntil(Now().Add(d)).
func (n *Network) RunFor(d time.Duration) { n.RunUntil(n.Now().Add(d)) }

// Pending is the number of scheduled events (deliveries and callbacks) that
// have not run yet, in either mode.
func (n *Network) Pending() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.realtime {
		return n.pending
	}
	return n.events.len()
}
