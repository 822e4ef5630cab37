package p2p

import (
	"fmt"
	"log/slog"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/shoal-p2p/shoal/transport"
)

// Defaults used by DefaultConfig and for zero fields of a Config.
const (
	DefaultQueueLen     = 1024
	DefaultDialTimeout  = 5 * time.Second
	DefaultWriteTimeout = 10 * time.Second
)

// DefaultListen are the listen addresses used when Config.Listen is empty:
// TCP and QUIC on an ephemeral port on every IPv4 interface.
var DefaultListen = []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"}

// Config configures a Transport. Zero fields take their defaults, so
// Config{} is a valid ephemeral node; DefaultConfig spells the defaults out.
type Config struct {
	// DataDir holds the node's identity key in DataDir/identity.key
	// (Ed25519, protobuf-marshalled as libp2p does, mode 0600; the directory
	// is created with mode 0700). Keeping the key keeps the node's ID, and so
	// its place on the ring, across restarts. "" (the default) means a fresh
	// key on every start.
	DataDir string
	// Listen are the multiaddrs to listen on, e.g. "/ip4/0.0.0.0/tcp/4001"
	// or "/ip4/0.0.0.0/udp/4001/quic-v1". Empty means DefaultListen (TCP and
	// QUIC on ephemeral ports on all IPv4 interfaces).
	Listen []string
	// MaxFrame is the largest frame in bytes this node sends or accepts.
	// Larger inbound frames reset the stream before anything is allocated.
	// Default transport.DefaultMaxFrame (1 MiB + 64 KiB). Peers must agree.
	MaxFrame int
	// QueueLen is the number of frames queued per peer while its stream is
	// being opened or is busy. When the queue is full further frames are
	// dropped and reported through Receiver.Unreachable; a longer queue
	// absorbs bigger bursts at the cost of memory and staleness. Default 1024.
	QueueLen int
	// DialTimeout bounds connecting to a peer and opening a stream. Frames
	// queued meanwhile wait; after it they are dropped and the peer is
	// reported unreachable. Default 5s.
	DialTimeout time.Duration
	// WriteTimeout bounds one batch of writes to a peer. A peer that stops
	// reading for longer has its stream reset and is reported unreachable,
	// so one stuck peer cannot hold frames forever. (The stream's deadline
	// is moved forward only once half of it is used, so a stall is cut
	// after between half of WriteTimeout and all of it.) Default 10s.
	WriteTimeout time.Duration
	// EnableNAT turns on UPnP/NAT-PMP port mapping, hole punching and
	// circuit relays, for nodes behind NAT on the internet. Off by default:
	// all three send traffic (multicast discovery, relay reservations) beyond
	// the peers the node is asked to talk to.
	EnableNAT bool
	// Logger receives the transport's logs with attribute subsys=p2p.
	// nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns the configuration New uses for zero fields: an
// ephemeral identity listening on TCP and QUIC on all IPv4 interfaces.
func DefaultConfig() Config {
	return Config{
		Listen:       append([]string(nil), DefaultListen...),
		MaxFrame:     transport.DefaultMaxFrame,
		QueueLen:     DefaultQueueLen,
		DialTimeout:  DefaultDialTimeout,
		WriteTimeout: DefaultWriteTimeout,
	}
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if len(c.Listen) == 0 {
		c.Listen = d.Listen
	}
	if c.MaxFrame == 0 {
		c.MaxFrame = d.MaxFrame
	}
	if c.QueueLen == 0 {
		c.QueueLen = d.QueueLen
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = d.DialTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	return c
}

// Validate reports the first invalid field. Zero values are valid: they mean
// the default.
func (c Config) Validate() error {
	if c.MaxFrame < 0 {
		return fmt.Errorf("p2p: MaxFrame must be > 0, got %d", c.MaxFrame)
	}
	if c.QueueLen < 0 {
		return fmt.Errorf("p2p: QueueLen must be > 0, got %d", c.QueueLen)
	}
	if c.DialTimeout < 0 {
		return fmt.Errorf("p2p: DialTimeout must be > 0, got %v", c.DialTimeout)
	}
	if c.WriteTimeout < 0 {
		return fmt.Errorf("p2p: WriteTimeout must be > 0, got %v", c.WriteTimeout)
	}
	for _, s := range c.Listen {
		if _, err := ma.NewMultiaddr(s); err != nil {
			return fmt.Errorf("p2p: Listen address %q: %v", s, err)
		}
	}
	return nil
}
