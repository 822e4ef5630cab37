package saga

import (
	"fmt"
	"log/slog"
	"time"
)

// Config configures the saga runtime on one node. Zero fields take the
// defaults of DefaultConfig.
type Config struct {
	// StepAttempts is how many times a step's Do is tried before the saga
	// gives up and compensates. Default 5. More attempts ride out longer
	// outages of what the step calls, at the cost of a later compensation.
	StepAttempts int
	// Backoff is the pause before the second attempt of a Do or an Undo;
	// it doubles with each attempt (±20% jitter). Default 200ms.
	Backoff time.Duration
	// MaxBackoff caps the pause between attempts. Default 10s. Undo is
	// retried without limit (see UndoAttempts), every MaxBackoff at worst.
	MaxBackoff time.Duration
	// StepTimeout bounds one attempt of a Do or an Undo (its context's
	// deadline). Default 30s.
	StepTimeout time.Duration
	// UndoAttempts is how many times an Undo is tried before the run is
	// marked failed and left for a person. Default 0: never give up, since
	// a run left half undone is worse than a late one.
	UndoAttempts int
	// ScanInterval is how often a node looks through its replica for runs
	// it owns that nobody runs (their runner crashed or lost its lease).
	// Default 2s. Shorter resumes sooner after a crash and costs one local
	// listing plus an ownership check per run per scan.
	ScanInterval time.Duration
	// RunnerLease is how long a runner's claim on a run lasts without
	// renewal; it renews every RunnerLease/3 while it works. Another node
	// takes over a run only after the lease and a margin of RunnerLease/2
	// (for clock skew) have passed. Default 10s. Shorter resumes sooner
	// after a crash; longer tolerates longer pauses of the runner.
	RunnerLease time.Duration
	// Logger, nil to discard. Logs carry subsys=saga.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		StepAttempts: 5,
		Backoff:      200 * time.Millisecond,
		MaxBackoff:   10 * time.Second,
		StepTimeout:  30 * time.Second,
		ScanInterval: 2 * time.Second,
		RunnerLease:  10 * time.Second,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.StepAttempts == 0 {
		c.StepAttempts = d.StepAttempts
	}
	if c.Backoff == 0 {
		c.Backoff = d.Backoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = d.MaxBackoff
	}
	if c.StepTimeout == 0 {
		c.StepTimeout = d.StepTimeout
	}
	if c.ScanInterval == 0 {
		c.ScanInterval = d.ScanInterval
	}
	if c.RunnerLease == 0 {
		c.RunnerLease = d.RunnerLease
	}
	return c
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.StepAttempts < 1:
		return fmt.Errorf("saga: StepAttempts must be >= 1, got %d", c.StepAttempts)
	case c.Backoff <= 0:
		return fmt.Errorf("saga: Backoff must be > 0, got %v", c.Backoff)
	case c.MaxBackoff < c.Backoff:
		return fmt.Errorf("saga: MaxBackoff (%v) must be >= Backoff (%v)", c.MaxBackoff, c.Backoff)
	case c.StepTimeout <= 0:
		return fmt.Errorf("saga: StepTimeout must be > 0, got %v", c.StepTimeout)
	case c.UndoAttempts < 0:
		return fmt.Errorf("saga: UndoAttempts must be >= 0 (0: unlimited), got %d", c.UndoAttempts)
	case c.ScanInterval <= 0:
		return fmt.Errorf("saga: ScanInterval must be > 0, got %v", c.ScanInterval)
	case c.RunnerLease < 30*time.Millisecond:
		return fmt.Errorf("saga: RunnerLease must be >= 30ms, got %v", c.RunnerLease)
	}
	return nil
}
