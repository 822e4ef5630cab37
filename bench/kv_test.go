package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	shoalbench "github.com/shoal-p2p/shoal/internal/bench"
)

func TestKVUsage(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"kv", "--system", "etcd"}, "--system must be both, shoal or kad"},
		{[]string{"kv", "--nodes", "2"}, "Nodes must be in [3, 100]"},
		{[]string{"kv", "--nodes", "5", "--connect", "5"}, "--connect must be in [1, nodes-1]"},
		{[]string{"kv", "--keys", "0"}, "--keys must be >= 1"},
		{[]string{"kv", "extra"}, `unexpected argument "extra"`},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		if code := run(c.args, &out, &errb); code != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", c.args, code, errb.String(), c.want)
		}
	}
}

// A short kad-dht run on 4 loopback hosts: the routing tables fill and
// both phases complete. Nothing is asserted about speed.
func TestKadShortRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := shoalbench.KVConfig{Nodes: 4, Keys: 20, Value: 50, Concurrency: 2, Warmup: 50 * time.Millisecond, Duration: 200 * time.Millisecond}
	res := &kvComparison{}
	if err := runKad(ctx, cfg.WithDefaults(), 2, res); err != nil {
		t.Fatal(err)
	}
	if res.KadRTMin != 3 || res.KadGetOps == 0 || res.KadPutOps == 0 || res.KadGetP50us <= 0 || res.KadPutP50us <= 0 ||
		res.KadGetP99us < res.KadGetP50us || res.KadPutP99us < res.KadPutP50us {
		t.Fatalf("%+v", res)
	}
}

// A short Shoal run through compareKV: the Shoal half of the JSON is
// filled, the disk and scheduler figures included. Nothing is asserted
// about speed.
func TestCompareShoalShortRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := shoalbench.KVConfig{Nodes: 3, Keys: 20, Value: 50, Concurrency: 2, Warmup: 50 * time.Millisecond, Duration: 200 * time.Millisecond,
		Dir: t.TempDir(), Progress: func(string) {}}
	res, err := compareKV(ctx, cfg, 2, "shoal")
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]float64{
		"shoal_put_p50_us": res.ShoalPutP50us, "shoal_get_p50_us": res.ShoalGetP50us, "bare_rtt_p50_us": res.BareRTTP50us,
		"fsync_p50_us": res.FsyncP50us, "fsync_pair_p50_us": res.FsyncPairP50us, "fsync_loaded_p50_us": res.FsyncLoadedP50us,
		"shoal_put_syncs_per_op": res.ShoalPutSyncsPerOp, "shoal_put_sched_p90_us": res.ShoalPutSchedP90us,
	} {
		if v <= 0 {
			t.Errorf("%s = %v, want > 0", name, v)
		}
	}
	if w := res.ShoalLogWrites; w != "io_uring" && w != "pwrite" && w != "buffered" {
		t.Errorf("shoal_log_writes = %q", w)
	}
	if res.KadPutOps != 0 {
		t.Errorf("kad ran in a shoal-only comparison: %+v", res)
	}
}
