package pubsub

import (
	"sync"

	"github.com/shoal-p2p/shoal/id"
)

// Delivery is one message handed to a subscription's handler.
type Delivery struct {
	Topic string
	// Seq is the message's number in the topic's order (0 for an anycast).
	// Numbers only grow; they are not consecutive across a root change.
	Seq uint64
	// Data is the message. It is shared with the node's other subscriptions
	// of the topic: read it, do not modify it.
	Data []byte
	// Publisher is the node that published the message (for an anycast,
	// the node that sent it).
	Publisher id.ID
	// Anycast marks an anycast: the handler's return value decides whether
	// this subscription takes it (true) or the search moves on (false).
	Anycast bool
	// Gap counts messages of the topic this subscription missed just before
	// this one (after a repair, or when its queue overflowed); 0 normally.
	// Across a root change it counts only the new root's messages.
	Gap uint64
}

// Handler handles one delivery. A subscription's handler runs on a
// goroutine of the subscription's own, one delivery at a time in topic
// order; it must not block for long (hand slow work to another goroutine),
// or deliveries queue and, beyond Config.QueueLen, are dropped. The return
// value matters only for an anycast: true accepts it, false declines it and
// the search moves to the next subscriber.
type Handler func(d *Delivery) bool

// SubOption adjusts one subscription.
type SubOption func(*subOpts)

type subOpts struct {
	uses []string
}

// Uses ties the subscription's anycast decisions to the node's admission
// control (see package service): while any of the named resources ("cpu",
// "disk", "memory" or any name given limits with node.SetLimit) is at its
// limit, anycasts are declined without calling the handler, so the search
// moves to a subscriber with room. Published messages are delivered
// regardless.
func Uses(resources ...string) SubOption {
	return func(o *subOpts) { o.uses = append(o.uses, resources...) }
}

// Subscription is one handler subscribed to one topic on this node.
type Subscription struct {
	ps    *PubSub
	topic string
	id    uint64
	h     Handler
	uses  []string

	mu     sync.Mutex
	q      []subItem
	closed bool
	wake   chan struct{}
	done   chan struct{}

	last uint64 // run goroutine only (set before it starts)
}

type subItem struct {
	d   Delivery
	any bool
	key anyKey
}

func newSubscription(ps *PubSub, topic string, sid uint64, h Handler, o subOpts) *Subscription {
	return &Subscription{ps: ps, topic: topic, id: sid, h: h, uses: o.uses,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// Topic is the subscribed topic.
func (s *Subscription) Topic() string { return s.topic }

// Close ends the subscription: no delivery starts after Close returns (one
// running may finish), anycasts waiting in its queue are declined, and when
// it was the node's last reason to be in the topic's tree the node leaves it
// (its parent prunes it at once). Close may be called from the handler.
func (s *Subscription) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	q := s.q
	s.q = nil
	s.mu.Unlock()
	s.signal()
	s.ps.removeSub(s, q)
	return nil
}

func (s *Subscription) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// push queues an item without blocking; false when full or closed.
func (s *Subscription) push(it subItem) bool {
	s.mu.Lock()
	if s.closed || len(s.q) >= s.ps.cfg.QueueLen {
		s.mu.Unlock()
		return false
	}
	s.q = append(s.q, it)
	s.mu.Unlock()
	s.signal()
	return true
}

func (s *Subscription) next() (subItem, bool) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return subItem{}, false
		}
		if len(s.q) > 0 {
			it := s.q[0]
			s.q[0] = subItem{}
			s.q = s.q[1:]
			s.mu.Unlock()
			return it, true
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-s.ps.stop:
			return subItem{}, false
		}
	}
}

func (s *Subscription) run() {
	defer s.ps.wg.Done()
	defer close(s.done)
	for {
		it, ok := s.next()
		if !ok {
			return
		}
		if it.any {
			s.ps.anyAnswer(it.key, s.call(&it.d))
			continue
		}
		d := it.d
		if d.Seq <= s.last {
			continue
		}
		d.Gap = gapBetween(s.last, d.Seq)
		s.last = d.Seq
		s.ps.m.delivered.Add(1)
		s.call(&d)
	}
}

func (s *Subscription) call(d *Delivery) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			s.ps.log.Error("subscription handler panicked", "topic", s.topic, "panic", r)
			ok = false
		}
	}()
	return s.h(d)
}
