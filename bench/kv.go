package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	shoalbench "github.com/shoal-p2p/shoal/internal/bench"
	"github.com/shoal-p2p/shoal/internal/bench/load"
	"github.com/shoal-p2p/shoal/transport/p2p"
)

func init() {
	cases = append(cases, benchCase{name: "kv",
		summary: "Put/Get on go-libp2p-kad-dht against Shoal's kv on rings of the same size (--nodes, default 20)",
		run:     runKV})
}

// Goals of the comparison (issue 4): Shoal's p50 this many times faster.
const (
	goalGetSpeedup = 10.0
	goalPutSpeedup = 5.0
)

// kadNamespace is the record namespace the benchmark's keys live under
// ("/v/KEY"); its validator accepts every value.
const kadNamespace = "v"

// kadSetupTimeout bounds starting the kad-dht hosts, filling their routing
// tables and writing the keys.
const kadSetupTimeout = 60 * time.Second

func runKV(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("kv", "[--nodes N] [--keys K] [--value BYTES] [--concurrency C] [--duration D] [--warmup D] [--connect K] [--dir DIR] [--json]", stderr)
	d := shoalbench.DefaultKVConfig()
	cfg := shoalbench.KVConfig{Nodes: 20}
	fs.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "hosts in each system: Shoal's ring and kad-dht's network (3 to 100)")
	fs.IntVar(&cfg.Keys, "keys", d.Keys, "keys written before measuring; each operation picks one at random")
	fs.IntVar(&cfg.Value, "value", d.Value, "value size in bytes")
	fs.IntVar(&cfg.Concurrency, "concurrency", d.Concurrency, "concurrent callers, each from a random node per operation")
	fs.DurationVar(&cfg.Duration, "duration", d.Duration, "measured window of each phase")
	fs.DurationVar(&cfg.Warmup, "warmup", d.Warmup, "unmeasured warm-up before each phase's window")
	fs.StringVar(&cfg.Dir, "dir", "", "where Shoal's temporary data directories go: the disk it fsyncs to (default $TMPDIR or /tmp)")
	degree := fs.Int("connect", 4, "kad-dht: each host dials the next K hosts before the routing tables are refreshed")
	system := fs.String("system", "both", "both, or only shoal or kad (the other side's figures stay 0)")
	asJSON := fs.Bool("json", false, "print the result as one JSON line")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *system != "both" && *system != "shoal" && *system != "kad":
		return fmt.Errorf("%w: --system must be both, shoal or kad, got %q", errUsage, *system)
	case cfg.Keys < 1:
		return fmt.Errorf("%w: --keys must be >= 1, got %d", errUsage, cfg.Keys)
	case cfg.Value < 1:
		return fmt.Errorf("%w: --value must be >= 1, got %d", errUsage, cfg.Value)
	case cfg.Concurrency < 1:
		return fmt.Errorf("%w: --concurrency must be >= 1, got %d", errUsage, cfg.Concurrency)
	case cfg.Duration <= 0:
		return fmt.Errorf("%w: --duration must be > 0, got %v", errUsage, cfg.Duration)
	case cfg.Warmup < 0:
		return fmt.Errorf("%w: --warmup must be >= 0, got %v", errUsage, cfg.Warmup)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *degree < 1 || *degree >= cfg.Nodes {
		return fmt.Errorf("%w: --connect must be in [1, nodes-1], got %d", errUsage, *degree)
	}
	if cfg.Warmup == 0 {
		cfg.Warmup = 1 // KVConfig reads 0 as "default"; 1ns is no warm-up.
	}
	cfg.Progress = func(s string) { fmt.Fprintln(stderr, "bench kv:", s) }
	res, err := compareKV(ctx, cfg, *degree, *system)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	return res.writeText(stdout)
}

// kvComparison is what one run measured, printed by --json as one line.
// Latencies in microseconds, throughputs in operations per second.
type kvComparison struct {
	Bench       string  `json:"bench"` // "kv"
	Nodes       int     `json:"nodes"`
	Keys        int     `json:"keys"`
	ValueBytes  int     `json:"value_bytes"`
	Concurrency int     `json:"concurrency"`
	WarmupS     float64 `json:"warmup_s"`
	DurationS   float64 `json:"duration_s"`
	GOMAXPROCS  int     `json:"gomaxprocs"`
	LoadAvg1m   float64 `json:"loadavg_1m"` // as the run began: figures from a busy machine are not comparable

	ShoalPutP50us   float64 `json:"shoal_put_p50_us"`
	ShoalPutP99us   float64 `json:"shoal_put_p99_us"`
	ShoalPutOps     int     `json:"shoal_put_ops"`
	ShoalPutOpsPerS float64 `json:"shoal_put_ops_per_s"`
	ShoalGetP50us   float64 `json:"shoal_get_p50_us"`
	ShoalGetP99us   float64 `json:"shoal_get_p99_us"`
	ShoalGetOps     int     `json:"shoal_get_ops"`
	ShoalGetOpsPerS float64 `json:"shoal_get_ops_per_s"`
	ShoalCASP50us   float64 `json:"shoal_cas_p50_us"`
	ShoalCASOps     int     `json:"shoal_cas_ops"`
	ShoalSetupS     float64 `json:"shoal_setup_s"`
	// The two figures Shoal's own goals are stated in, same run.
	BareRTTP50us float64 `json:"bare_rtt_p50_us"`
	FsyncP50us   float64 `json:"fsync_p50_us"`
	// The disk and the scheduler in the same run (as in shoal bench kv):
	// every Shoal node's log is on the one disk, in the one process.
	FsyncPairP50us     float64 `json:"fsync_pair_p50_us"`
	FsyncLoadedP50us   float64 `json:"fsync_loaded_p50_us"`
	ShoalPutSyncsPerOp float64 `json:"shoal_put_syncs_per_op"`
	ShoalLogWrites     string  `json:"shoal_log_writes"` // io_uring, pwrite or buffered
	ShoalPutSchedP90us float64 `json:"shoal_put_sched_p90_us"`

	KadPutP50us   float64 `json:"kad_put_p50_us"`
	KadPutP99us   float64 `json:"kad_put_p99_us"`
	KadPutOps     int     `json:"kad_put_ops"`
	KadPutOpsPerS float64 `json:"kad_put_ops_per_s"`
	KadGetP50us   float64 `json:"kad_get_p50_us"`
	KadGetP99us   float64 `json:"kad_get_p99_us"`
	KadGetOps     int     `json:"kad_get_ops"`
	KadGetOpsPerS float64 `json:"kad_get_ops_per_s"`
	KadSetupS     float64 `json:"kad_setup_s"`
	KadRTMin      int     `json:"kad_rt_min"` // smallest routing table when measuring began
	KadRTMean     float64 `json:"kad_rt_mean"`

	PutSpeedup     float64 `json:"put_speedup"` // kad_put_p50_us / shoal_put_p50_us
	GetSpeedup     float64 `json:"get_speedup"`
	GoalPutMet     bool    `json:"goal_put_met"` // put_speedup >= 5
	GoalGetMet     bool    `json:"goal_get_met"` // get_speedup >= 10
	ShoalSemantics string  `json:"shoal_semantics"`
	KadSemantics   string  `json:"kad_semantics"`
}

// compareKV runs the workload on Shoal (shoalbench.KV: its get and put
// phases, plus cas, the bare round trip and fsync it measures alongside)
// and then on kad-dht, with the same keys, values, callers and windows.
func compareKV(ctx context.Context, cfg shoalbench.KVConfig, degree int, system string) (*kvComparison, error) {
	cfg = cfg.WithDefaults()
	res := &kvComparison{Bench: "kv", Nodes: cfg.Nodes, Keys: cfg.Keys, ValueBytes: cfg.Value, Concurrency: cfg.Concurrency,
		WarmupS: cfg.Warmup.Seconds(), DurationS: cfg.Duration.Seconds(), GOMAXPROCS: runtime.GOMAXPROCS(0), LoadAvg1m: shoalbench.LoadAvg(),
		ShoalSemantics: "linearizable Get; Put acknowledged once a majority of r=3 replicas fsynced it (write-ahead log, group commit)",
		KadSemantics: "GetValue with the default quorum (full lookup); PutValue stores in memory on the K closest, " +
			"last writer wins, succeeds even if no peer stored it"}

	if system != "kad" {
		cfg.Progress(fmt.Sprintf("shoal: %d nodes", cfg.Nodes))
		s, err := shoalbench.KV(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("shoal: %w", err)
		}
		res.ShoalPutP50us, res.ShoalPutP99us, res.ShoalPutOps, res.ShoalPutOpsPerS = s.PutP50us, s.PutP99us, s.PutOps, s.PutOpsPerS
		res.ShoalGetP50us, res.ShoalGetP99us, res.ShoalGetOps, res.ShoalGetOpsPerS = s.GetP50us, s.GetP99us, s.GetOps, s.GetOpsPerS
		res.ShoalCASP50us, res.ShoalCASOps, res.ShoalSetupS = s.CASP50us, s.CASOps, s.SetupS
		res.BareRTTP50us, res.FsyncP50us = s.BareRTTP50us, s.FsyncP50us
		res.FsyncPairP50us, res.FsyncLoadedP50us, res.ShoalPutSyncsPerOp = s.FsyncPairP50us, s.FsyncLoadedP50us, s.PutSyncsPerOp
		res.ShoalLogWrites, res.ShoalPutSchedP90us = s.LogWrites, s.PutSchedP90us
	}
	if system != "shoal" {
		cfg.Progress(fmt.Sprintf("kad-dht: %d hosts", cfg.Nodes))
		if err := runKad(ctx, cfg, degree, res); err != nil {
			return nil, fmt.Errorf("kad-dht: %w", err)
		}
	}
	res.PutSpeedup = round(res.KadPutP50us/res.ShoalPutP50us, 2)
	res.GetSpeedup = round(res.KadGetP50us/res.ShoalGetP50us, 2)
	res.GoalPutMet = res.PutSpeedup >= goalPutSpeedup
	res.GoalGetMet = res.GetSpeedup >= goalGetSpeedup
	return res, nil
}

// anyValidator accepts every record and prefers the first of several: the
// newest write wins where a host compares it with the one it holds.
type anyValidator struct{}

func (anyValidator) Validate(string, []byte) error        { return nil }
func (anyValidator) Select(string, [][]byte) (int, error) { return 0, nil }

// kadNet is cfg.Nodes libp2p hosts, each running a kad-dht server.
type kadNet struct {
	hosts []host.Host
	dhts  []*dht.IpfsDHT
}

func (k *kadNet) close() {
	var wg sync.WaitGroup
	for _, d := range k.dhts {
		wg.Go(func() { d.Close() })
	}
	wg.Wait()
	for _, h := range k.hosts {
		wg.Go(func() { h.Close() })
	}
	wg.Wait()
}

// runKad starts cfg.Nodes hosts built like Shoal's transport (p2p.HostOptions:
// TCP on 127.0.0.1, Noise, yamux), each with a kad-dht in server mode with
// its default in-memory datastore, a protocol prefix of its own and a
// validator for the "/v/" namespace. Each host dials the next degree hosts;
// every routing table is then refreshed until each holds every other host
// (or as many as its buckets take), within a bound. The keys are written
// once, then the get and put phases run like Shoal's.
func runKad(ctx context.Context, cfg shoalbench.KVConfig, degree int, res *kvComparison) error {
	t0 := time.Now()
	setup, cancel := context.WithTimeout(ctx, kadSetupTimeout)
	defer cancel()
	k := &kadNet{}
	defer k.close()
	tcfg := p2p.DefaultConfig()
	tcfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	for i := range cfg.Nodes {
		opts, err := p2p.HostOptions(tcfg)
		if err != nil {
			return err
		}
		h, err := libp2p.New(opts...)
		if err != nil {
			return fmt.Errorf("start libp2p host %d: %w", i+1, err)
		}
		k.hosts = append(k.hosts, h)
		d, err := dht.New(h, dht.Mode(dht.ModeServer), dht.ProtocolPrefix("/shoal-bench"),
			dht.Validator(record.NamespacedValidator{kadNamespace: anyValidator{}}), dht.DisableProviders())
		if err != nil {
			return fmt.Errorf("kad-dht on host %d: %w", i+1, err)
		}
		k.dhts = append(k.dhts, d)
	}
	for i, h := range k.hosts {
		for j := 1; j <= degree; j++ {
			o := k.hosts[(i+j)%len(k.hosts)]
			if len(h.Network().ConnsToPeer(o.ID())) > 0 {
				continue
			}
			if err := h.Connect(setup, peer.AddrInfo{ID: o.ID(), Addrs: o.Addrs()}); err != nil {
				return fmt.Errorf("connect host %d to host %d: %w", i+1, (i+j)%len(k.hosts)+1, err)
			}
		}
	}
	want := min(cfg.Nodes-1, 20) // 20: kad-dht's bucket size, enough for a table that routes anywhere
	cfg.Progress(fmt.Sprintf("kad-dht: hosts up, each dialled the next %d; refreshing routing tables until each has %d peers", degree, want))
	if err := k.fillTables(setup, want); err != nil {
		return err
	}
	res.KadRTMin, res.KadRTMean = k.tableSizes()
	cfg.Progress(fmt.Sprintf("kad-dht: routing tables: smallest %d, mean %.1f; writing %d keys", res.KadRTMin, res.KadRTMean, cfg.Keys))

	keys := make([]string, cfg.Keys)
	for i := range keys {
		keys[i] = "/" + kadNamespace + "/" + shoalbench.KVKey(i)
	}
	if err := k.preload(setup, keys, cfg.Value); err != nil {
		return err
	}
	res.KadSetupS = round(time.Since(t0).Seconds(), 2)

	lc := load.Config{Concurrency: cfg.Concurrency, Warmup: cfg.Warmup, Duration: cfg.Duration}
	rngs := make([]*rand.Rand, cfg.Concurrency)
	bufs := make([][]byte, cfg.Concurrency)
	seqs := make([]uint64, cfg.Concurrency)
	for w := range rngs {
		rngs[w] = rand.New(rand.NewPCG(uint64(w)+1, 0x5eed))
		bufs[w] = make([]byte, cfg.Value)
	}
	phaseTimeout := cfg.Warmup + cfg.Duration + 30*time.Second
	window := fmt.Sprintf("warm-up %v, measuring %v", cfg.Warmup, cfg.Duration)

	cfg.Progress(fmt.Sprintf("kad-dht: get: %d callers of GetValue, random host and key, %s", cfg.Concurrency, window))
	pctx, cancel := context.WithTimeout(ctx, phaseTimeout)
	get, err := load.Run(pctx, lc, func(ctx context.Context, w int) error {
		key := keys[shoalbench.KVPick(rngs[w], w, cfg.Concurrency, len(keys))]
		v, err := k.dhts[rngs[w].IntN(len(k.dhts))].GetValue(ctx, key)
		if err != nil {
			return fmt.Errorf("GetValue %s: %w", key, err)
		}
		if len(v) != cfg.Value {
			return fmt.Errorf("GetValue %s: %d bytes, want %d", key, len(v), cfg.Value)
		}
		return nil
	})
	cancel()
	if err != nil {
		return fmt.Errorf("get phase: %w", err)
	}
	res.KadGetOps, res.KadGetOpsPerS, res.KadGetP50us, res.KadGetP99us = figures(get)
	cfg.Progress(summary("kad-dht: get", get))

	cfg.Progress(fmt.Sprintf("kad-dht: put: %d callers of PutValue, random host and key, %s", cfg.Concurrency, window))
	pctx, cancel = context.WithTimeout(ctx, phaseTimeout)
	put, err := load.Run(pctx, lc, func(ctx context.Context, w int) error {
		key := keys[shoalbench.KVPick(rngs[w], w, cfg.Concurrency, len(keys))]
		seqs[w]++
		if err := k.dhts[rngs[w].IntN(len(k.dhts))].PutValue(ctx, key, shoalbench.KVValue(bufs[w], w, seqs[w])); err != nil {
			return fmt.Errorf("PutValue %s: %w", key, err)
		}
		return nil
	})
	cancel()
	if err != nil {
		return fmt.Errorf("put phase: %w", err)
	}
	res.KadPutOps, res.KadPutOpsPerS, res.KadPutP50us, res.KadPutP99us = figures(put)
	cfg.Progress(summary("kad-dht: put", put))
	cfg.Progress("kad-dht: closing the hosts")
	return nil
}

// fillTables refreshes every routing table, repeatedly, until each holds
// at least want peers or ctx ends; it fails only if some table is empty.
func (k *kadNet) fillTables(ctx context.Context, want int) error {
	for round := 1; ; round++ {
		var wg sync.WaitGroup
		for _, d := range k.dhts {
			ch := d.RefreshRoutingTable()
			wg.Go(func() {
				select {
				case <-ch:
				case <-ctx.Done():
				}
			})
		}
		wg.Wait()
		smallest, _ := k.tableSizes()
		if smallest >= want {
			return nil
		}
		if ctx.Err() != nil || round == 5 {
			if smallest == 0 {
				return fmt.Errorf("a routing table is still empty after %d refreshes", round)
			}
			return nil // measure with what they have; the sizes are reported
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (k *kadNet) tableSizes() (smallest int, mean float64) {
	smallest = math.MaxInt
	total := 0
	for _, d := range k.dhts {
		n := d.RoutingTable().Size()
		smallest = min(smallest, n)
		total += n
	}
	return smallest, round(float64(total)/float64(len(k.dhts)), 1)
}

// preload writes every key once from a random host, and fails if any write
// fails (PutValue fails only on local errors or a failed lookup).
func (k *kadNet) preload(ctx context.Context, keys []string, size int) error {
	var next atomic.Int64
	errs := make([]error, 32)
	var wg sync.WaitGroup
	for w := range errs {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w)+100, 0x5eed))
			buf := make([]byte, size)
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(keys) {
					return
				}
				if err := k.dhts[rng.IntN(len(k.dhts))].PutValue(ctx, keys[i], shoalbench.KVValue(buf, -1, uint64(i))); err != nil {
					errs[w] = fmt.Errorf("PutValue %s: %w", keys[i], err)
					return
				}
			}
			errs[w] = ctx.Err()
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("writing the keys: %w", err)
	}
	return nil
}

func figures(r load.Result) (ops int, perS, p50us, p99us float64) {
	return r.Ops, round(r.OpsPerSec(), 0), micros(r.Percentile(50)), micros(r.Percentile(99))
}

func summary(name string, r load.Result) string {
	return fmt.Sprintf("%s: %d calls, %.0f/s, p50 %v, p99 %v", name, r.Ops, r.OpsPerSec(),
		r.Percentile(50).Round(time.Microsecond), r.Percentile(99).Round(time.Microsecond))
}

func micros(d time.Duration) float64 { return round(float64(d)/float64(time.Microsecond), 1) }

func round(v float64, places int) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}

func (r *kvComparison) writeText(w io.Writer) error {
	met := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "kv: %d nodes each, %d keys of %d B, %d callers, %.1fs measured per phase; GOMAXPROCS %d, load %.2f\n",
		r.Nodes, r.Keys, r.ValueBytes, r.Concurrency, r.DurationS, r.GOMAXPROCS, r.LoadAvg1m)
	fmt.Fprintf(&b, "  %-10s %12s %12s %12s %12s\n", "", "put p50 µs", "put p99 µs", "get p50 µs", "get p99 µs")
	fmt.Fprintf(&b, "  %-10s %12.1f %12.1f %12.1f %12.1f\n", "shoal", r.ShoalPutP50us, r.ShoalPutP99us, r.ShoalGetP50us, r.ShoalGetP99us)
	fmt.Fprintf(&b, "  %-10s %12.1f %12.1f %12.1f %12.1f\n", "kad-dht", r.KadPutP50us, r.KadPutP99us, r.KadGetP50us, r.KadGetP99us)
	fmt.Fprintf(&b, "  speedup (kad/shoal p50): put %.2fx (goal >= %.0fx: %s), get %.2fx (goal >= %.0fx: %s)\n",
		r.PutSpeedup, goalPutSpeedup, met(r.GoalPutMet), r.GetSpeedup, goalGetSpeedup, met(r.GoalGetMet))
	fmt.Fprintf(&b, "  same run: bare libp2p round trip p50 %.1f µs, fsync p50 %.1f µs; kad routing tables: min %d, mean %.1f\n",
		r.BareRTTP50us, r.FsyncP50us, r.KadRTMin, r.KadRTMean)
	fmt.Fprintf(&b, "  shoal's disk: two fsyncs at once p50 %.1f µs, %d at once %.1f µs; %.2f log writes per Put (%s); Go scheduler p90 in its put phase %.1f µs\n",
		r.FsyncPairP50us, 2*r.Concurrency, r.FsyncLoadedP50us, r.ShoalPutSyncsPerOp, r.ShoalLogWrites, r.ShoalPutSchedP90us)
	fmt.Fprintf(&b, "  shoal: %s\n  kad-dht: %s\n", r.ShoalSemantics, r.KadSemantics)
	_, err := io.WriteString(w, b.String())
	return err
}
