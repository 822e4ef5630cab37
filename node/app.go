package node

import (
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/transport"
)

// Application receives the overlay's upcalls.
type Application interface {
	// Deliver is called at the owner of m.Key for each routed message, one
	// at a time, on the node's delivery goroutine. For a request, answer
	// with m.Reply or m.Fail (from any goroutine, at most once).
	Deliver(m *Message)
	// Forward is called at each node that passes a routed message on, with
	// the next hop; returning false consumes the message. It runs on the
	// node's core goroutine and must be quick.
	Forward(key id.ID, payload []byte, next id.ID) bool
}

// AppFunc adapts a function to Application (Forward always passes messages on).
type AppFunc func(m *Message)

// Deliver calls f.
func (f AppFunc) Deliver(m *Message) { f(m) }

// Forward passes every message on.
func (AppFunc) Forward(id.ID, []byte, id.ID) bool { return true }

// Message is a routed or direct message handed to the application.
type Message struct {
	Key      id.ID          // the key it was routed to (zero for direct sends)
	From     transport.Peer // the node that originated it
	Hops     int            // overlay hops it took
	Payload  []byte
	Deadline time.Time // zero if the sender set none
	Direct   bool      // sent to this node by Send, not routed

	n       *Node
	reqID   uint64 // non-zero for requests
	done    bool
	service bool // a service envelope, for the service host
}

// IsRequest reports whether the sender waits for an answer.
func (m *Message) IsRequest() bool { return m.reqID != 0 }

// Reply answers a request. Later calls, and calls on one-way messages, do nothing.
func (m *Message) Reply(payload []byte) {
	if m.reqID == 0 || m.done {
		return
	}
	m.done = true
	m.n.reply(m.From, m.reqID, kindResponse, payload)
}

// Fail answers a request with an error text.
func (m *Message) Fail(reason string) {
	if m.reqID == 0 || m.done {
		return
	}
	m.done = true
	m.n.reply(m.From, m.reqID, kindError, []byte(reason))
}

// OwnerChange reports the range this node owns after a change.
type OwnerChange struct {
	Range ring.Range // the arc of IDs this node is closest to
	Sure  bool       // it holds fresh leases from both neighbours
	Ready bool
}
