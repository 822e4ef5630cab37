// Package transport defines how Shoal nodes exchange frames: one small
// interface with two implementations, transport/p2p (go-libp2p) and
// transport/memnet (an in-memory simulated network).
//
// A transport carries opaque frames of bytes between peers. It authenticates
// the sender: the ID passed to a Receiver always comes from the connection
// (for libp2p, from the public key in the encrypted handshake), never from the
// frame's contents.
package transport

import (
	"context"
	"errors"

	"github.com/shoal-p2p/shoal/id"
)

// Peer names a node and where to reach it. Addrs are transport-specific:
// full multiaddrs ending in /p2p/<peer-id> for transport/p2p, "mem/<hex ID>" for memnet.
type Peer struct {
	ID    id.ID    `json:"id"`
	Addrs []string `json:"addrs,omitempty"`
}

// Receiver is what a transport delivers to. Both methods may be called from
// any goroutine, concurrently; implementations must not block for long.
type Receiver interface {
	// Receive is called once per frame from the authenticated peer from.
	// from.Addrs may be empty. data is owned by the receiver.
	Receive(from Peer, data []byte)
	// Unreachable reports that frames queued for peer could not be sent
	// (dial failure, reset stream, queue overflow). Best effort.
	Unreachable(to id.ID, err error)
}

// Transport sends frames to peers. Implementations are safe for concurrent use.
type Transport interface {
	// Self is this node's identity and its full, dialable addresses.
	Self() Peer
	// Start begins delivering received frames to r. It is called once.
	Start(r Receiver) error
	// Send queues one frame for delivery to the peer and returns without
	// waiting for the network. Delivery is best effort: a frame may be lost;
	// failures are reported through Receiver.Unreachable. It returns an error
	// only for invalid arguments (frame too large, no address) or after Close.
	Send(ctx context.Context, to Peer, data []byte) error
	// Close stops the transport, closes connections, and waits for the
	// goroutines it started.
	Close() error
}

// OwningSender is implemented by transports that can take a frame without
// copying it. SendOwned is Send, except that data belongs to the transport
// from then on: the caller must not touch it again. Send copies data (its
// caller may reuse the buffer at once); a caller that built the frame just
// for this send saves that copy.
type OwningSender interface {
	SendOwned(ctx context.Context, to Peer, data []byte) error
}

// Errors shared by transports.
var (
	// ErrClosed is returned by Send after Close.
	ErrClosed = errors.New("transport: closed")
	// ErrFrameTooLarge is returned for a frame over the size limit.
	ErrFrameTooLarge = errors.New("transport: frame too large")
	// ErrNoAddress is returned when a peer has no usable address.
	ErrNoAddress = errors.New("transport: peer has no usable address")
)
