package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
)

// Protocol is a subsystem built on routing that must see its routed
// messages at every hop, not only at the owner: Scribe's topic trees form
// where subscriptions pass. Register one with RegisterProtocol and send with
// RouteProto and SendProto.
type Protocol interface {
	// Forward is called at each node that passes one of the protocol's routed
	// messages on, with the next hop; returning false consumes it. It runs on
	// the node's core goroutine: it must be quick and must not call the node
	// synchronously (hand work to a goroutine of the protocol's own).
	Forward(m *ProtoMessage, next id.ID) bool
	// Deliver receives the protocol's routed messages at the key's owner, and
	// messages sent straight to this node, on the node's delivery goroutine.
	// It must not block.
	Deliver(m *ProtoMessage)
}

// ProtoMessage is a protocol message as a Protocol sees it.
type ProtoMessage struct {
	Key     id.ID          // the key it is routed to (zero for direct messages)
	From    transport.Peer // routed: the node that sent it into the ring; direct: the sender
	Hops    int            // overlay hops so far
	Direct  bool           // sent with SendProto rather than routed
	Payload []byte
}

type protoRegistry struct {
	mu    sync.RWMutex
	procs map[string]Protocol
}

// RegisterProtocol adds a protocol under a name (1 to 64 bytes). Register
// before traffic arrives: messages for an unregistered name are dropped.
func (n *Node) RegisterProtocol(name string, p Protocol) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("node: protocol name must be 1 to 64 bytes, got %q", name)
	}
	n.protos.mu.Lock()
	defer n.protos.mu.Unlock()
	if n.protos.procs == nil {
		n.protos.procs = make(map[string]Protocol)
	}
	if _, dup := n.protos.procs[name]; dup {
		return fmt.Errorf("node: protocol %q is already registered", name)
	}
	n.protos.procs[name] = p
	return nil
}

func protoFrame(name string, payload []byte) []byte {
	b := make([]byte, 0, 1+len(name)+len(payload))
	b = append(b, byte(len(name)))
	b = append(b, name...)
	return append(b, payload...)
}

func (n *Node) splitProto(data []byte) (Protocol, []byte, bool) {
	if len(data) < 1 || len(data) < 1+int(data[0]) || data[0] == 0 {
		n.m.badFrames.Add(1)
		return nil, nil, false
	}
	name := string(data[1 : 1+int(data[0])])
	n.protos.mu.RLock()
	p := n.protos.procs[name]
	n.protos.mu.RUnlock()
	if p == nil {
		n.log.Debug("message for an unknown protocol", "protocol", name)
		return nil, nil, false
	}
	return p, data[1+int(data[0]):], true
}

func (n *Node) protoForward(key id.ID, src transport.Peer, data []byte, next id.ID) bool {
	p, payload, ok := n.splitProto(data)
	if !ok {
		return true
	}
	return p.Forward(&ProtoMessage{Key: key, From: src, Payload: payload}, next)
}

func (n *Node) protoDeliver(m *ProtoMessage, data []byte) {
	p, payload, ok := n.splitProto(data)
	if !ok {
		return
	}
	m.Payload = payload
	p.Deliver(m)
}

// RouteProto routes a protocol message towards the owner of key; the
// protocol's Forward sees it at every hop and its Deliver at the owner.
func (n *Node) RouteProto(ctx context.Context, name string, key id.ID, payload []byte) error {
	if len(payload) > n.cfg.MaxMessage {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(payload), n.cfg.MaxMessage)
	}
	frame := appFrame{kind: kindProto, deadline: deadlineOf(ctx), data: protoFrame(name, payload)}.append(nil)
	return n.do(ctx, func() { n.core.Route(time.Now(), key, frame) })
}

// SendProto sends a protocol message straight to a known node.
func (n *Node) SendProto(ctx context.Context, name string, to transport.Peer, payload []byte) error {
	if n.closed.Load() {
		return ErrClosed
	}
	if len(payload) > n.cfg.MaxMessage {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(payload), n.cfg.MaxMessage)
	}
	if to.ID == n.self.ID {
		n.protoDeliver(&ProtoMessage{From: n.self, Direct: true}, protoFrame(name, payload))
		return nil
	}
	frame := appFrame{kind: kindProto, deadline: deadlineOf(ctx), data: protoFrame(name, payload)}.direct()
	return n.send(ctx, to, frame)
}
