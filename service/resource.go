package service

import (
	"math"
	"runtime"
	"time"
)

// Limits bound one resource across every service that uses it. Zero fields
// mean no limit of that kind.
type Limits struct {
	MaxInFlight int   // requests admitted and not yet answered
	MaxBytes    int64 // request payload bytes admitted and not yet answered
}

// DefaultLimits are the limits of the standard resources until the
// application sets its own.
func DefaultLimits() map[string]Limits {
	return map[string]Limits{
		"cpu":    {MaxInFlight: 64 * runtime.GOMAXPROCS(0)},
		"disk":   {MaxInFlight: 64},
		"memory": {MaxBytes: 256 << 20},
	}
}

// resource is the admission state of one named resource. Guarded by Host.mu.
type resource struct {
	name     string
	lim      Limits
	inFlight int
	bytes    int64
	ewma     float64 // mean time a request holds the resource, seconds
	refused  uint64
}

func (r *resource) admits(size int64) bool {
	if r.lim.MaxInFlight > 0 && r.inFlight >= r.lim.MaxInFlight {
		return false
	}
	if r.lim.MaxBytes > 0 && r.bytes+size > r.lim.MaxBytes && r.inFlight > 0 {
		return false
	}
	return true
}

func (r *resource) acquire(size int64) { r.inFlight++; r.bytes += size }

func (r *resource) release(size int64, held time.Duration) {
	r.inFlight--
	r.bytes -= size
	const alpha = 0.1
	r.ewma = (1-alpha)*r.ewma + alpha*held.Seconds()
}

// retryAfter hints when capacity should free up: the typical holding time,
// clamped to [5ms, 5s].
func (r *resource) retryAfter() time.Duration {
	d := time.Duration(r.ewma * float64(time.Second))
	return time.Duration(math.Max(float64(5*time.Millisecond), math.Min(float64(d), float64(5*time.Second))))
}
