package service

import (
	"errors"
	"fmt"
	"math/rand"
	"time"
)

// RetryPolicy is how a caller retries a remote call: each attempt has its
// own timeout, attempts are spaced by exponential backoff with jitter (or the
// server's retry-after hint when it is longer), and the whole call ends at
// the context's deadline (or Overall, when the context has none). Calls are
// retried on timeouts, overloads and owner changes (the message could not be
// delivered), never on application errors, bad requests or unknown
// services, methods or versions.
type RetryPolicy struct {
	Attempts   int           // tries in all, including the first. Default 6.
	PerAttempt time.Duration // timeout of one try. Default 1s.
	Backoff    time.Duration // wait before the second try; doubles each time. Default 50ms.
	MaxBackoff time.Duration // cap on the wait. Default 1s.
	Jitter     float64       // ± fraction of each wait drawn at random, in [0,1). Default 0.2.
	Overall    time.Duration // deadline of the whole call when ctx has none. Default 10s.
}

// DefaultRetryPolicy suits a LAN ring: six tries within ten seconds, enough
// to ride out an owner crash with the 'local' timing profile and transient
// overloads. With the 'lan' profile a crashed owner is replaced after about
// 12s: raise Overall (or the context's deadline) to wait for it.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{Attempts: 6, PerAttempt: time.Second, Backoff: 50 * time.Millisecond, MaxBackoff: time.Second, Jitter: 0.2, Overall: 10 * time.Second}
}

// NoRetry makes one attempt only.
func NoRetry() RetryPolicy {
	p := DefaultRetryPolicy()
	p.Attempts = 1
	return p
}

// Validate reports the first setting that cannot work.
func (p RetryPolicy) Validate() error {
	switch {
	case p.Attempts < 1:
		return fmt.Errorf("service: RetryPolicy.Attempts must be >= 1, got %d", p.Attempts)
	case p.PerAttempt <= 0:
		return fmt.Errorf("service: RetryPolicy.PerAttempt must be > 0, got %v", p.PerAttempt)
	case p.Backoff < 0 || p.MaxBackoff < p.Backoff:
		return fmt.Errorf("service: RetryPolicy needs 0 <= Backoff <= MaxBackoff, got %v and %v", p.Backoff, p.MaxBackoff)
	case p.Jitter < 0 || p.Jitter >= 1:
		return fmt.Errorf("service: RetryPolicy.Jitter must be in [0,1), got %v", p.Jitter)
	case p.Overall <= 0:
		return fmt.Errorf("service: RetryPolicy.Overall must be > 0, got %v", p.Overall)
	}
	return nil
}

// Wait is the pause before attempt n+1 (n >= 1) after err.
func (p RetryPolicy) Wait(n int, err error, rng *rand.Rand) time.Duration {
	d := p.Backoff
	for i := 1; i < n && d < p.MaxBackoff; i++ {
		d *= 2
	}
	if d > p.MaxBackoff {
		d = p.MaxBackoff
	}
	if p.Jitter > 0 && d > 0 {
		f := 1 + p.Jitter*(2*rng.Float64()-1)
		d = time.Duration(float64(d) * f)
	}
	var e *Error // errors.As, as Retryable: a wrapped overload keeps its hint
	if errors.As(err, &e) && (e.Code == CodeOverloaded || e.Code == CodeUnavailable) && e.RetryAfter() > d {
		d = e.RetryAfter()
	}
	return d
}
