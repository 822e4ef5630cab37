package ring

import (
	"fmt"
	"time"
)

// Config tunes the overlay core. Every duration is in virtual or real time,
// whichever clock the runtime feeds the core.
type Config struct {
	// LeafSetSize is the number of leaf-set members, half on each side.
	// Default 16 (Pastry's l). Larger sets survive more simultaneous failures
	// but gossip more bytes. Must be even and at least 2.
	LeafSetSize int
	// HeartbeatInterval is how often a node sends a keep-alive (carrying its
	// leaf set) to each immediate neighbour. Default 5s: two messages per
	// interval, 0.4 messages per node per second. Shorter detects failures
	// sooner and costs proportionally more traffic.
	HeartbeatInterval time.Duration
	// FailureTimeout is how long an immediate neighbour may stay silent before
	// it is suspected and probed. Default 11s (two heartbeats plus margin). It
	// is also the keep-alive lease: a node is sure of its range only while it
	// has heard from both immediate neighbours within this time.
	FailureTimeout time.Duration
	// ProbeTimeout bounds a direct or indirect probe of a suspect before it is
	// declared dead. Default 1s, which suits a LAN; raise it on a WAN.
	ProbeTimeout time.Duration
	// IndirectProbes is how many other leaf-set members are asked to probe a
	// suspect that does not answer directly (SWIM's k). Default 3. This is
	// what keeps non-transitive links from looking like failures.
	IndirectProbes int
	// HopTimeout is how long a forwarded message may wait for the next hop's
	// acknowledgement before it is sent around that hop. Default 500ms.
	HopTimeout time.Duration
	// HopAttempts is how many next hops are tried for one message at one node
	// before it gives up on the message. Default 4.
	HopAttempts int
	// MaxHops drops a message that has been forwarded this many times (loop
	// protection). Default 32; O(log16 N) hops are normal.
	MaxHops int
	// HoldTimeout bounds how long a node holds a message while it is not sure
	// it owns the key (joining, or a neighbour's lease has lapsed). Default 30s.
	HoldTimeout time.Duration
	// MaxHeld bounds the number of held messages; beyond it the oldest is
	// dropped and reported. Default 10000.
	MaxHeld int
	// JoinTimeout is how long a join waits for a reply before it tries the
	// next bootstrap node. Default 5s.
	JoinTimeout time.Duration
	// RowExchangeInterval is how often a node asks one routing-table entry for
	// a row of its table, repairing the table and checking the entry is alive.
	// Default 60s (0.03 messages per node per second).
	RowExchangeInterval time.Duration
	// EvictAfter removes a leaf-set member that neither this node nor its
	// neighbours have heard from for this long. Default 60s. It is a backstop
	// behind failure notices; it must exceed the time gossip needs to cross
	// half the leaf set (LeafSetSize/2 × HeartbeatInterval).
	EvictAfter time.Duration
	// RejoinInterval is how often a node tries one remembered node that it
	// believes dead (a past neighbour or a bootstrap node). If that node
	// answers, the two rings merge: this heals partitions. Default 30s.
	RejoinInterval time.Duration
	// DeadMemory is how long dead nodes are remembered for rejoin attempts and
	// how long their tombstones keep stale gossip from resurrecting them.
	// Default 10 minutes.
	DeadMemory time.Duration
	// MaxRemembered bounds the set of remembered dead nodes. Default 64.
	MaxRemembered int
}

// DefaultConfig returns settings for a LAN ring.
func DefaultConfig() Config {
	return Config{
		LeafSetSize:         16,
		HeartbeatInterval:   5 * time.Second,
		FailureTimeout:      11 * time.Second,
		ProbeTimeout:        time.Second,
		IndirectProbes:      3,
		HopTimeout:          500 * time.Millisecond,
		HopAttempts:         4,
		MaxHops:             32,
		HoldTimeout:         30 * time.Second,
		MaxHeld:             10000,
		JoinTimeout:         5 * time.Second,
		RowExchangeInterval: 60 * time.Second,
		EvictAfter:          60 * time.Second,
		RejoinInterval:      30 * time.Second,
		DeadMemory:          10 * time.Minute,
		MaxRemembered:       64,
	}
}

// LocalConfig is for rings inside one machine or one test: failures are
// detected in about a second. It sends about four messages per node per second.
func LocalConfig() Config {
	c := DefaultConfig()
	c.HeartbeatInterval = 500 * time.Millisecond
	c.FailureTimeout = 1200 * time.Millisecond
	c.ProbeTimeout = 300 * time.Millisecond
	c.HopTimeout = 200 * time.Millisecond
	c.JoinTimeout = 2 * time.Second
	c.RowExchangeInterval = 10 * time.Second
	c.EvictAfter = 8 * time.Second
	c.RejoinInterval = 3 * time.Second
	return c
}

// WANConfig is for rings spread over the internet: slower probes tolerate
// long round trips.
func WANConfig() Config {
	c := DefaultConfig()
	c.ProbeTimeout = 3 * time.Second
	c.HopTimeout = 2 * time.Second
	c.FailureTimeout = 20 * time.Second
	c.HeartbeatInterval = 8 * time.Second
	c.EvictAfter = 120 * time.Second
	return c
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.LeafSetSize < 2 || c.LeafSetSize%2 != 0:
		return fmt.Errorf("ring: LeafSetSize must be even and at least 2, got %d", c.LeafSetSize)
	case c.HeartbeatInterval <= 0:
		return fmt.Errorf("ring: HeartbeatInterval must be > 0, got %v", c.HeartbeatInterval)
	case c.FailureTimeout <= c.HeartbeatInterval:
		return fmt.Errorf("ring: FailureTimeout (%v) must exceed HeartbeatInterval (%v)", c.FailureTimeout, c.HeartbeatInterval)
	case c.ProbeTimeout <= 0:
		return fmt.Errorf("ring: ProbeTimeout must be > 0, got %v", c.ProbeTimeout)
	case c.IndirectProbes < 0:
		return fmt.Errorf("ring: IndirectProbes must be >= 0, got %d", c.IndirectProbes)
	case c.HopTimeout <= 0:
		return fmt.Errorf("ring: HopTimeout must be > 0, got %v", c.HopTimeout)
	case c.HopAttempts < 1:
		return fmt.Errorf("ring: HopAttempts must be >= 1, got %d", c.HopAttempts)
	case c.MaxHops < 1:
		return fmt.Errorf("ring: MaxHops must be >= 1, got %d", c.MaxHops)
	case c.HoldTimeout <= 0:
		return fmt.Errorf("ring: HoldTimeout must be > 0, got %v", c.HoldTimeout)
	case c.MaxHeld < 1:
		return fmt.Errorf("ring: MaxHeld must be >= 1, got %d", c.MaxHeld)
	case c.JoinTimeout <= 0:
		return fmt.Errorf("ring: JoinTimeout must be > 0, got %v", c.JoinTimeout)
	case c.RowExchangeInterval <= 0:
		return fmt.Errorf("ring: RowExchangeInterval must be > 0, got %v", c.RowExchangeInterval)
	case c.EvictAfter < time.Duration(c.LeafSetSize/2)*c.HeartbeatInterval:
		return fmt.Errorf("ring: EvictAfter (%v) must be at least LeafSetSize/2 × HeartbeatInterval (%v)", c.EvictAfter, time.Duration(c.LeafSetSize/2)*c.HeartbeatInterval)
	case c.RejoinInterval <= 0:
		return fmt.Errorf("ring: RejoinInterval must be > 0, got %v", c.RejoinInterval)
	case c.DeadMemory <= 0:
		return fmt.Errorf("ring: DeadMemory must be > 0, got %v", c.DeadMemory)
	case c.MaxRemembered < 0:
		return fmt.Errorf("ring: MaxRemembered must be >= 0, got %d", c.MaxRemembered)
	}
	return nil
}
