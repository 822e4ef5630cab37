package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"
)

// A tiny run of the kv case on a 3-node ring with 200ms phases: every
// figure is filled in and consistent. Nothing is asserted about speed.
func TestKVShortRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a libp2p ring with on-disk stores")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var lines []string
	res, err := KV(ctx, KVConfig{Nodes: 3, Keys: 30, Value: 50, Concurrency: 3,
		Warmup: 200 * time.Millisecond, Duration: 200 * time.Millisecond, Dir: t.TempDir(),
		Progress: func(s string) { lines = append(lines, s) }})
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]float64{
		"get_ops": float64(res.GetOps), "get_ops_per_s": res.GetOpsPerS, "get_p50_us": res.GetP50us,
		"put_ops": float64(res.PutOps), "put_ops_per_s": res.PutOpsPerS, "put_p50_us": res.PutP50us,
		"cas_ops": float64(res.CASOps), "cas_p50_us": res.CASP50us,
		"bare_ops": float64(res.BareOps), "bare_rtt_p50_us": res.BareRTTP50us, "bare_rtt_1caller_p50_us": res.BareRTT1P50us,
		"fsync_ops": float64(res.FsyncOps), "fsync_p50_us": res.FsyncP50us,
		"fsync_pair_p50_us": res.FsyncPairP50us, "fsync_loaded_p50_us": res.FsyncLoadedP50us,
		"disk_syncs_per_s": res.DiskSyncsPerS, "put_syncs_per_op": res.PutSyncsPerOp,
		"put_sched_p90_us": res.PutSchedP90us,
		"get_ratio":        res.GetRatio, "put_ratio": res.PutRatio, "cas_ratio": res.CASRatio,
	} {
		if v <= 0 {
			t.Errorf("%s = %v, want > 0", name, v)
		}
	}
	if res.GetP99us < res.GetP50us || res.PutP99us < res.PutP50us || res.CASP99us < res.CASP50us ||
		res.BareRTTP99us < res.BareRTTP50us || res.FsyncP99us < res.FsyncP50us {
		t.Errorf("p99 below p50: %+v", res)
	}
	// Each caller owns its CAS keys and knows their versions.
	if res.CASMismatches != 0 {
		t.Errorf("%d CAS mismatches", res.CASMismatches)
	}
	if res.Nodes != 3 || res.Keys != 30 || res.ValueBytes != 50 || res.Concurrency != 3 || res.DurationS != 0.2 || res.Replicas != 3 {
		t.Errorf("settings not reported: %+v", res)
	}
	if res.GoalGetMet != (res.GetP50us <= GoalGetRatio*res.BareRTTP50us) ||
		res.GoalPutMet != (res.PutP50us <= GoalPutRatio*res.BareRTTP50us+res.FsyncP50us+0.1) {
		t.Errorf("goals inconsistent with the figures: %+v", res)
	}
	if w := res.LogWrites; w != "io_uring" && w != "pwrite" && w != "buffered" {
		t.Errorf("log_writes = %q", w)
	}
	if len(lines) < 10 {
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
	for _, k := range []string{"get_p50_us", "get_p99_us", "put_p50_us", "put_p99_us", "cas_p50_us", "cas_p99_us",
		"get_ops_per_s", "put_ops_per_s", "bare_rtt_p50_us", "fsync_p50_us", "get_ratio", "put_ratio", "cas_ratio",
		"goal_get_met", "goal_put_met", "goal_cas_met", "cas_mismatches", "nodes",
		"fsync_pair_p50_us", "fsync_loaded_p50_us", "disk_syncs_per_s", "put_syncs_per_op"} {
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

func TestKVConfigValidate(t *testing.T) {
	if err := (KVConfig{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
	for _, c := range []KVConfig{{Nodes: 2}, {Nodes: 101}, {Keys: -1}, {Value: -1}, {Concurrency: -1},
		{Warmup: -1}, {Duration: -1}, {Keys: 3, Concurrency: 4}} {
		if c.Validate() == nil {
			t.Errorf("%+v: want an error", c)
		}
	}
}

func TestKVValue(t *testing.T) {
	a := string(KVValue(make([]byte, 20), 1, 7))
	b := string(KVValue(make([]byte, 20), 1, 8))
	if len(a) != 20 || a == b || !strings.HasPrefix(a, "w1-7-w1-7-") {
		t.Errorf("values %q and %q", a, b)
	}
	if KVKey(42) != "bench-000042" {
		t.Errorf("KVKey(42) = %q", KVKey(42))
	}
}

func TestKVPick(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct{ workers, keys int }{{1, 1}, {4, 4}, {4, 10}, {3, 1000}} {
		for w := range c.workers {
			seen := map[int]bool{}
			for range 2000 {
				i := KVPick(rng, w, c.workers, c.keys)
				if i < 0 || i >= c.keys || i%c.workers != w {
					t.Fatalf("%+v worker %d: picked %d", c, w, i)
				}
				seen[i] = true
			}
			if want := (c.keys - w + c.workers - 1) / c.workers; len(seen) != want && c.keys < 100 {
				t.Errorf("%+v worker %d: %d keys picked, want all %d", c, w, len(seen), want)
			}
		}
	}
}

// The Put and CAS goals include one fsync: a run whose data directory is
// in memory shows the stack without a disk and must not report them met,
// however fast it was.
func TestKVGoalsNotJudgedInMemory(t *testing.T) {
	r := KVResult{GetOps: 1, PutOps: 1, CASOps: 1, GetP50us: 50, PutP50us: 300, CASP50us: 300, BareRTTP50us: 100, FsyncP50us: 3}
	r.finish()
	if !r.GoalGetMet || !r.GoalPutMet || !r.GoalCASMet {
		t.Fatalf("on a disk, figures within the goals: got get %v put %v cas %v, want all met", r.GoalGetMet, r.GoalPutMet, r.GoalCASMet)
	}
	r.DataInMemory = true
	r.finish()
	if !r.GoalGetMet || r.GoalPutMet || r.GoalCASMet {
		t.Fatalf("in memory: got get %v put %v cas %v, want get met, put and cas not judged (false)", r.GoalGetMet, r.GoalPutMet, r.GoalCASMet)
	}
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "not judged") {
		t.Fatalf("text output does not say the put and cas goals are not judged:\n%s", b.String())
	}
}

// inMemory agrees with /proc/mounts about every tmpfs mount point.
func TestInMemory(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux is checked")
	}
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Skip("no /proc/mounts")
	}
	top := map[string]string{} // mount point -> type of the last mount there (it covers earlier ones)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 3 {
			top[f[1]] = f[2]
		}
	}
	n := 0
	for dir, typ := range top {
		if typ != "tmpfs" {
			continue
		}
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		n++
		if !inMemory(dir) {
			t.Errorf("%s is tmpfs by /proc/mounts, inMemory says no", dir)
		}
	}
	if n == 0 {
		t.Skip("no tmpfs mounted")
	}
	if inMemory("/proc") {
		t.Errorf("/proc is not tmpfs, inMemory says it is")
	}
}

// TestSchedQuantile: the quantile of what was recorded between two
// readings, as the upper bound of its bucket.
func TestSchedQuantile(t *testing.T) {
	before := &metrics.Float64Histogram{Counts: []uint64{5, 5, 5, 5}, Buckets: []float64{0, 1e-6, 1e-5, 1e-4, math.Inf(1)}}
	after := &metrics.Float64Histogram{Counts: []uint64{5 + 80, 5 + 10, 5 + 9, 5 + 1}, Buckets: before.Buckets}
	for _, c := range []struct{ q, want float64 }{{0.5, 1e-6}, {0.8, 1e-6}, {0.9, 1e-5}, {0.99, 1e-4}, {1, 1e-4}} {
		if got := schedQuantile(before, after, c.q); got != c.want {
			t.Errorf("q%v = %v, want %v", c.q, got, c.want)
		}
	}
	if got := schedQuantile(before, before, 0.9); got != 0 {
		t.Errorf("nothing recorded: %v, want 0", got)
	}
}
