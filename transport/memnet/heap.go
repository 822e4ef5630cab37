package memnet

// event is one scheduled thing: a message delivery (fn == nil) or a callback
// scheduled with At/After (fn != nil). It is a small value type (56 bytes)
// so that a message costs no allocation of its own in discrete-event mode.
type event struct {
	at   int64  // virtual nanoseconds since the epoch (discrete mode)
	seq  uint64 // insertion order; breaks ties in at
	from int32  // endpoint index of the sender
	to   int32  // endpoint index of the destination
	inc  uint32 // incarnation of the destination when the message was sent
	msg  any
	fn   func()
}

// before orders events by time, then by insertion.
func (e *event) before(f *event) bool {
	return e.at < f.at || e.at == f.at && e.seq < f.seq
}

// eventHeap is a 4-ary min-heap of events held by value. container/heap is
// not used: its Push(any) would allocate for every message. (A variant with
// 24-byte keys and the payloads in a slab measured no faster, at 10^4 or
// 10^6 events in flight, so the simpler layout stays.)
type eventHeap struct{ s []event }

const arity = 4

func (h *eventHeap) len() int { return len(h.s) }

// next is the time of the earliest event; the heap must not be empty.
func (h *eventHeap) next() int64 { return h.s[0].at }

func (h *eventHeap) push(ev event) {
	h.s = append(h.s, ev)
	s := h.s
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / arity
		if !ev.before(&s[p]) {
			break
		}
		s[i] = s[p]
		i = p
	}
	s[i] = ev
}

// pop removes and returns the earliest event; the heap must not be empty.
func (h *eventHeap) pop() event {
	s := h.s
	top := s[0]
	last := len(s) - 1
	ev := s[last]
	s[last] = event{} // release msg and fn to the garbage collector
	s = s[:last]
	h.s = s
	if last == 0 {
		return top
	}
	i := 0
	for {
		c := arity*i + 1
		if c >= last {
			break
		}
		m := c
		end := min(c+arity, last)
		for k := c + 1; k < end; k++ {
			if s[k].before(&s[m]) {
				m = k
			}
		}
		if !s[m].before(&ev) {
			break
		}
		s[i] = s[m]
		i = m
	}
	s[i] = ev
	return top
}
