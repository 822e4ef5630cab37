package memnet

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
)

// Transport is a transport.Transport over a Network: one node's endpoint.
// It is meant for realtime mode, where Receiver methods run on timer
// goroutines; in discrete-event mode they run inside Step and RunUntil.
// Network.Crash and Network.Restart of the node apply to a started
// Transport: while the node is down its frames are neither sent nor
// received, and Restart(node, nil) brings it back with the same Receiver.
type Transport struct {
	n    *Network
	self id.ID

	mu      sync.Mutex
	r       transport.Receiver
	started bool
	closed  bool
	busy    sync.WaitGroup // Receiver calls in progress
}

var _ transport.Transport = (*Transport)(nil)

// frame is a []byte message sent by a Transport. It is copied at Send and
// again for a duplicate, so every receiver owns the slice it is handed.
type frame []byte

func (f frame) duplicate() any { return frame(bytes.Clone(f)) }

// Transport returns an adapter for node self. The node joins the network
// when Start is called; Close takes it down as a crash would.
func (n *Network) Transport(self id.ID) *Transport {
	return &Transport{n: n, self: self}
}

// Addr is the address memnet gives node: "mem/" and its 40 hex digits.
func Addr(node id.ID) string { return "mem/" + node.String() }

func peerOf(node id.ID) transport.Peer {
	return transport.Peer{ID: node, Addrs: []string{Addr(node)}}
}

// Self returns this node's ID and its one address, "mem/<hex ID>".
func (t *Transport) Self() transport.Peer { return peerOf(t.self) }

// Start attaches the node to the network, delivering frames to r. Only
// []byte messages are passed on; other values sent through the Network
// directly are ignored.
func (t *Transport) Start(r transport.Receiver) error {
	if r == nil {
		return fmt.Errorf("memnet: Start with a nil Receiver")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closed:
		return transport.ErrClosed
	case t.started:
		return ErrStarted
	}
	t.started, t.r = true, r
	t.n.Attach(t.self, t.handle)
	return nil
}

func (t *Transport) handle(from id.ID, msg any) {
	var data []byte
	switch m := msg.(type) {
	case frame:
		data = m
	case []byte:
		data = bytes.Clone(m) // the sender still holds it
	default:
		return
	}
	r := t.enter()
	if r == nil {
		return
	}
	defer t.busy.Done()
	r.Receive(peerOf(from), data)
}

// enter returns the receiver and registers a callback in progress, or nil
// once the transport is closed.
func (t *Transport) enter() transport.Receiver {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.busy.Add(1)
	return t.r
}

// Send copies data and sends it to to.ID; to.Addrs is not consulted. It
// never blocks, so ctx is unused. A frame to a node that is crashed or
// unknown is dropped and reported to Receiver.Unreachable with
// ErrUnreachable, asynchronously; frames blocked by a partition or a cut, or
// lost, vanish silently.
func (t *Transport) Send(ctx context.Context, to transport.Peer, data []byte) error {
	if len(data) > transport.DefaultMaxFrame {
		return fmt.Errorf("%w: %d bytes, limit %d", transport.ErrFrameTooLarge, len(data), transport.DefaultMaxFrame)
	}
	t.mu.Lock()
	closed, started := t.closed, t.started
	t.mu.Unlock()
	switch {
	case closed:
		return transport.ErrClosed
	case !started:
		return ErrNotStarted
	}
	if t.n.send(t.self, to.ID, frame(bytes.Clone(data))) == destDown {
		dest := to.ID
		t.n.After(0, func() {
			if r := t.enter(); r != nil {
				defer t.busy.Done()
				r.Unreachable(dest, fmt.Errorf("%w: %s", ErrUnreachable, dest.Short()))
			}
		})
	}
	return nil
}

// Close takes the node down (a crash: frames in flight to it are dropped),
// then waits for Receiver calls in progress to return. It must not be called
// from a Receiver method. Calling it again does nothing.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	started := t.started
	t.mu.Unlock()
	if started {
		t.n.Crash(t.self)
	}
	t.busy.Wait()
	return nil
}
