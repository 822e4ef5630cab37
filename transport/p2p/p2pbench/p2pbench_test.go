package p2pbench

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/shoal-p2p/shoal/internal/bench/load"
)

func TestNewStreamAndFloor(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := Options{Load: load.Config{Concurrency: 4, Warmup: 50 * time.Millisecond, Duration: 200 * time.Millisecond}, Payload: 100}
	for name, run := range map[string]func(context.Context, Options) (Result, error){"new-stream": NewStream, "floor": Floor} {
		t.Run(name, func(t *testing.T) {
			r, err := run(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if r.Ops == 0 || r.Percentile(50) <= 0 || r.OpsPerSec() <= 0 {
				t.Fatalf("ops %d, p50 %v, ops/s %v", r.Ops, r.Percentile(50), r.OpsPerSec())
			}
			if r.Security == "" || r.Muxer == "" {
				t.Fatalf("negotiated security %q, muxer %q", r.Security, r.Muxer)
			}
			t.Logf("%s: %d ops, %.0f ops/s, p50 %v, %s %s", name, r.Ops, r.OpsPerSec(), r.Percentile(50), r.Security, r.Muxer)
		})
	}
}

func TestCanceledContextEndsRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := NewStream(ctx, Options{Load: load.Config{Concurrency: 2, Duration: time.Minute}, Payload: 10})
	if err == nil {
		t.Fatal("want an error from a canceled context")
	}
}

func TestOptionsValidate(t *testing.T) {
	ok := load.Config{Concurrency: 1, Duration: time.Second}
	for _, o := range []Options{{Load: ok, Payload: 0}, {Load: ok, Payload: MaxPayload + 1}, {Payload: 10}} {
		if o.Validate() == nil {
			t.Errorf("%+v: want an error", o)
		}
	}
}

func TestReadFrame(t *testing.T) {
	for _, n := range []int{1, 100, 127, 128, 300, 70000} {
		f := frame(n)
		got, err := readFrame(bytes.NewReader(append(bytes.Clone(f), 0xff)), nil)
		if err != nil || !bytes.Equal(got, f) {
			t.Fatalf("n=%d: err %v, equal %v", n, err, bytes.Equal(got, f))
		}
	}
	if _, err := readFrame(bytes.NewReader([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80}), nil); err == nil {
		t.Fatal("overlong length: want an error")
	}
	if _, err := readFrame(bytes.NewReader(frame(2 * MaxPayload)[:4]), nil); err == nil {
		t.Fatal("oversized frame: want an error")
	}
	if _, err := readFrame(bytes.NewReader(frame(10)[:5]), nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated frame: err %v, want io.ErrUnexpectedEOF", err)
	}
}
