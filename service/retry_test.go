package service

import (
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"
)

func TestRetryPolicyValidate(t *testing.T) {
	if err := DefaultRetryPolicy().Validate(); err != nil {
		t.Fatalf("default: %v", err)
	}
	if p := NoRetry(); p.Validate() != nil || p.Attempts != 1 {
		t.Fatalf("NoRetry: %+v", p)
	}
	d := DefaultRetryPolicy()
	if d.Attempts != 6 || d.PerAttempt != time.Second || d.Backoff != 50*time.Millisecond ||
		d.MaxBackoff != time.Second || d.Jitter != 0.2 || d.Overall != 10*time.Second {
		t.Fatalf("defaults changed from the documented ones: %+v", d)
	}
	for _, tt := range []struct {
		change func(*RetryPolicy)
		want   string
	}{
		{func(p *RetryPolicy) { p.Attempts = 0 }, "Attempts must be >= 1, got 0"},
		{func(p *RetryPolicy) { p.PerAttempt = 0 }, "PerAttempt must be > 0"},
		{func(p *RetryPolicy) { p.Backoff = -1 }, "0 <= Backoff <= MaxBackoff"},
		{func(p *RetryPolicy) { p.MaxBackoff = p.Backoff - 1 }, "0 <= Backoff <= MaxBackoff"},
		{func(p *RetryPolicy) { p.Jitter = 1 }, "Jitter must be in [0,1)"},
		{func(p *RetryPolicy) { p.Jitter = -0.1 }, "Jitter must be in [0,1)"},
		{func(p *RetryPolicy) { p.Overall = 0 }, "Overall must be > 0"},
	} {
		p := DefaultRetryPolicy()
		tt.change(&p)
		if err := p.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: got %v, want %q", p, err, tt.want)
		}
	}
}

func TestRetryWaitGrowsAndCaps(t *testing.T) {
	p := RetryPolicy{Attempts: 10, PerAttempt: time.Second, Backoff: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, Overall: time.Minute}
	rng := rand.New(rand.NewSource(1))
	want := []time.Duration{50, 100, 200, 300, 300, 300}
	for i, w := range want {
		if got := p.Wait(i+1, errors.New("timeout"), rng); got != w*time.Millisecond {
			t.Errorf("Wait(%d) = %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
	// Many attempts do not overflow.
	if got := p.Wait(1000, nil, rng); got != 300*time.Millisecond {
		t.Errorf("Wait(1000) = %v", got)
	}
	p.Backoff, p.MaxBackoff = 0, 0
	if got := p.Wait(3, nil, rng); got != 0 {
		t.Errorf("zero backoff waits %v", got)
	}
}

func TestRetryWaitJitter(t *testing.T) {
	const seed = 7
	p := DefaultRetryPolicy()
	rng := rand.New(rand.NewSource(seed))
	for n := 1; n <= 6; n++ {
		base := p.Backoff << (n - 1)
		if base > p.MaxBackoff {
			base = p.MaxBackoff
		}
		lo := time.Duration(float64(base) * (1 - p.Jitter))
		hi := time.Duration(float64(base) * (1 + p.Jitter))
		var min, max time.Duration = hi, lo
		for i := 0; i < 2000; i++ {
			d := p.Wait(n, nil, rng)
			if d < lo || d > hi {
				t.Fatalf("seed %d: Wait(%d) = %v outside [%v, %v]", seed, n, d, lo, hi)
			}
			min, max = minDur(min, d), maxDur(max, d)
		}
		// The spread is used, not a constant.
		if spread := max - min; spread < time.Duration(float64(hi-lo)*0.8) {
			t.Errorf("seed %d: Wait(%d) spread only %v of %v", seed, n, spread, hi-lo)
		}
	}
}

func TestRetryWaitHonoursRetryAfter(t *testing.T) {
	p := DefaultRetryPolicy()
	p.Jitter = 0
	rng := rand.New(rand.NewSource(1))
	long := Overloaded("disk", 700*time.Millisecond)
	if got := p.Wait(1, long, rng); got != 700*time.Millisecond {
		t.Errorf("retry-after longer than the backoff: waited %v", got)
	}
	if got := p.Wait(1, fmt.Errorf("call: %w", long), rng); got != 700*time.Millisecond {
		t.Errorf("a wrapped overload's retry-after is ignored: waited %v", got)
	}
	short := Overloaded("disk", 5*time.Millisecond)
	if got := p.Wait(3, short, rng); got != 200*time.Millisecond {
		t.Errorf("retry-after shorter than the backoff: waited %v", got)
	}
	// Only an overload carries a hint worth waiting for.
	other := &Error{Code: CodeInternal, RetryAfterMs: 5000}
	if got := p.Wait(1, other, rng); got != 50*time.Millisecond {
		t.Errorf("non-overload hint used: %v", got)
	}
}

func minDur(a, b time.Duration) time.Duration {
	if a < b {
		return a
	}
	return b
}

func maxDur(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}
