// Package load drives one request/response operation from concurrent
// callers for a fixed time and records the latency of every call. The
// Shoal and bare-libp2p cases of `shoal bench` all run through it, so they
// are timed by the same code.
package load

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// Config says how hard and how long to drive an operation.
type Config struct {
	// Concurrency is the number of callers, each issuing one call at a
	// time (a closed loop: a caller starts its next call when the last
	// returns). Must be >= 1.
	Concurrency int
	// Warmup is run before the measured window and not recorded: it lets
	// connections, identify exchanges, buffers and the Go scheduler settle.
	// Must be >= 0.
	Warmup time.Duration
	// Duration is the measured window. Must be > 0.
	Duration time.Duration
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Concurrency < 1:
		return fmt.Errorf("load: Concurrency must be >= 1, got %d", c.Concurrency)
	case c.Warmup < 0:
		return fmt.Errorf("load: Warmup must be >= 0, got %v", c.Warmup)
	case c.Duration <= 0:
		return fmt.Errorf("load: Duration must be > 0, got %v", c.Duration)
	}
	return nil
}

// Op performs one call. worker (0 to Concurrency-1) names the caller, so an
// Op can keep per-caller state such as a buffer or a stream; a worker never
// runs two calls at once. A non-nil error stops the whole run.
type Op func(ctx context.Context, worker int) error

// Result is what one run measured.
type Result struct {
	// Ops counts the calls that started and finished inside the window.
	Ops int
	// Window is the length of the measured window.
	Window time.Duration
	// Latencies holds one entry per counted call, sorted ascending.
	Latencies []time.Duration
}

// OpsPerSec is the throughput over the window.
func (r Result) OpsPerSec() float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Window.Seconds()
}

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of the
// latencies, or 0 if there are none.
func (r Result) Percentile(p float64) time.Duration {
	return Percentile(r.Latencies, p)
}

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, or 0 if it is empty: the smallest value that at least p% of the
// values are less than or equal to.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(n))) - 1
	return sorted[max(0, min(i, n-1))]
}

// ErrNoOps is returned when no call completed inside the window.
var ErrNoOps = errors.New("load: no call completed inside the measured window")

// Run calls op from cfg.Concurrency goroutines until the warm-up and the
// window have passed, and returns the calls that fell inside the window.
// Calls still running when the window closes are waited for but not
// counted. The first error from op, or the end of ctx, stops every caller
// and is returned; op must itself return once ctx is done.
func Run(ctx context.Context, cfg Config, op Op) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	start := time.Now()
	from := start.Add(cfg.Warmup)
	to := from.Add(cfg.Duration)
	samples := make([][]time.Duration, cfg.Concurrency)
	var wg sync.WaitGroup
	for w := range cfg.Concurrency {
		wg.Go(func() {
			var s []time.Duration
			for ctx.Err() == nil {
				t0 := time.Now()
				if t0.After(to) {
					break
				}
				if err := op(ctx, w); err != nil {
					if ctx.Err() == nil {
						cancel(fmt.Errorf("caller %d: %w", w, err))
					}
					break
				}
				if t1 := time.Now(); !t0.Before(from) && !t1.After(to) {
					s = append(s, t1.Sub(t0))
				}
			}
			samples[w] = s
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return Result{}, err
	}
	r := Result{Window: cfg.Duration, Latencies: slices.Concat(samples...)}
	slices.Sort(r.Latencies)
	r.Ops = len(r.Latencies)
	if r.Ops == 0 {
		return r, fmt.Errorf("%w (%d callers, %v): each call took longer than the window", ErrNoOps, cfg.Concurrency, cfg.Duration)
	}
	return r, nil
}
