package taskq

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/shoal-p2p/shoal/service"
)

// Config configures the task queues on one node.
type Config struct {
	// MaxPayload is the largest task payload in bytes. Default 256 KiB; at
	// most 640 KiB, so a task record fits in one kv value (1 MiB) with room
	// for its JSON encoding. The queue's owner enforces its own limit.
	MaxPayload int
	// Logger, nil to discard.
	Logger *slog.Logger
	// Retry is the policy for calls to a queue's owner (enqueue, complete,
	// extend, …). Default service.DefaultRetryPolicy(). A worker's long
	// poll uses it with PerAttempt raised by the poll's wait.
	Retry service.RetryPolicy
	// PollWait is how long the owner holds a worker's lease request when no
	// task is ready before answering "nothing". Default 3s; the longer, the
	// fewer idle requests, the later a worker notices its owner changed.
	PollWait time.Duration
	// Tick is the owner's timer resolution: leases expire and delayed tasks
	// become ready at most this late. Default 100ms.
	Tick time.Duration
	// Reconcile is how often an owner re-checks that it owns each queue it
	// serves and merges its local replica into the queue's index (tasks
	// written while another node owned the queue). Default 5s; a change of
	// the node's leaf set triggers it within a second.
	Reconcile time.Duration
}

// MaxPayloadLimit is the largest allowed Config.MaxPayload.
const MaxPayloadLimit = 640 << 10

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{MaxPayload: 256 << 10, Retry: service.DefaultRetryPolicy(), PollWait: 3 * time.Second, Tick: 100 * time.Millisecond, Reconcile: 5 * time.Second}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxPayload == 0 {
		c.MaxPayload = d.MaxPayload
	}
	if c.Retry == (service.RetryPolicy{}) {
		c.Retry = d.Retry
	}
	if c.PollWait == 0 {
		c.PollWait = d.PollWait
	}
	if c.Tick == 0 {
		c.Tick = d.Tick
	}
	if c.Reconcile == 0 {
		c.Reconcile = d.Reconcile
	}
	return c
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.MaxPayload < 1 || c.MaxPayload > MaxPayloadLimit:
		return fmt.Errorf("taskq: MaxPayload must be in [1, %d], got %d", MaxPayloadLimit, c.MaxPayload)
	case c.PollWait <= 0:
		return fmt.Errorf("taskq: PollWait must be > 0, got %v", c.PollWait)
	case c.Tick <= 0:
		return fmt.Errorf("taskq: Tick must be > 0, got %v", c.Tick)
	case c.Reconcile < c.Tick:
		return fmt.Errorf("taskq: Reconcile must be >= Tick (%v), got %v", c.Tick, c.Reconcile)
	}
	return c.Retry.Validate()
}

// QueueConfig is one queue's behaviour, stored with the queue. Zero fields
// take the defaults.
type QueueConfig struct {
	// Visibility is how long a task stays leased to a worker without news
	// from it; a live worker extends its lease every Visibility/3. Default
	// 30s: shorter notices a dead worker sooner, costs more extensions.
	Visibility time.Duration
	// MaxAttempts is how many deliveries a task gets before it moves to the
	// dead-letter queue. Default 5.
	MaxAttempts int
	// Backoff is the pause before the second delivery after a failure or a
	// timeout; it doubles for each further one (±20% jitter) up to
	// MaxBackoff. Defaults 1s and 1m.
	Backoff, MaxBackoff time.Duration
	// Retention is how long a completed task is kept: the window in which an
	// enqueue with the same idempotency key returns the first task's ID
	// instead of adding another. Default 24h.
	Retention time.Duration
}

// Limits of a QueueConfig.
const (
	MinVisibility  = 10 * time.Millisecond
	MaxMaxAttempts = 1000
)

// DefaultQueueConfig returns a queue's defaults.
func DefaultQueueConfig() QueueConfig {
	return QueueConfig{Visibility: 30 * time.Second, MaxAttempts: 5, Backoff: time.Second, MaxBackoff: time.Minute, Retention: 24 * time.Hour}
}

func (c QueueConfig) withDefaults() QueueConfig {
	d := DefaultQueueConfig()
	if c.Visibility == 0 {
		c.Visibility = d.Visibility
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = d.MaxAttempts
	}
	if c.Backoff == 0 {
		c.Backoff = d.Backoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = max(d.MaxBackoff, c.Backoff)
	}
	if c.Retention == 0 {
		c.Retention = d.Retention
	}
	return c
}

// Validate reports the first field out of range (after defaults).
func (c QueueConfig) Validate() error {
	switch {
	case c.Visibility < MinVisibility:
		return fmt.Errorf("%w: Visibility must be >= %v, got %v", ErrBadConfig, MinVisibility, c.Visibility)
	case c.MaxAttempts < 1 || c.MaxAttempts > MaxMaxAttempts:
		return fmt.Errorf("%w: MaxAttempts must be in [1, %d], got %d", ErrBadConfig, MaxMaxAttempts, c.MaxAttempts)
	case c.Backoff < 0 || c.MaxBackoff < c.Backoff:
		return fmt.Errorf("%w: need 0 <= Backoff <= MaxBackoff, got %v and %v", ErrBadConfig, c.Backoff, c.MaxBackoff)
	case c.Retention < 0:
		return fmt.Errorf("%w: Retention must be >= 0, got %v", ErrBadConfig, c.Retention)
	}
	return nil
}

// backoff is the pause after the given (1-based) failed delivery, before jitter.
func (c QueueConfig) backoff(attempt int) time.Duration {
	d := c.Backoff
	for i := 1; i < attempt && d < c.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, c.MaxBackoff)
}

// wireConfig is QueueConfig as stored and sent: milliseconds.
type wireConfig struct {
	VisibilityMs int64 `json:"visibility_ms"`
	MaxAttempts  int   `json:"max_attempts"`
	BackoffMs    int64 `json:"backoff_ms"`
	MaxBackoffMs int64 `json:"max_backoff_ms"`
	RetentionMs  int64 `json:"retention_ms"`
}

func toWire(c QueueConfig) wireConfig {
	return wireConfig{VisibilityMs: c.Visibility.Milliseconds(), MaxAttempts: c.MaxAttempts, BackoffMs: c.Backoff.Milliseconds(), MaxBackoffMs: c.MaxBackoff.Milliseconds(), RetentionMs: c.Retention.Milliseconds()}
}

func (w wireConfig) config() QueueConfig {
	ms := func(v int64) time.Duration { return time.Duration(v) * time.Millisecond }
	return QueueConfig{Visibility: ms(w.VisibilityMs), MaxAttempts: w.MaxAttempts, Backoff: ms(w.BackoffMs), MaxBackoff: ms(w.MaxBackoffMs), Retention: ms(w.RetentionMs)}
}

// Name limits.
const (
	MaxQueueName      = 128
	MaxIdempotencyKey = 256
)

// checkName accepts 1 to MaxQueueName bytes of letters, digits and ._-:
// (no braces or slashes: the name is part of the queue's kv hash tag).
func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: queue name is empty", ErrBadName)
	}
	if len(name) > MaxQueueName {
		return fmt.Errorf("%w: queue name is %d bytes, limit %d", ErrBadName, len(name), MaxQueueName)
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '.' || b == '_' || b == '-' || b == ':') {
			return fmt.Errorf("%w: queue name %q has %q at byte %d; use letters, digits and . _ - :", ErrBadName, name, b, i)
		}
	}
	return nil
}

func checkIdemKey(k string) error {
	if len(k) > MaxIdempotencyKey {
		return fmt.Errorf("%w: idempotency key is %d bytes, limit %d", ErrBadName, len(k), MaxIdempotencyKey)
	}
	return nil
}
