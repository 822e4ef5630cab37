package node

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/service"
	"github.com/shoal-p2p/shoal/transport"
)

// Node is a running Shoal node. Its methods are safe for concurrent use.
type Node struct {
	cfg  Config
	tr   transport.Transport
	core *ring.Node // touched only by the run goroutine
	self transport.Peer
	host *service.Host

	protos protoRegistry

	view    atomic.Pointer[View]
	viewGen uint64 // run goroutine only
	log     *slog.Logger

	inbox   chan input
	calls   chan func()
	deliver chan *Message
	stop    chan struct{}
	done    chan struct{} // closed when run returns
	wg      sync.WaitGroup

	readyOnce sync.Once
	readyCh   chan struct{}
	closeOnce sync.Once
	closed    atomic.Bool

	mu      sync.Mutex
	waiters map[uint64]chan result
	reqSeq  atomic.Uint64

	// run goroutine only
	byMsg     map[uint64]uint64
	byMsgFIFO []uint64
	lastOwner OwnerChange
	timer     *time.Timer

	m metrics
}

type input struct {
	from        transport.Peer
	msg         ring.Msg
	unreachable bool
}

type result struct {
	data []byte
	err  error
}

type metrics struct {
	framesIn, badFrames, inboxDrops, delivered, expired, deliverDrops, sendErrors atomic.Uint64
}

// Metrics are the node runtime's counters.
type Metrics struct {
	FramesIn     uint64 `json:"frames_in"`     // frames received
	BadFrames    uint64 `json:"bad_frames"`    // frames that could not be decoded or lied about their sender
	InboxDrops   uint64 `json:"inbox_drops"`   // frames dropped because the core was behind
	Delivered    uint64 `json:"delivered"`     // messages handed to the application
	Expired      uint64 `json:"expired"`       // messages dropped because their deadline had passed
	DeliverDrops uint64 `json:"deliver_drops"` // deliveries dropped because the application was behind
	SendErrors   uint64 `json:"send_errors"`   // frames the transport refused
}

// Start starts a node and joins the ring through cfg.Bootstrap. It returns
// once the node is ready (it has joined and its leaf set has answered), or
// an error wrapping ErrJoin if that does not happen within cfg.JoinTimeout
// or before ctx ends.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Ring.LeafSetSize == 0 {
		cfg.Ring = ring.DefaultConfig()
	}
	d := DefaultConfig()
	if cfg.InboxSize == 0 {
		cfg.InboxSize = d.InboxSize
	}
	if cfg.DeliverQueue == 0 {
		cfg.DeliverQueue = d.DeliverQueue
	}
	if cfg.JoinTimeout == 0 {
		cfg.JoinTimeout = d.JoinTimeout
	}
	if cfg.MaxMessage == 0 {
		cfg.MaxMessage = d.MaxMessage
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	self := cfg.Transport.Self()
	seed := cfg.Seed
	if seed == 0 {
		for _, b := range self.ID[:8] {
			seed = seed<<8 | int64(b)
		}
	}
	core, err := ring.New(self, cfg.Ring, rand.New(rand.NewSource(seed)))
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:     cfg,
		tr:      cfg.Transport,
		core:    core,
		self:    self,
		log:     log.With("subsys", "node", "node", self.ID.Short()),
		inbox:   make(chan input, cfg.InboxSize),
		calls:   make(chan func()),
		deliver: make(chan *Message, cfg.DeliverQueue),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		readyCh: make(chan struct{}),
		waiters: make(map[uint64]chan result),
		byMsg:   make(map[uint64]uint64),
		host:    service.NewHost(service.HostConfig{MaxRequest: min(service.DefaultMaxRequest, cfg.MaxMessage), Ceiling: cfg.MaxMessage, Logger: log, StartGrace: cfg.ServiceGrace}),
	}
	n.reqSeq.Store(randomUint64() >> 2)
	core.SetForward(n.forwardUpcall)
	if err := n.tr.Start(receiver{n}); err != nil {
		return nil, fmt.Errorf("node: start transport: %w", err)
	}
	n.timer = time.NewTimer(time.Hour)
	n.wg.Add(2)
	go n.run()
	go n.deliverLoop()
	boot := cfg.Bootstrap
	if err := n.do(ctx, func() { n.core.Start(time.Now(), boot) }); err != nil {
		n.Close()
		return nil, err
	}
	jctx, cancel := context.WithTimeout(ctx, cfg.JoinTimeout)
	defer cancel()
	select {
	case <-n.readyCh:
		n.log.Info("node ready", "id", self.ID.String(), "bootstrap", len(boot))
		return n, nil
	case <-jctx.Done():
		n.Close()
		return nil, fmt.Errorf("%w: no complete answer from the bootstrap nodes within %v (%v); check that they are running and reachable, and that each address ends in /p2p/<peer-id>", ErrJoin, cfg.JoinTimeout, jctx.Err())
	}
}

// ID is this node's ring ID.
func (n *Node) ID() id.ID { return n.self.ID }

// Self is this node's ID and addresses.
func (n *Node) Self() transport.Peer { return n.tr.Self() }

// Ready is closed once the node has joined.
func (n *Node) Ready() <-chan struct{} { return n.readyCh }

// Metrics returns the runtime's counters.
func (n *Node) Metrics() Metrics {
	return Metrics{
		FramesIn: n.m.framesIn.Load(), BadFrames: n.m.badFrames.Load(), InboxDrops: n.m.inboxDrops.Load(),
		Delivered: n.m.delivered.Load(), Expired: n.m.expired.Load(), DeliverDrops: n.m.deliverDrops.Load(),
		SendErrors: n.m.sendErrors.Load(),
	}
}

// do runs f on the core goroutine and processes what it produced.
func (n *Node) do(ctx context.Context, f func()) error {
	if n.closed.Load() {
		return ErrClosed
	}
	ran := make(chan struct{})
	g := func() { f(); close(ran) }
	select {
	case n.calls <- g:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.done:
		return ErrClosed
	}
	select {
	case <-ran:
		return nil
	case <-n.done:
		return ErrClosed
	}
}

// Status returns a snapshot of the overlay core.
func (n *Node) Status(ctx context.Context) (ring.Status, error) {
	var st ring.Status
	err := n.do(ctx, func() { st = n.core.Status() })
	return st, err
}

// IsOwner reports whether this node is, and is sure it is, the owner of key.
func (n *Node) IsOwner(ctx context.Context, key id.ID) (bool, error) {
	var ok bool
	err := n.do(ctx, func() { ok = n.core.IsOwner(key) })
	return ok, err
}

func (n *Node) run() {
	defer n.wg.Done()
	defer close(n.done)
	for {
		select {
		case <-n.stop:
			return
		case in := <-n.inbox:
			n.handle(in)
			// Take what else is waiting before flushing: fewer, larger writes.
			for i := 0; i < 64; i++ {
				select {
				case in := <-n.inbox:
					n.handle(in)
					continue
				default:
				}
				break
			}
		case f := <-n.calls:
			f()
		case <-n.timer.C:
			n.core.Tick(time.Now())
		}
		n.flush()
	}
}

func (n *Node) handle(in input) {
	now := time.Now()
	if in.unreachable {
		n.core.Unreachable(now, in.from.ID)
		return
	}
	if err := n.core.Step(now, in.from, in.msg); err != nil {
		n.m.badFrames.Add(1)
		n.log.Warn("rejected message", "peer", in.from.ID.Short(), "err", err)
	}
}

// flush carries out the core's output and re-arms the timer.
func (n *Node) flush() {
	out := n.core.TakeOutput()
	for _, e := range out.Messages {
		frame, err := ring.Encode(n.self, e.Msg)
		if err != nil {
			n.log.Error("encode", "kind", e.Msg.Kind(), "err", err)
			continue
		}
		if err := n.send(context.Background(), e.To, frame); err != nil {
			n.m.sendErrors.Add(1)
			n.log.Debug("send", "to", e.To.ID.Short(), "kind", e.Msg.Kind(), "err", err)
			if !errors.Is(err, transport.ErrClosed) {
				n.core.Unreachable(time.Now(), e.To.ID)
			}
		}
	}
	for i := range out.Deliveries {
		n.onDelivery(&out.Deliveries[i])
	}
	for _, f := range out.Failures {
		if !f.Origin {
			continue
		}
		if req, ok := n.byMsg[f.ID]; ok {
			delete(n.byMsg, f.ID)
			n.complete(req, result{err: fmt.Errorf("%w: %s", ErrUndeliverable, f.Reason)})
		}
	}
	if g := n.core.LeafGeneration(); g != n.viewGen || n.view.Load() == nil || n.view.Load().Ready != n.core.Ready() {
		n.viewGen = g
		st := n.core.Status()
		n.view.Store(&View{Self: n.self, Left: st.Left, Right: st.Right, Ready: st.Ready, Gen: g})
	}
	if n.core.Ready() {
		n.readyOnce.Do(func() { close(n.readyCh) })
	}
	if n.cfg.OnOwnerChange != nil {
		oc := OwnerChange{Range: n.core.OwnedRange(), Ready: n.core.Ready()}
		oc.Sure = n.core.Sure()
		if oc != n.lastOwner {
			n.lastOwner = oc
			n.cfg.OnOwnerChange(oc)
		}
	}
	// Messages produced by the calls above (none today) would wait for the
	// next event; the timer covers every deadline the core has.
	d := time.Until(n.core.NextDeadline())
	if d < time.Millisecond {
		d = time.Millisecond
	}
	n.timer.Reset(d)
}

func (n *Node) onDelivery(d *ring.Delivery) {
	f, err := parseApp(d.Payload)
	if err != nil {
		n.m.badFrames.Add(1)
		n.log.Warn("bad routed payload", "src", d.Src.ID.Short(), "err", err)
		return
	}
	if f.kind == kindProto {
		n.protoDeliver(&ProtoMessage{Key: d.Key, From: d.Src, Hops: d.Hops}, f.data)
		return
	}
	m := &Message{Key: d.Key, From: d.Src, Hops: d.Hops, Payload: f.data, n: n, reqID: f.reqID}
	m.service = f.kind == kindSvcCall || f.kind == kindSvcOneWay
	if f.deadline != 0 {
		m.Deadline = time.UnixMilli(f.deadline)
		if time.Now().After(m.Deadline) {
			n.m.expired.Add(1)
			return // the caller has given up: do not start the work
		}
	}
	n.enqueue(m)
}

func (n *Node) enqueue(m *Message) {
	select {
	case n.deliver <- m:
	default:
		n.m.deliverDrops.Add(1)
		if m.service {
			n.respond(m)(service.Reply{V: service.Version, Err: service.Overloaded("node:deliver-queue", 10*time.Millisecond)})
			return
		}
		m.Fail("overloaded: the application at the owner is not keeping up")
	}
}

func (n *Node) deliverLoop() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case m := <-n.deliver:
			n.m.delivered.Add(1)
			if m.service {
				n.host.DispatchFrom(m.Payload, m.From, n.respond(m))
				continue
			}
			if n.cfg.App == nil {
				m.Fail(ErrNoApp.Error())
				continue
			}
			n.safeDeliver(m)
		}
	}
}

func (n *Node) safeDeliver(m *Message) {
	defer func() {
		if r := recover(); r != nil {
			n.log.Error("application panicked in Deliver", "panic", r)
			m.Fail(fmt.Sprintf("application panicked: %v", r))
		}
	}()
	n.cfg.App.Deliver(m)
}

func (n *Node) forwardUpcall(key id.ID, src transport.Peer, payload []byte, next id.ID) bool {
	f, err := parseApp(payload)
	if err != nil {
		return true
	}
	if f.kind == kindProto {
		return n.protoForward(key, src, f.data, next)
	}
	if n.cfg.App == nil {
		return true
	}
	return n.cfg.App.Forward(key, f.data, next)
}

func (n *Node) rememberMsg(msgID, reqID uint64) {
	const limit = 1 << 16
	if len(n.byMsgFIFO) >= limit {
		delete(n.byMsg, n.byMsgFIFO[0])
		n.byMsgFIFO = n.byMsgFIFO[1:]
	}
	n.byMsg[msgID] = reqID
	n.byMsgFIFO = append(n.byMsgFIFO, msgID)
}

func (n *Node) complete(req uint64, r result) {
	n.mu.Lock()
	ch := n.waiters[req]
	delete(n.waiters, req)
	n.mu.Unlock()
	if ch != nil {
		ch <- r
	}
}

func deadlineOf(ctx context.Context) int64 {
	if d, ok := ctx.Deadline(); ok {
		return d.UnixMilli()
	}
	return 0
}

// Route delivers payload at the owner of key, one way and best effort: the
// overlay retries around failed hops, but nothing tells the caller whether it
// arrived (use Request for that).
func (n *Node) Route(ctx context.Context, key id.ID, payload []byte) error {
	if len(payload) > n.cfg.MaxMessage {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(payload), n.cfg.MaxMessage)
	}
	frame := appFrame{kind: kindOneWay, deadline: deadlineOf(ctx), data: payload}.append(nil)
	return n.do(ctx, func() { n.core.Route(time.Now(), key, frame) })
}

// Request routes payload to the owner of key and waits for its answer. The
// context's deadline (or DefaultRequestTimeout if it has none) travels with
// the request.
func (n *Node) Request(ctx context.Context, key id.ID, payload []byte) ([]byte, error) {
	return n.exchange(ctx, &key, nil, kindRequest, payload)
}

// exchange sends one request, routed to key or straight to a peer, and
// waits for its answer.
func (n *Node) exchange(ctx context.Context, key *id.ID, to *transport.Peer, kind byte, payload []byte) ([]byte, error) {
	if len(payload) > n.cfg.MaxMessage {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(payload), n.cfg.MaxMessage)
	}
	if n.closed.Load() {
		return nil, ErrClosed
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	req := n.reqSeq.Add(1)
	ch := make(chan result, 1)
	n.mu.Lock()
	n.waiters[req] = ch
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.waiters, req)
		n.mu.Unlock()
	}()
	f := appFrame{kind: kind, reqID: req, deadline: deadlineOf(ctx), data: payload}
	var err error
	var where string
	if key != nil {
		where = "owner of " + key.Short()
		frame := f.append(nil)
		err = n.do(ctx, func() {
			msgID := n.core.Route(time.Now(), *key, frame)
			n.rememberMsg(msgID, req)
		})
	} else {
		where = "node " + to.ID.Short()
		if to.ID == n.self.ID {
			m := &Message{From: n.self, Payload: payload, Direct: true, n: n, reqID: req, service: kind == kindSvcCall}
			n.enqueue(m)
		} else {
			err = n.send(ctx, *to, f.direct())
		}
	}
	if err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r.data, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("node: request to %s: %w", where, ctx.Err())
	case <-n.done:
		return nil, ErrClosed
	}
}

// DefaultRequestTimeout applies to requests whose context has no deadline.
const DefaultRequestTimeout = 10 * time.Second

// Send delivers payload straight to a known node (its Deliver sees
// Message.Direct). Best effort, one way.
func (n *Node) Send(ctx context.Context, to transport.Peer, payload []byte) error {
	if n.closed.Load() {
		return ErrClosed
	}
	if len(payload) > n.cfg.MaxMessage {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(payload), n.cfg.MaxMessage)
	}
	if to.ID == n.self.ID {
		n.enqueue(&Message{From: n.self, Payload: payload, Direct: true, n: n})
		return nil
	}
	frame := appFrame{kind: kindOneWay, deadline: deadlineOf(ctx), data: payload}.direct()
	return n.send(ctx, to, frame)
}

// send hands a frame built for this send alone to the transport, without
// a copy where the transport can take it (transport.OwningSender).
func (n *Node) send(ctx context.Context, to transport.Peer, frame []byte) error {
	if o, ok := n.tr.(transport.OwningSender); ok {
		return o.SendOwned(ctx, to, frame)
	}
	return n.tr.Send(ctx, to, frame)
}

func (n *Node) reply(to transport.Peer, req uint64, kind byte, data []byte) {
	if n.closed.Load() {
		return
	}
	if to.ID == n.self.ID {
		r := result{data: data}
		if kind == kindError {
			r = result{err: &RemoteError{Reason: string(data)}}
		}
		n.complete(req, r)
		return
	}
	frame := appFrame{kind: kind, reqID: req, data: data}.direct()
	if err := n.send(context.Background(), to, frame); err != nil {
		n.m.sendErrors.Add(1)
		n.log.Debug("reply", "to", to.ID.Short(), "err", err)
	}
}

// Close leaves the ring gracefully (the neighbours take over at once), stops
// the node's goroutines and closes the transport.
func (n *Node) Close() error {
	var err error
	n.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = n.do(ctx, func() { n.core.Leave(time.Now()) })
		if f, ok := n.tr.(interface{ Flush(context.Context) error }); ok {
			_ = f.Flush(ctx)
		}
		cancel()
		n.closed.Store(true)
		close(n.stop)
		n.host.Close()
		n.wg.Wait()
		n.timer.Stop()
		err = n.tr.Close()
		n.mu.Lock()
		for req, ch := range n.waiters {
			delete(n.waiters, req)
			ch <- result{err: ErrClosed}
		}
		n.mu.Unlock()
	})
	return err
}

// receiver adapts the node to transport.Receiver. It decodes on the
// transport's goroutine and hands the result to the core goroutine.
type receiver struct{ n *Node }

func (r receiver) Receive(from transport.Peer, data []byte) {
	n := r.n
	n.m.framesIn.Add(1)
	if len(data) == 0 {
		n.m.badFrames.Add(1)
		return
	}
	switch data[0] {
	case ring.WireVersion:
		declared, msg, err := ring.Decode(data)
		if err != nil {
			n.m.badFrames.Add(1)
			n.log.Warn("bad ring frame", "peer", from.ID.Short(), "err", err)
			return
		}
		if declared.ID != from.ID {
			n.m.badFrames.Add(1)
			n.log.Warn("ring frame names a sender other than the authenticated peer", "peer", from.ID.Short(), "claimed", declared.ID.Short())
			return
		}
		if len(declared.Addrs) > 0 {
			from.Addrs = declared.Addrs
		}
		select {
		case n.inbox <- input{from: from, msg: msg}:
		default:
			n.m.inboxDrops.Add(1)
		}
	case chanDirect:
		f, err := parseApp(data[1:])
		if err != nil {
			n.m.badFrames.Add(1)
			n.log.Warn("bad direct frame", "peer", from.ID.Short(), "err", err)
			return
		}
		switch f.kind {
		case kindProto:
			n.protoDeliver(&ProtoMessage{From: from, Direct: true}, f.data)
		case kindResponse:
			n.complete(f.reqID, result{data: f.data})
		case kindError:
			n.complete(f.reqID, result{err: &RemoteError{Reason: string(f.data)}})
		default:
			m := &Message{From: from, Payload: f.data, Direct: true, n: n, reqID: f.reqID}
			m.service = f.kind == kindSvcCall || f.kind == kindSvcOneWay
			if f.deadline != 0 {
				m.Deadline = time.UnixMilli(f.deadline)
			}
			n.enqueue(m)
		}
	default:
		n.m.badFrames.Add(1)
		n.log.Warn("frame on unknown channel", "peer", from.ID.Short(), "first_byte", data[0])
	}
}

func (r receiver) Unreachable(to id.ID, err error) {
	select {
	case r.n.inbox <- input{from: transport.Peer{ID: to}, unreachable: true}:
	default:
		r.n.m.inboxDrops.Add(1)
	}
}

func randomUint64() uint64 {
	var b [8]byte
	if _, err := crand.Read(b[:]); err != nil {
		return uint64(time.Now().UnixNano())
	}
	return binary.BigEndian.Uint64(b[:])
}

// View is a snapshot of this node's leaf set: the nodes it knows nearest to
// it on each side, nearest first. In a ring smaller than the leaf set both
// sides list every other node.
type View struct {
	Self  transport.Peer
	Left  []transport.Peer // counter-clockwise
	Right []transport.Peer // clockwise
	Ready bool
	Gen   uint64 // changes whenever the leaf set does
}

// View returns the latest snapshot of the leaf set (cheap: no round trip to
// the core). Treat it as read-only.
func (n *Node) View() *View {
	if v := n.view.Load(); v != nil {
		return v
	}
	return &View{Self: n.self}
}
