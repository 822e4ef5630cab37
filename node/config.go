package node

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/transport"
)

// Config configures a node.
type Config struct {
	// Transport carries the node's frames. Required. The node takes
	// ownership: Close closes it.
	Transport transport.Transport
	// Bootstrap lists nodes to join through, tried in order. Empty starts a
	// new ring.
	Bootstrap []transport.Peer
	// Ring tunes the overlay core. Default ring.DefaultConfig().
	Ring ring.Config
	// Seed seeds the core's random choices. Default 0 means a seed drawn from
	// the node's ID, so nodes differ but a given node replays.
	Seed int64
	// InboxSize bounds frames waiting for the core; beyond it frames are
	// dropped and counted (the overlay recovers from loss). Default 8192.
	InboxSize int
	// DeliverQueue bounds deliveries waiting for the application. Default 8192.
	DeliverQueue int
	// JoinTimeout bounds how long Start waits for the join to complete.
	// Default 30s.
	JoinTimeout time.Duration
	// MaxMessage is the largest message this node sends or accepts, in
	// bytes. Default 4 MiB. Services have their own, lower limit on requests
	// (1 MiB by default, or MaxMessage if lower; see service.Service.MaxRequest).
	MaxMessage int
	// ServiceGrace is how long after the start a request for a service
	// this node does not have is answered "unavailable" (retried) rather
	// than "unknown service", unless ServicesRegistered was called first.
	// Default service.DefaultStartGrace (10s); negative: none.
	ServiceGrace time.Duration
	// Logger receives the node's logs (attribute subsys=node). Nil discards.
	Logger *slog.Logger
	// App receives routed messages. Nil drops them (requests get an error).
	App Application
	// OnOwnerChange, if set, is called on the node's goroutine whenever the
	// range this node owns, or its certainty about it, changes. It must not
	// block.
	OnOwnerChange func(OwnerChange)
}

// DefaultConfig returns a configuration for a LAN ring; set Transport.
func DefaultConfig() Config {
	return Config{
		Ring:         ring.DefaultConfig(),
		InboxSize:    8192,
		DeliverQueue: 8192,
		JoinTimeout:  30 * time.Second,
		MaxMessage:   4 << 20,
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if c.Transport == nil {
		return fmt.Errorf("node: Transport is required")
	}
	if err := c.Ring.Validate(); err != nil {
		return err
	}
	switch {
	case c.InboxSize < 1:
		return fmt.Errorf("node: InboxSize must be >= 1, got %d", c.InboxSize)
	case c.DeliverQueue < 1:
		return fmt.Errorf("node: DeliverQueue must be >= 1, got %d", c.DeliverQueue)
	case c.JoinTimeout <= 0:
		return fmt.Errorf("node: JoinTimeout must be > 0, got %v", c.JoinTimeout)
	case c.MaxMessage < 1 || c.MaxMessage > transport.DefaultMaxFrame-32<<10:
		return fmt.Errorf("node: MaxMessage must be in [1, %d], got %d", transport.DefaultMaxFrame-32<<10, c.MaxMessage)
	}
	return nil
}
