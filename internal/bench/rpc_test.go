package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// A tiny run of the RPC case: every figure is filled in and consistent.
// Nothing is asserted about speed.
func TestRPCShortRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var lines []string
	res, err := RPC(ctx, RPCConfig{
		Concurrency: 4, Warmup: 50 * time.Millisecond, Duration: 200 * time.Millisecond, Payload: 100,
		Progress: func(s string) { lines = append(lines, s) },
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]float64{
		"shoal_ops": float64(res.ShoalOps), "shoal_ops_per_s": res.ShoalOpsPerS, "shoal_p50_us": res.ShoalP50us,
		"bare_ops": float64(res.BareOps), "bare_ops_per_s": res.BareOpsPerS, "bare_p50_us": res.BareP50us,
		"floor_ops": float64(res.FloorOps), "floor_p50_us": res.FloorP50us,
		"throughput_ratio": res.ThroughputRatio, "p50_ratio": res.P50Ratio,
	} {
		if v <= 0 {
			t.Errorf("%s = %v, want > 0", name, v)
		}
	}
	if res.ShoalP99us < res.ShoalP50us || res.BareP99us < res.BareP50us || res.FloorP99us < res.FloorP50us {
		t.Errorf("p99 below p50: %+v", res)
	}
	if res.Concurrency != 4 || res.PayloadBytes != 100 || res.DurationS != 0.2 || res.Security == "" || res.Muxer == "" {
		t.Errorf("settings not reported: %+v", res)
	}
	if res.GoalThroughputMet != (res.ThroughputRatio >= GoalThroughputRatio) || res.GoalP50Met != (res.P50Ratio <= GoalP50Ratio) {
		t.Errorf("goals inconsistent with ratios: %+v", res)
	}
	if len(lines) < 6 {
		t.Errorf("progress lines: %q", lines)
	}

	var buf bytes.Buffer
	if err := res.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Fatalf("JSON output has %d lines, want 1: %s", n, buf.String())
	}
	var fields map[string]any
	if err := json.Unmarshal(buf.Bytes(), &fields); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"shoal_ops_per_s", "bare_ops_per_s", "throughput_ratio", "shoal_p50_us", "shoal_p99_us",
		"bare_p50_us", "bare_p99_us", "p50_ratio", "floor_p50_us", "concurrency", "duration_s", "payload_bytes",
		"goal_throughput_met", "goal_p50_met"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	buf.Reset()
	if err := res.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + buf.String())
}

func TestRPCConfigValidate(t *testing.T) {
	if err := (RPCConfig{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
	for _, c := range []RPCConfig{{Concurrency: -1}, {Duration: -time.Second}, {Warmup: -1}, {Payload: MaxRPCPayload + 1}} {
		if c.Validate() == nil {
			t.Errorf("%+v: want an error", c)
		}
	}
}

func TestRPCCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := RPC(ctx, RPCConfig{Duration: time.Minute}); err == nil {
		t.Fatal("want an error from a canceled context")
	}
}
