package memnet

import (
	"fmt"
	"time"
)

// defaultStart is the virtual epoch used when Config.Start is zero.
var defaultStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Config describes a simulated network. The zero Config is valid: seed 0,
// zero latency, no loss, no duplication, discrete-event mode, and a clock
// that starts at 2026-01-01 00:00:00 UTC. DefaultConfig adds a realistic
// latency range.
type Config struct {
	// Seed drives every random choice the network makes (loss, duplication,
	// latency, CutRandomPairs) and seeds Rand. The same seed and the same
	// sequence of calls give the same run. Default 0.
	Seed int64

	// MinLatency and MaxLatency bound the one-way latency of each message,
	// drawn uniformly from [MinLatency, MaxLatency] when it is sent. When
	// they differ, messages between the same two nodes can overtake each
	// other (reordering); when they are equal, each link is FIFO. Both zero
	// (the zero Config) delivers every message at the instant it was sent,
	// though never before Send returns. DefaultConfig uses 1ms and 10ms.
	MinLatency, MaxLatency time.Duration

	// Loss is the probability, in [0,1), that a message is dropped. Default 0.
	Loss float64

	// Duplicate is the probability, in [0,1), that a message that was not
	// dropped is delivered twice; the copy draws its own latency, so it may
	// arrive first. Default 0.
	Duplicate float64

	// Start is the virtual time at which the clock starts in discrete-event
	// mode. Zero means 2026-01-01 00:00:00 UTC. Ignored in realtime mode,
	// where the clock is the time package's (faked inside a synctest bubble).
	Start time.Time

	// Realtime selects realtime mode: deliveries are scheduled with
	// time.AfterFunc and handlers run on timer goroutines. Default false
	// (discrete-event mode). See the package documentation.
	Realtime bool
}

// DefaultConfig is the zero Config with a 1ms–10ms one-way latency.
func DefaultConfig() Config {
	return Config{MinLatency: time.Millisecond, MaxLatency: 10 * time.Millisecond}
}

// Validate reports the first invalid field, if any.
func (c Config) Validate() error {
	if err := checkLatency(c.MinLatency, c.MaxLatency); err != nil {
		return err
	}
	if err := checkProb("Loss", c.Loss); err != nil {
		return err
	}
	return checkProb("Duplicate", c.Duplicate)
}

func checkLatency(lo, hi time.Duration) error {
	if lo < 0 {
		return fmt.Errorf("memnet: MinLatency must not be negative, got %v", lo)
	}
	if hi < lo {
		return fmt.Errorf("memnet: MaxLatency must be at least MinLatency (%v), got %v", lo, hi)
	}
	return nil
}

func checkProb(name string, p float64) error {
	if !(p >= 0 && p < 1) { // also rejects NaN
		return fmt.Errorf("memnet: %s must be in [0,1), got %v", name, p)
	}
	return nil
}
