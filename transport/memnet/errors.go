package memnet

import "errors"

// Errors returned or reported by memnet.
var (
	// ErrUnreachable is reported through transport.Receiver.Unreachable when
	// a frame is sent to a node that is crashed or was never attached.
	ErrUnreachable = errors.New("memnet: peer is down or unknown")
	// ErrStarted is returned by a second call to Transport.Start.
	ErrStarted = errors.New("memnet: transport already started")
	// ErrNotStarted is returned by Transport.Send before Start.
	ErrNotStarted = errors.New("memnet: transport not started")
)
