package node

import "errors"

// Errors returned by the node.
var (
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("node: closed")
	// ErrUndeliverable means the overlay gave up routing a message this node
	// originated (no next hop answered, or no owner became certain in time).
	ErrUndeliverable = errors.New("node: message could not be delivered")
	// ErrTooLarge is returned for a payload over Config.MaxMessage.
	ErrTooLarge = errors.New("node: message too large")
	// ErrJoin means Start could not join the ring through its bootstrap nodes.
	ErrJoin = errors.New("node: could not join the ring")
	// ErrNoApp is the answer to a request at a node with no application.
	ErrNoApp = errors.New("node: no application registered at the owner")
)

// RemoteError is an error returned by the application at the remote node.
type RemoteError struct {
	Reason string
}

func (e *RemoteError) Error() string { return "node: remote: " + e.Reason }
