package resource

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/internal/testring"
)

// TestDriftAssumption shows what DriftMargin buys and where it ends. A
// holder stops renewing; a second node whose clock runs ahead polls for
// the resource. With the clocks 400ms apart (inside the 500ms margin) the
// second node gets it only after the first lease stopped being valid.
// With them 1s apart (outside it) the two leases overlap by 500ms: the
// documented assumption, not a bug.
func TestDriftAssumption(t *testing.T) {
	for _, tc := range []struct {
		ahead   time.Duration
		overlap bool
	}{{400 * time.Millisecond, false}, {time.Second, true}} {
		t.Run(tc.ahead.String(), func(t *testing.T) {
			const seed = 4
			synctest.Test(t, func(t *testing.T) {
				var first *testring.Member
				c := ring(t, seed, 4, func(m *testring.Member) time.Duration {
					if first == nil {
						first = m
					}
					if m == first {
						return 0
					}
					return tc.ahead
				})
				defer c.Close()
				ctx := tctx(t)
				var a, b *Manager
				for _, m := range c.Live() {
					if m.ID == first.ID {
						a = mgr(m)
					} else if b == nil {
						b = mgr(m)
					}
				}
				if err := a.DefinePool(ctx, "p", []string{"r"}); err != nil {
					t.Fatalf("seed %d: define: %v", seed, err)
				}
				la, err := a.AcquireName(ctx, "p", "r")
				if err != nil {
					t.Fatalf("seed %d: acquire: %v", seed, err)
				}
				for {
					time.Sleep(50 * time.Millisecond)
					lb, err := b.AcquireName(ctx, "p", "r")
					if errors.Is(err, ErrHeld) {
						continue
					}
					if err != nil {
						t.Fatalf("seed %d: poll: %v", seed, err)
					}
					overlap := la.Valid(a.now())
					t.Logf("clock %v ahead: took token %d with %v of the first lease left", tc.ahead, lb.Token, la.Until().Sub(a.now()))
					if overlap != tc.overlap {
						t.Fatalf("seed %d: clock %v ahead: first lease still valid at takeover = %v, want %v", seed, tc.ahead, overlap, tc.overlap)
					}
					return
				}
			})
		})
	}
}
