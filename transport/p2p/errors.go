package p2p

import "errors"

// Errors returned by this package. They are matched with errors.Is; the
// returned errors carry the offending address or peer as context.
var (
	// ErrBadAddr is returned for an address that is not a usable multiaddr
	// (garbage, or nothing before /p2p/).
	ErrBadAddr = errors.New("p2p: bad address")
	// ErrNoPeerID is returned for an address without a trailing /p2p/<peer-id>.
	ErrNoPeerID = errors.New("p2p: address has no /p2p/<peer-id>")
	// ErrPeerMismatch is returned when addresses name different peers, or a
	// peer other than the node ID they are given for.
	ErrPeerMismatch = errors.New("p2p: addresses name a different peer")
	// ErrNoPublicKey is returned for a peer ID that does not embed its public
	// key (only small keys such as Ed25519 are embedded).
	ErrNoPublicKey = errors.New("p2p: peer ID does not embed a public key")
	// ErrSelf is returned by Send for a frame addressed to this node.
	ErrSelf = errors.New("p2p: cannot send to self")
	// ErrStarted is returned by a second call to Start.
	ErrStarted = errors.New("p2p: already started")
	// ErrQueueFull is passed to Receiver.Unreachable when frames were dropped
	// because a peer's outbound queue was full.
	ErrQueueFull = errors.New("p2p: outbound queue full")
	// ErrBadIdentity is returned when the identity key file cannot be used.
	ErrBadIdentity = errors.New("p2p: bad identity key")
)
