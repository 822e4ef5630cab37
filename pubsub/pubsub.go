package pubsub

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/transport"
)

// ProtocolName is the node protocol pubsub registers.
const ProtocolName = "pubsub"

// PubSub is publish/subscribe and anycast on one node. Its methods are safe
// for concurrent use.
type PubSub struct {
	n    *node.Node
	cfg  Config
	log  *slog.Logger
	self transport.Peer

	mu      sync.Mutex
	c       *core
	subs    map[string][]*Subscription
	subByID map[uint64]*Subscription
	nextSub uint64
	pubWait map[uint64]chan uint64
	anyWait map[uint64]chan anyResult
	attach  map[string]chan struct{}
	armed   time.Time // when the timer goroutine will tick next
	outq    []outMsg
	closed  bool

	ids     atomic.Uint64
	outWake chan struct{}
	wake    chan struct{}
	stop    chan struct{}
	wg      sync.WaitGroup

	m struct {
		delivered, dropped, sendErrors, overloaded, bad atomic.Uint64
	}
}

// New starts pubsub on a running node and registers node protocol
// "pubsub" (once per node). Zero fields of cfg take DefaultConfig's values.
func New(n *node.Node, cfg Config) (*PubSub, error) {
	cfg = withDefaults(cfg)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	self := n.Self()
	seed := cfg.Seed
	if seed == 0 {
		seed = int64(binary.BigEndian.Uint64(self.ID[:8]) >> 1)
	}
	ps := &PubSub{
		n: n, cfg: cfg, self: self,
		log:     log.With("subsys", "pubsub", "node", self.ID.Short()),
		c:       newCore(self, cfg, rand.New(rand.NewSource(seed))),
		subs:    make(map[string][]*Subscription),
		subByID: make(map[uint64]*Subscription),
		pubWait: make(map[uint64]chan uint64),
		anyWait: make(map[uint64]chan anyResult),
		attach:  make(map[string]chan struct{}),
		outWake: make(chan struct{}, 1),
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	// Publish and anycast IDs must not repeat across restarts of this node
	// (a root dedupes publishes by them): start at a random point.
	var b [8]byte
	if _, err := crand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("pubsub: random: %w", err)
	}
	ps.ids.Store(binary.BigEndian.Uint64(b[:]) >> 2)
	now := time.Now()
	ps.c.nextHB = now.Add(cfg.HeartbeatInterval)
	ps.armed = ps.c.nextHB
	if err := n.RegisterProtocol(ProtocolName, proto{ps}); err != nil {
		return nil, fmt.Errorf("pubsub: %w", err)
	}
	ps.wg.Add(2)
	go ps.sender()
	go ps.timers()
	return ps, nil
}

func withDefaults(c Config) Config {
	d := DefaultConfig()
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setInt(&c.MaxTopicLen, d.MaxTopicLen)
	setInt(&c.MaxMessage, d.MaxMessage)
	setInt(&c.History, d.History)
	setInt(&c.HistoryBytes, d.HistoryBytes)
	setInt(&c.QueueLen, d.QueueLen)
	setDur(&c.HeartbeatInterval, d.HeartbeatInterval)
	if c.ParentTimeout == 0 {
		c.ParentTimeout = max(d.ParentTimeout, 3*c.HeartbeatInterval+c.HeartbeatInterval/2)
	}
	setDur(&c.SubscribeRetry, d.SubscribeRetry)
	setDur(&c.SubscribeTimeout, d.SubscribeTimeout)
	setDur(&c.PublishRetry, d.PublishRetry)
	setDur(&c.PublishTimeout, d.PublishTimeout)
	setDur(&c.AnycastTimeout, d.AnycastTimeout)
	setDur(&c.ReorderTimeout, d.ReorderTimeout)
	return c
}

// Close leaves every topic tree (parents prune this node at once, children
// re-subscribe elsewhere at once), ends every subscription and stops the
// goroutines, waiting for them. Calls in progress return ErrClosed. It does
// not close the node.
func (ps *PubSub) Close() error {
	ps.mu.Lock()
	if ps.closed {
		ps.mu.Unlock()
		return nil
	}
	ps.c.shutdown()
	ps.processLocked()
	ps.closed = true
	var subs []*Subscription
	for _, s := range ps.subByID {
		subs = append(subs, s)
	}
	ps.mu.Unlock()
	for _, s := range subs {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.signal()
	}
	close(ps.stop)
	ps.wg.Wait()
	return nil
}

func (ps *PubSub) checkTopic(topic string) error {
	if topic == "" {
		return fmt.Errorf("%w: empty", ErrBadTopic)
	}
	if len(topic) > ps.cfg.MaxTopicLen {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrBadTopic, len(topic), ps.cfg.MaxTopicLen)
	}
	return nil
}

func (ps *PubSub) newID() uint64 {
	for {
		if x := ps.ids.Add(1); x != 0 {
			return x
		}
	}
}

// Subscribe registers h for topic's messages on this node and joins the
// topic's tree. It returns once the node is attached to the tree: every
// message published after that reaches h (see docs/pubsub.md for what is
// promised during repairs). If ctx has no deadline, Config.SubscribeTimeout
// applies; on failure nothing stays subscribed.
func (ps *PubSub) Subscribe(ctx context.Context, topic string, h Handler, opts ...SubOption) (*Subscription, error) {
	if err := ps.checkTopic(topic); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, fmt.Errorf("pubsub: subscribe %q: nil handler", topic)
	}
	var o subOpts
	for _, f := range opts {
		f(&o)
	}
	ps.mu.Lock()
	if ps.closed {
		ps.mu.Unlock()
		return nil, ErrClosed
	}
	ps.nextSub++
	s := newSubscription(ps, topic, ps.nextSub, h, o)
	ps.subs[topic] = append(ps.subs[topic], s)
	ps.subByID[s.id] = s
	attached, last := ps.c.subscribe(time.Now(), topic, s.id)
	s.last = last
	var wait chan struct{}
	if !attached {
		wait = ps.attach[topic]
		if wait == nil {
			wait = make(chan struct{})
			ps.attach[topic] = wait
		}
	}
	ps.processLocked()
	ps.wg.Add(1)
	go s.run()
	ps.mu.Unlock()
	if wait == nil {
		return s, nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ps.cfg.SubscribeTimeout)
		defer cancel()
	}
	select {
	case <-wait:
		return s, nil
	case <-ctx.Done():
		s.Close()
		return nil, fmt.Errorf("pubsub: subscribe %q: not attached to the topic's tree in time: %w", topic, ctx.Err())
	case <-ps.stop:
		return nil, ErrClosed
	}
}

func (ps *PubSub) removeSub(s *Subscription, queued []subItem) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	list := ps.subs[s.topic]
	for i, x := range list {
		if x == s {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(ps.subs, s.topic)
		delete(ps.attach, s.topic) // nobody waits any more
	} else {
		ps.subs[s.topic] = list
	}
	delete(ps.subByID, s.id)
	if ps.closed {
		return
	}
	ps.c.unsubscribe(time.Now(), s.topic, s.id)
	for _, it := range queued {
		if it.any {
			ps.c.anyAnswer(it.key, false)
		}
	}
	ps.processLocked()
}

// Publish sends data to every subscriber of topic. It returns the sequence
// number the topic's root gave the message, once the root has accepted it
// (sequenced it and passed it to the tree). Until then it re-sends every
// Config.PublishRetry with the same publish ID, which the root recognises,
// so a retry is not sequenced twice by the same root. If ctx has no
// deadline, Config.PublishTimeout applies.
func (ps *PubSub) Publish(ctx context.Context, topic string, data []byte) (uint64, error) {
	if err := ps.checkTopic(topic); err != nil {
		return 0, err
	}
	m := &msg{kind: kPub, topic: topic, id: ps.newID(), data: data}
	b := m.bytes()
	if len(b) > ps.cfg.MaxMessage {
		return 0, fmt.Errorf("%w: %d bytes of data on topic %q, limit %d with the header", ErrTooLarge, len(data), topic, ps.cfg.MaxMessage)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ps.cfg.PublishTimeout)
		defer cancel()
	}
	ch := make(chan uint64, 1)
	ps.mu.Lock()
	if ps.closed {
		ps.mu.Unlock()
		return 0, ErrClosed
	}
	ps.pubWait[m.id] = ch
	ps.mu.Unlock()
	defer func() {
		ps.mu.Lock()
		delete(ps.pubWait, m.id)
		ps.mu.Unlock()
	}()
	key := id.HashString(topic)
	for {
		if err := ps.n.RouteProto(ctx, ProtocolName, key, b); err != nil {
			return 0, ps.nodeErr("publish", topic, err)
		}
		t := time.NewTimer(ps.cfg.PublishRetry)
		select {
		case seq := <-ch:
			t.Stop()
			return seq, nil
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, fmt.Errorf("pubsub: publish to %q: the topic's root did not acknowledge: %w", topic, ctx.Err())
		case <-ps.stop:
			t.Stop()
			return 0, ErrClosed
		}
	}
}

func (ps *PubSub) nodeErr(op, topic string, err error) error {
	switch {
	case errors.Is(err, node.ErrTooLarge):
		return fmt.Errorf("%w: %s on topic %q: %v", ErrTooLarge, op, topic, err)
	case errors.Is(err, node.ErrClosed):
		return fmt.Errorf("%w: %s on topic %q: node closed", ErrClosed, op, topic)
	}
	return fmt.Errorf("pubsub: %s on topic %q: %w", op, topic, err)
}

// Anycast delivers data to one subscriber of topic that accepts it,
// searching the tree from where the message first meets it (so a
// subscriber near this node is preferred), and returns the node that
// accepted. With no subscribers it fails with ErrNoSubscribers after one
// round trip to the topic's root; when every subscriber declines, after the
// search. It is not retried: a timeout (ctx, or Config.AnycastTimeout if ctx
// has none) leaves open whether a subscriber took it.
func (ps *PubSub) Anycast(ctx context.Context, topic string, data []byte) (transport.Peer, error) {
	if err := ps.checkTopic(topic); err != nil {
		return transport.Peer{}, err
	}
	m := &msg{kind: kAny, topic: topic, id: ps.newID(), origin: ps.self, data: data}
	b := m.bytes()
	if len(b)+16 > ps.cfg.MaxMessage {
		return transport.Peer{}, fmt.Errorf("%w: %d bytes of data on topic %q, limit %d with the header", ErrTooLarge, len(data), topic, ps.cfg.MaxMessage)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ps.cfg.AnycastTimeout)
		defer cancel()
	}
	ch := make(chan anyResult, 1)
	ps.mu.Lock()
	if ps.closed {
		ps.mu.Unlock()
		return transport.Peer{}, ErrClosed
	}
	ps.anyWait[m.id] = ch
	started := ps.c.anyLocal(time.Now(), m)
	ps.processLocked()
	ps.mu.Unlock()
	defer func() {
		ps.mu.Lock()
		delete(ps.anyWait, m.id)
		ps.mu.Unlock()
	}()
	if !started {
		if err := ps.n.RouteProto(ctx, ProtocolName, id.HashString(topic), b); err != nil {
			return transport.Peer{}, ps.nodeErr("anycast", topic, err)
		}
	}
	select {
	case r := <-ch:
		if r.ok {
			return r.by, nil
		}
		return transport.Peer{}, fmt.Errorf("%w: topic %q: %s", ErrNoSubscribers, topic, r.reason)
	case <-ctx.Done():
		return transport.Peer{}, fmt.Errorf("pubsub: anycast on %q: no answer (a subscriber may or may not have taken it): %w", topic, ctx.Err())
	case <-ps.stop:
		return transport.Peer{}, ErrClosed
	}
}

func (ps *PubSub) anyAnswer(k anyKey, ok bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		return
	}
	ps.c.anyAnswer(k, ok)
	ps.processLocked()
}

// processLocked carries out the core's output. ps.mu is held.
func (ps *PubSub) processLocked() {
	for {
		o := ps.c.take()
		if o.empty() {
			break
		}
		if len(o.msgs) > 0 {
			ps.outq = append(ps.outq, o.msgs...)
			select {
			case ps.outWake <- struct{}{}:
			default:
			}
		}
		for _, l := range o.locals {
			for _, s := range ps.subs[l.topic] {
				it := subItem{d: Delivery{Topic: l.topic, Seq: l.seq, Data: l.data, Publisher: l.publisher}}
				if !s.push(it) {
					ps.m.dropped.Add(1)
				}
			}
		}
		for _, a := range o.pubAcks {
			if ch := ps.pubWait[a.id]; ch != nil {
				select {
				case ch <- a.seq:
				default:
				}
			}
		}
		for _, r := range o.anyDone {
			if ch := ps.anyWait[r.id]; ch != nil {
				select {
				case ch <- r:
				default:
				}
			}
		}
		for _, name := range o.attached {
			if ch := ps.attach[name]; ch != nil {
				close(ch)
				delete(ps.attach, name)
			}
		}
		for _, tr := range o.tries {
			ps.tryLocked(tr)
		}
	}
	if d := ps.c.nextDeadline(); d.Before(ps.armed) {
		ps.armed = d
		select {
		case ps.wake <- struct{}{}:
		default:
		}
	}
}

// tryLocked offers an anycast to one local subscription, declining at once
// for it when it is closed, full, or its resources are over their limits.
func (ps *PubSub) tryLocked(tr anyTry) {
	s := ps.subByID[tr.sub]
	if s == nil {
		ps.c.anyAnswer(tr.key, false)
		return
	}
	if len(s.uses) > 0 {
		if res, over := ps.n.OverLimit(s.uses...); over {
			ps.m.overloaded.Add(1)
			ps.log.Debug("anycast declined: resource at its limit", "topic", tr.topic, "resource", res)
			ps.c.anyAnswer(tr.key, false)
			return
		}
	}
	it := subItem{any: true, key: tr.key, d: Delivery{Topic: tr.topic, Data: tr.data, Publisher: tr.origin, Anycast: true}}
	if !s.push(it) {
		ps.c.anyAnswer(tr.key, false)
	}
}

// sender carries out sends and routes in order, off the node's goroutines.
func (ps *PubSub) sender() {
	defer ps.wg.Done()
	for {
		ps.mu.Lock()
		q := ps.outq
		ps.outq = nil
		ps.mu.Unlock()
		if len(q) > 0 {
			ps.sendAll(q)
			continue
		}
		select {
		case <-ps.outWake:
		case <-ps.stop:
			ps.mu.Lock()
			q = ps.outq
			ps.outq = nil
			ps.mu.Unlock()
			ps.sendAll(q) // the leaves queued by Close
			return
		}
	}
}

func (ps *PubSub) sendAll(q []outMsg) {
	ctx := context.Background()
	for _, o := range q {
		var err error
		switch {
		case o.route:
			err = ps.n.RouteProto(ctx, ProtocolName, o.key, o.b)
		case o.to.ID == ps.self.ID:
			ps.receive(ps.self, o.b, true)
		default:
			err = ps.n.SendProto(ctx, ProtocolName, o.to, o.b)
		}
		if err != nil {
			ps.m.sendErrors.Add(1)
			ps.log.Debug("send", "kind", o.kind, "to", o.to.ID.Short(), "route", o.route, "err", err)
		}
	}
}

// timers ticks the core at its deadlines and checks ownership of the
// topics this node is root of every heartbeat.
func (ps *PubSub) timers() {
	defer ps.wg.Done()
	t := time.NewTimer(ps.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ps.stop:
			return
		case <-t.C:
		case <-ps.wake:
		}
		ps.mu.Lock()
		hbDue := !time.Now().Before(ps.c.nextHB)
		ps.mu.Unlock()
		var own *ownership
		if hbDue {
			ctx, cancel := context.WithTimeout(context.Background(), ps.cfg.HeartbeatInterval)
			st, err := ps.n.Status(ctx)
			cancel()
			if err == nil {
				own = &ownership{rng: st.Range, ready: st.Ready}
			}
		}
		ps.mu.Lock()
		if ps.closed {
			ps.mu.Unlock()
			return
		}
		ps.c.tick(time.Now(), own)
		ps.processLocked()
		d := ps.c.nextDeadline()
		ps.armed = d
		ps.mu.Unlock()
		t.Reset(max(time.Until(d), time.Millisecond))
	}
}

func (ps *PubSub) receive(from transport.Peer, payload []byte, direct bool) {
	m, err := decode(payload)
	if err != nil {
		ps.m.bad.Add(1)
		ps.log.Debug("bad message", "from", from.ID.Short(), "err", err)
		return
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		return
	}
	if direct {
		ps.c.direct(time.Now(), from, m)
	} else {
		ps.c.routed(time.Now(), from, m)
	}
	ps.processLocked()
}

// proto is the node.Protocol face of a PubSub.
type proto struct{ ps *PubSub }

func (p proto) Forward(m *node.ProtoMessage, next id.ID) bool {
	ps := p.ps
	dm, err := decode(m.Payload)
	if err != nil {
		ps.m.bad.Add(1)
		return true
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		return true
	}
	pass := ps.c.forward(time.Now(), m.From, dm)
	ps.processLocked()
	return pass
}

func (p proto) Deliver(m *node.ProtoMessage) { p.ps.receive(m.From, m.Payload, m.Direct) }
