package resource

import (
	"fmt"
	"log/slog"
	"time"
)

// Config configures a Manager on one node.
type Config struct {
	// TTL is how long a lease lasts without renewal. Default 10s. Longer
	// survives longer store outages without losing the lease; shorter
	// frees the resources of a crashed holder sooner (after TTL +
	// DriftMargin). KeepAlive renews every TTL/3. Each lease write is
	// given at most TTL/2 (kv itself retries for up to its Retry.Overall,
	// 10s by default); a write cut short is resolved by reading the record
	// back. Keep TTL well above the store's write latency under faults.
	TTL time.Duration
	// DriftMargin is the largest difference between two nodes' clocks the
	// safety of leases relies on. Default 500ms. A node takes over an
	// expired lease only when its own clock is past the stored expiry plus
	// this margin, so with clocks that differ by less than DriftMargin two
	// valid leases never overlap. It must be below TTL. Larger is safer
	// against bad clocks and delays every takeover by as much.
	DriftMargin time.Duration
	// Holder names this node in the leases it takes: the node's ID in hex
	// (node.ID().String()). Required: a *kv.KV does not reveal its node.
	// Acquire's As(label) appends "/label". Letters, digits and . _ - : @,
	// at most 128 bytes.
	Holder string
	// Clock reads this node's wall clock. Default time.Now. Tests inject
	// skewed clocks here.
	Clock func() time.Time
	// Logger, nil to discard.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults; set Holder.
func DefaultConfig() Config {
	return Config{TTL: 10 * time.Second, DriftMargin: 500 * time.Millisecond}
}

// MaxPoolSize bounds the resources of one pool (its definition is one
// stored value).
const MaxPoolSize = 4096

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.TTL < 100*time.Millisecond:
		return fmt.Errorf("resource: TTL must be at least 100ms, got %v", c.TTL)
	case c.DriftMargin < 0:
		return fmt.Errorf("resource: DriftMargin must be >= 0, got %v", c.DriftMargin)
	case c.DriftMargin >= c.TTL:
		return fmt.Errorf("resource: DriftMargin (%v) must be below TTL (%v)", c.DriftMargin, c.TTL)
	case c.Holder == "":
		return fmt.Errorf("resource: Holder is required: set it to the node's ID, node.ID().String()")
	}
	if err := checkName("holder", c.Holder, maxName); err != nil {
		return err
	}
	return nil
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.TTL == 0 {
		c.TTL = d.TTL
	}
	if c.DriftMargin == 0 {
		c.DriftMargin = d.DriftMargin
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
}
