package load

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 50, 7 * time.Millisecond},
		{"one p99", ms(7), 99, 7 * time.Millisecond},
		{"median of four is the second", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of 100 is the 99th", ms(seq(1, 100)...), 99, 99 * time.Millisecond},
		{"p100 is the max", ms(1, 2, 3), 100, 3 * time.Millisecond},
		{"tiny p is the min", ms(1, 2, 3), 0.001, 1 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
}

func seq(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func TestRunCountsOnlyTheWindow(t *testing.T) {
	var calls atomic.Int64
	r, err := Run(context.Background(), Config{Concurrency: 3, Warmup: 5 * time.Millisecond, Duration: 20 * time.Millisecond},
		func(context.Context, int) error { calls.Add(1); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if r.Ops == 0 || r.Ops != len(r.Latencies) || int64(r.Ops) > calls.Load() {
		t.Fatalf("Ops %d, %d latencies, %d calls", r.Ops, len(r.Latencies), calls.Load())
	}
	for i := 1; i < len(r.Latencies); i++ {
		if r.Latencies[i] < r.Latencies[i-1] {
			t.Fatalf("latencies not sorted at %d", i)
		}
	}
	if r.OpsPerSec() <= 0 {
		t.Fatalf("OpsPerSec %v", r.OpsPerSec())
	}
}

func TestRunStopsOnFirstError(t *testing.T) {
	boom := errors.New("boom")
	_, err := Run(context.Background(), Config{Concurrency: 4, Duration: time.Minute},
		func(ctx context.Context, w int) error {
			if w == 2 {
				return boom
			}
			<-ctx.Done()
			return ctx.Err()
		})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
}

func TestRunHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Run(ctx, Config{Concurrency: 2, Duration: time.Minute},
		func(ctx context.Context, _ int) error { <-ctx.Done(); return ctx.Err() })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{{Concurrency: 0, Duration: 1}, {Concurrency: 1, Warmup: -1, Duration: 1}, {Concurrency: 1}} {
		if c.Validate() == nil {
			t.Errorf("%+v: want an error", c)
		}
	}
}
