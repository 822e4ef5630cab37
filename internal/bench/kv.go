package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/internal/bench/load"
	"github.com/shoal-p2p/shoal/kv"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/transport"
	"github.com/shoal-p2p/shoal/transport/p2p/p2pbench"
)

// Goals of the kv case (issue 4): Get p50 within GoalGetRatio bare
// round trips; Put and CAS p50 within GoalPutRatio bare round trips plus
// one fsync.
const (
	GoalGetRatio = 3.0
	GoalPutRatio = 6.0
)

// KVConfig configures the kv case. Zero fields take DefaultKVConfig's
// values. The bench/ module runs the same workload on go-libp2p-kad-dht
// from the same config, so both are driven alike.
type KVConfig struct {
	// Nodes is the ring size. Default 10; 3 to 100.
	Nodes int
	// Keys is the number of keys written before measuring; every
	// operation picks one of them at random. Default 1000; at least
	// Concurrency (each caller has keys of its own).
	Keys int
	// Value is the size of every value written, in bytes. Default 100.
	Value int
	// Concurrency is the number of callers, each with one operation in
	// flight, each picking a random node per operation and a random key of
	// its own share (KVPick). Default 4. The bare round trip, the yardstick
	// of the goals, is measured with as many callers (and once more with
	// one, for reference); the fsync probe uses one.
	Concurrency int
	// Warmup precedes each phase's measured window. Default 500ms.
	Warmup time.Duration
	// Duration is each phase's measured window. Default 3s. The run has
	// eight phases (fsync, fsync pair, fsync loaded, bare, bare with one
	// caller, get, put, cas) plus setup; seven with one caller.
	Duration time.Duration
	// Dir is where the nodes' data directories are made (in a new temporary
	// directory, removed afterwards). It should be on the disk being
	// measured: the store fsyncs, and so does the fsync probe. Default
	// os.TempDir().
	Dir string
	// Progress, if set, receives one line per step (for stderr).
	Progress func(string)
	// Logger, if set, receives the nodes' kv logs (nil discards them).
	Logger *slog.Logger
	// AroundCase, if set, is called as each phase ("fsync", "bare", "get",
	// "put", "cas") starts, and the function it returns as it ends: a hook
	// to take one CPU profile per phase.
	AroundCase func(name string) (end func())
}

// DefaultKVConfig is `shoal bench kv` without flags.
func DefaultKVConfig() KVConfig {
	return KVConfig{Nodes: 10, Keys: 1000, Value: 100, Concurrency: 4, Warmup: 500 * time.Millisecond, Duration: 3 * time.Second}
}

// WithDefaults fills zero fields from DefaultKVConfig.
func (c KVConfig) WithDefaults() KVConfig {
	d := DefaultKVConfig()
	if c.Nodes == 0 {
		c.Nodes = d.Nodes
	}
	if c.Keys == 0 {
		c.Keys = d.Keys
	}
	if c.Value == 0 {
		c.Value = d.Value
	}
	if c.Concurrency == 0 {
		c.Concurrency = d.Concurrency
	}
	if c.Warmup == 0 {
		c.Warmup = d.Warmup
	}
	if c.Duration == 0 {
		c.Duration = d.Duration
	}
	if c.Dir == "" {
		c.Dir = os.TempDir()
	}
	if c.Progress == nil {
		c.Progress = func(string) {}
	}
	return c
}

// Validate reports the first setting that cannot work. Zero values are
// valid: they mean the default.
func (c KVConfig) Validate() error {
	switch {
	case c.Nodes != 0 && (c.Nodes < 3 || c.Nodes > 100):
		return fmt.Errorf("bench: Nodes must be in [3, 100], got %d", c.Nodes)
	case c.Keys < 0 || c.Keys > 1_000_000:
		return fmt.Errorf("bench: Keys must be in [1, 1000000], got %d", c.Keys)
	case c.Value < 0 || c.Value > 512<<10:
		return fmt.Errorf("bench: Value must be in [1, %d] bytes, got %d", 512<<10, c.Value)
	case c.Concurrency < 0 || c.Concurrency > 1024:
		return fmt.Errorf("bench: Concurrency must be in [1, 1024], got %d", c.Concurrency)
	case c.Warmup < 0:
		return fmt.Errorf("bench: Warmup must be >= 0, got %v", c.Warmup)
	case c.Duration < 0:
		return fmt.Errorf("bench: Duration must be > 0, got %v", c.Duration)
	}
	if d := c.WithDefaults(); d.Keys < d.Concurrency {
		return fmt.Errorf("bench: Keys (%d) must be at least Concurrency (%d)", d.Keys, d.Concurrency)
	}
	return nil
}

// KVKey is the i-th key of the workload, on Shoal and on kad-dht alike.
func KVKey(i int) string { return fmt.Sprintf("bench-%06d", i) }

// KVValue fills buf with a value of its length that names the writer and
// its sequence number, so successive writes differ.
func KVValue(buf []byte, worker int, seq uint64) []byte {
	tag := fmt.Sprintf("w%d-%d-", worker, seq)
	for i := range buf {
		buf[i] = tag[i%len(tag)]
	}
	return buf
}

// KVResult is what one kv run measured, printed by --json as one line.
// Latencies are in microseconds, throughputs in completed operations per
// second over the measured window.
type KVResult struct {
	Bench       string  `json:"bench"` // "kv"
	Nodes       int     `json:"nodes"`
	Replicas    int     `json:"replicas"`
	Keys        int     `json:"keys"`
	ValueBytes  int     `json:"value_bytes"`
	Concurrency int     `json:"concurrency"`
	WarmupS     float64 `json:"warmup_s"`
	DurationS   float64 `json:"duration_s"`
	GOMAXPROCS  int     `json:"gomaxprocs"`
	DataDir     string  `json:"data_dir"` // parent of the nodes' temporary data directories
	// DataInMemory: DataDir is on tmpfs or ramfs. The figures then show the
	// stack without a disk (fsync is free and keeps nothing), and the Put
	// and CAS goals, which include one fsync, are not judged (reported
	// false).
	DataInMemory bool    `json:"data_in_memory"`
	SetupS       float64 `json:"setup_s"` // start, settle and preload
	// LoadAvg1m is the machine's 1-minute load average as the run began
	// (0 where unknown): figures from a busy machine are not comparable.
	LoadAvg1m float64 `json:"loadavg_1m"`

	GetOps     int     `json:"get_ops"`
	GetOpsPerS float64 `json:"get_ops_per_s"`
	GetP50us   float64 `json:"get_p50_us"`
	GetP99us   float64 `json:"get_p99_us"`

	PutOps     int     `json:"put_ops"`
	PutOpsPerS float64 `json:"put_ops_per_s"`
	PutP50us   float64 `json:"put_p50_us"`
	PutP99us   float64 `json:"put_p99_us"`

	CASOps     int     `json:"cas_ops"` // mismatches included
	CASOpsPerS float64 `json:"cas_ops_per_s"`
	CASP50us   float64 `json:"cas_p50_us"`
	CASP99us   float64 `json:"cas_p99_us"`
	// CASMismatches counts compare-and-sets refused for a stale version
	// (inside and outside the window). Each caller has keys of its own and
	// knows their versions, so anything above 0 is a surprise.
	CASMismatches int64 `json:"cas_mismatches"`

	// The bare libp2p round trip, new stream per request, with Concurrency
	// callers like the get, put and cas phases (as the services issue's
	// bare figure is measured with its callers): the ratios and goals
	// divide by its p50, so that both sides of a ratio carry the same
	// offered load on the same processors.
	BareOps      int     `json:"bare_ops"`
	BareRTTP50us float64 `json:"bare_rtt_p50_us"`
	BareRTTP99us float64 `json:"bare_rtt_p99_us"`
	// BareRTT1P50us is the same round trip with one caller (equal to
	// BareRTTP50us when Concurrency is 1): the unloaded figure, to compare
	// a --concurrency 1 run with.
	BareRTT1P50us float64 `json:"bare_rtt_1caller_p50_us"`
	Security      string  `json:"security"`
	Muxer         string  `json:"muxer"`

	FsyncOps   int     `json:"fsync_ops"`
	FsyncP50us float64 `json:"fsync_p50_us"` // one small write + fsync in the data directory
	FsyncP99us float64 `json:"fsync_p99_us"`

	// The disk, measured in the same run, because with every node's log on
	// it (one machine) it is what Put and CAS wait on:
	// FsyncPairP50us: two files written and fsynced at the same moment,
	// until both are durable (a Put's two synchronous log writes, its
	// owner's and a replica's, when both nodes share the disk).
	FsyncPairP50us float64 `json:"fsync_pair_p50_us"`
	// FsyncLoadedP50us and DiskSyncsPerS: 2 × Concurrency files (the
	// synchronous log writes the put phase keeps in flight, two per Put),
	// each written and fsynced back to back: the p50 of one write, and the
	// writes completed per second by all.
	FsyncLoadedP50us float64 `json:"fsync_loaded_p50_us"`
	DiskSyncsPerS    float64 `json:"disk_syncs_per_s"`
	// PutSyncsPerOp: the nodes' log writes (group commits, each one
	// synchronous write) during the put phase, divided by the Puts in it.
	PutSyncsPerOp float64 `json:"put_syncs_per_op"`
	// LogWrites is how the nodes' logs write (kv.LogStats.Writes):
	// "io_uring", "pwrite" or "buffered".
	LogWrites string `json:"log_writes"`
	// PutSchedP90us is the Go scheduler's p90 latency during the put
	// phase: how long a goroutine that could run waited for a processor
	// (runtime/metrics /sched/latencies:seconds, all nodes: one process).
	PutSchedP90us float64 `json:"put_sched_p90_us"`

	GetRatio   float64 `json:"get_ratio"` // get_p50_us / bare_rtt_p50_us
	PutRatio   float64 `json:"put_ratio"`
	CASRatio   float64 `json:"cas_ratio"`
	GetGoalUs  float64 `json:"get_goal_us"` // GoalGetRatio × bare
	PutGoalUs  float64 `json:"put_goal_us"` // GoalPutRatio × bare + fsync; CAS too
	GoalGetMet bool    `json:"goal_get_met"`
	GoalPutMet bool    `json:"goal_put_met"`
	GoalCASMet bool    `json:"goal_cas_met"`
}

// KV measures Shoal's store on a loopback ring, and beside it the two
// things its goals are stated in, all in one run and one after the other
// so they do not compete for CPU:
//
//  1. fsync: one small write plus fsync of a file in the data directory,
//     one caller; then two files at once (a Put's owner and replica writing
//     to one shared disk), and 2 × cfg.Concurrency files at once, back to
//     back (the writes the put phase keeps in flight).
//  2. bare: the libp2p new-stream request/response round trip
//     (p2pbench.NewStream), a Value-sized payload, with cfg.Concurrency
//     callers like the phases it is the yardstick of, then with one.
//  3. a ring of cfg.Nodes nodes over transport/p2p on 127.0.0.1/tcp ('local'
//     ring profile), each with kv on its own log store (kv.OpenLog), joining one at a
//     time (startKVRing); cfg.Keys keys are written and read back, then
//     three phases from
//     cfg.Concurrency callers, each operation from a random node on a
//     random key of the caller's own share (KVPick): get (linearizable
//     Get), put (unconditional Put) and cas (Put with IfVersion of the
//     key's last written version).
//
// Each phase gets cfg.Warmup then cfg.Duration. ctx bounds the whole run.
func KV(ctx context.Context, cfg KVConfig) (*KVResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	res := &KVResult{Bench: "kv", Nodes: cfg.Nodes, Replicas: kv.DefaultConfig().Replicas, Keys: cfg.Keys,
		ValueBytes: cfg.Value, Concurrency: cfg.Concurrency, WarmupS: cfg.Warmup.Seconds(),
		DurationS: cfg.Duration.Seconds(), GOMAXPROCS: runtime.GOMAXPROCS(0), DataDir: cfg.Dir, DataInMemory: inMemory(cfg.Dir), LoadAvg1m: LoadAvg()}
	dir, err := os.MkdirTemp(cfg.Dir, "shoal-bench-kv-")
	if err != nil {
		return nil, fmt.Errorf("bench: data directory: %w", err)
	}
	defer os.RemoveAll(dir)

	one := load.Config{Concurrency: 1, Warmup: cfg.Warmup, Duration: cfg.Duration}
	phaseTimeout := cfg.Warmup + cfg.Duration + 30*time.Second
	window := fmt.Sprintf("warm-up %v, measuring %v", cfg.Warmup, cfg.Duration)

	cfg.Progress("fsync: small write + fsync in " + dir + ", 1 caller, " + window)
	pctx, cancel := context.WithTimeout(ctx, phaseTimeout)
	end := aroundPhase(cfg.AroundCase, "fsync")
	fs, err := fsyncProbe(pctx, one, dir)
	end()
	cancel()
	if err != nil {
		return nil, fmt.Errorf("fsync probe: %w", err)
	}
	res.FsyncOps, _, res.FsyncP50us, res.FsyncP99us = figures(fs)
	cfg.Progress(summary("fsync", fs))

	cfg.Progress("fsync pair: two files written + fsynced at the same moment, until both are durable, " + window)
	pctx, cancel = context.WithTimeout(ctx, phaseTimeout)
	pair, err := fsyncPairProbe(pctx, one, dir)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("fsync pair probe: %w", err)
	}
	_, _, res.FsyncPairP50us, _ = figures(pair)
	cfg.Progress(summary("fsync pair", pair))

	files := 2 * cfg.Concurrency
	cfg.Progress(fmt.Sprintf("fsync loaded: small write + fsync, %d files written at once, back to back, %s", files, window))
	pctx, cancel = context.WithTimeout(ctx, phaseTimeout)
	disk, err := diskProbe(pctx, load.Config{Concurrency: files, Warmup: cfg.Warmup, Duration: cfg.Duration}, dir)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("loaded fsync probe: %w", err)
	}
	_, res.DiskSyncsPerS, res.FsyncLoadedP50us, _ = figures(disk)
	cfg.Progress(summary("fsync loaded", disk))

	lc := load.Config{Concurrency: cfg.Concurrency, Warmup: cfg.Warmup, Duration: cfg.Duration}
	cfg.Progress(fmt.Sprintf("bare: two libp2p hosts, new stream per request, %d callers (as the phases below), %s", cfg.Concurrency, window))
	pctx, cancel = context.WithTimeout(ctx, phaseTimeout)
	end = aroundPhase(cfg.AroundCase, "bare")
	bare, err := p2pbench.NewStream(pctx, p2pbench.Options{Load: lc, Payload: cfg.Value})
	end()
	cancel()
	if err != nil {
		return nil, fmt.Errorf("bare case: %w", err)
	}
	res.Security, res.Muxer = bare.Security, bare.Muxer
	res.BareOps, _, res.BareRTTP50us, res.BareRTTP99us = figures(bare.Result)
	res.BareRTT1P50us = res.BareRTTP50us
	cfg.Progress(summary("bare", bare.Result))
	if cfg.Concurrency > 1 {
		cfg.Progress("bare, 1 caller (for reference): " + window)
		pctx, cancel = context.WithTimeout(ctx, phaseTimeout)
		bare1, err := p2pbench.NewStream(pctx, p2pbench.Options{Load: one, Payload: cfg.Value})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("bare case, 1 caller: %w", err)
		}
		_, _, res.BareRTT1P50us, _ = figures(bare1.Result)
		cfg.Progress(summary("bare, 1 caller", bare1.Result))
	}

	t0 := time.Now()
	r, err := startKVRing(ctx, cfg, dir)
	if r != nil {
		defer r.close()
	}
	if err != nil {
		return nil, err
	}
	res.SetupS = round(time.Since(t0).Seconds(), 2)
	res.LogWrites = r.logs[0].Stats().Writes

	phases := []struct {
		name string
		op   func(ctx context.Context, w *kvWorker) error
		dst  func(load.Result)
	}{
		{"get", r.get, func(l load.Result) { res.GetOps, res.GetOpsPerS, res.GetP50us, res.GetP99us = figures(l) }},
		{"put", r.put, func(l load.Result) { res.PutOps, res.PutOpsPerS, res.PutP50us, res.PutP99us = figures(l) }},
		{"cas", r.cas, func(l load.Result) { res.CASOps, res.CASOpsPerS, res.CASP50us, res.CASP99us = figures(l) }},
	}
	for _, ph := range phases {
		cfg.Progress(fmt.Sprintf("%s: %d callers, random node and key, %s", ph.name, cfg.Concurrency, window))
		pctx, cancel := context.WithTimeout(ctx, phaseTimeout)
		end := aroundPhase(cfg.AroundCase, ph.name)
		var calls atomic.Int64
		groups := r.logGroups()
		sched0 := schedLatencies()
		l, err := load.Run(pctx, lc, func(ctx context.Context, w int) error {
			calls.Add(1)
			return ph.op(ctx, r.workers[w])
		})
		groups = r.logGroups() - groups
		if ph.name == "put" {
			res.PutSchedP90us = round(schedQuantile(sched0, schedLatencies(), 0.9)*1e6, 1)
		}
		end()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s phase: %w", ph.name, err)
		}
		ph.dst(l)
		if ph.name == "put" && calls.Load() > 0 {
			res.PutSyncsPerOp = round(float64(groups)/float64(calls.Load()), 2)
		}
		cfg.Progress(summary(ph.name, l))
	}
	res.CASMismatches = r.mismatches.Load()
	res.finish()
	cfg.Progress("closing the ring")
	return res, nil
}

// schedLatencies reads the Go scheduler's latency histogram.
func schedLatencies() *metrics.Float64Histogram {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return nil
	}
	return s[0].Value.Float64Histogram()
}

// schedQuantile returns the q quantile, in seconds, of the latencies
// recorded between two readings of the histogram (the upper bound of the
// bucket it falls in), or 0 if there were none.
func schedQuantile(before, after *metrics.Float64Histogram, q float64) float64 {
	if before == nil || after == nil || len(before.Counts) != len(after.Counts) {
		return 0
	}
	var total uint64
	for i := range after.Counts {
		total += after.Counts[i] - before.Counts[i]
	}
	if total == 0 {
		return 0
	}
	var acc uint64
	for i := range after.Counts {
		acc += after.Counts[i] - before.Counts[i]
		if float64(acc) >= q*float64(total) {
			if hi := after.Buckets[i+1]; !math.IsInf(hi, 1) {
				return hi
			}
			return after.Buckets[i]
		}
	}
	return 0
}

// LoadAvg returns the 1-minute load average from /proc/loadavg, or 0 where
// there is none.
func LoadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _, _ := strings.Cut(string(b), " ")
	v, _ := strconv.ParseFloat(f, 64)
	return v
}

// finish computes the ratios and goals from the figures.
func (r *KVResult) finish() {
	r.GetRatio = round(r.GetP50us/r.BareRTTP50us, 2)
	r.PutRatio = round(r.PutP50us/r.BareRTTP50us, 2)
	r.CASRatio = round(r.CASP50us/r.BareRTTP50us, 2)
	r.GetGoalUs = round(GoalGetRatio*r.BareRTTP50us, 1)
	r.PutGoalUs = round(GoalPutRatio*r.BareRTTP50us+r.FsyncP50us, 1)
	r.GoalGetMet = r.GetOps > 0 && r.GetP50us <= r.GetGoalUs
	r.GoalPutMet = r.PutOps > 0 && r.PutP50us <= r.PutGoalUs && !r.DataInMemory
	r.GoalCASMet = r.CASOps > 0 && r.CASP50us <= r.PutGoalUs && !r.DataInMemory
}

func aroundPhase(f func(string) func(), name string) func() {
	if f == nil {
		return func() {}
	}
	if end := f(name); end != nil {
		return end
	}
	return func() {}
}

// syncFile is a probe file in the data directory: each write puts a small
// block at its start and fsyncs it.
type syncFile struct {
	f   *os.File
	buf []byte
	n   uint64
}

// openSyncFiles creates n probe files named prefix-i in dir; closeAll
// closes those it made, also on error.
func openSyncFiles(dir, prefix string, n int) (files []*syncFile, closeAll func(), err error) {
	closeAll = func() {
		for _, s := range files {
			s.f.Close()
		}
	}
	for i := range n {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d", prefix, i)))
		if err != nil {
			closeAll()
			return nil, func() {}, err
		}
		files = append(files, &syncFile{f: f, buf: make([]byte, 128)})
	}
	return files, closeAll, nil
}

func (s *syncFile) write(w int) error {
	s.n++
	if _, err := s.f.WriteAt(KVValue(s.buf, w, s.n), 0); err != nil {
		return err
	}
	return s.f.Sync()
}

// fsyncProbe times one small write at the start of a file followed by
// fsync, in dir.
func fsyncProbe(ctx context.Context, lc load.Config, dir string) (load.Result, error) {
	fs, closeAll, err := openSyncFiles(dir, "fsync-probe", 1)
	if err != nil {
		return load.Result{}, err
	}
	defer closeAll()
	return load.Run(ctx, lc, func(context.Context, int) error { return fs[0].write(0) })
}

// fsyncPairProbe times two small writes, each followed by fsync, to two
// files in dir, started at the same moment: until both are durable.
func fsyncPairProbe(ctx context.Context, lc load.Config, dir string) (load.Result, error) {
	fs, closeAll, err := openSyncFiles(dir, "fsync-pair", 2)
	if err != nil {
		return load.Result{}, err
	}
	defer closeAll()
	return load.Run(ctx, lc, func(context.Context, int) error {
		done := make(chan error, 1)
		go func() { done <- fs[1].write(1) }()
		return errors.Join(fs[0].write(0), <-done)
	})
}

// diskProbe has lc.Concurrency callers each write a small block to a file
// of its own in dir and fsync it, back to back: the disk's rate of
// synchronous writes when that many files share it.
func diskProbe(ctx context.Context, lc load.Config, dir string) (load.Result, error) {
	fs, closeAll, err := openSyncFiles(dir, "disk-probe", lc.Concurrency)
	if err != nil {
		return load.Result{}, err
	}
	defer closeAll()
	return load.Run(ctx, lc, func(_ context.Context, w int) error { return fs[w].write(w) })
}

// kvRing is the ring the kv phases run on.
type kvRing struct {
	nodes      []*node.Node
	stores     []*kv.KV
	logs       []*kv.LogStore
	keys       []string
	versions   []atomic.Uint64 // highest version written or read per key
	workers    []*kvWorker
	mismatches atomic.Int64
}

// kvWorker is one caller's state; a worker never runs two operations at
// once.
type kvWorker struct {
	n   int // worker number
	rng *rand.Rand
	buf []byte
	seq uint64
}

// startKVRing starts the nodes and their stores one at a time, the first
// as the genesis node and each other joining through it, and after each
// join waits until a key owned by every node can be written: the new node
// and its neighbours have synchronised the ranges the join moved. (Nodes
// joining while earlier ones are still synchronising can leave ranges that
// no replica may serve; one at a time avoids that.) Then it writes and
// reads back every key. It returns the ring (to close) even on error.
func startKVRing(ctx context.Context, cfg KVConfig, dir string) (*kvRing, error) {
	setup, cancel := context.WithTimeout(ctx, setupTimeout+time.Duration(cfg.Nodes)*5*time.Second+time.Duration(cfg.Keys)*5*time.Millisecond)
	defer cancel()
	cfg.Progress(fmt.Sprintf("ring: starting %d nodes on 127.0.0.1 one at a time, kv on log stores under %s", cfg.Nodes, dir))
	r := &kvRing{keys: make([]string, cfg.Keys), versions: make([]atomic.Uint64, cfg.Keys)}
	var boot []transport.Peer
	for i := range cfg.Nodes {
		t0 := time.Now()
		n, err := startNode(setup, boot)
		if err != nil {
			return r, fmt.Errorf("start node %d: %w", i+1, err)
		}
		r.nodes = append(r.nodes, n)
		if i == 0 {
			boot = []transport.Peer{n.Self()}
		}
		store, err := kv.OpenLog(filepath.Join(dir, fmt.Sprintf("node-%03d", i+1)), kv.LogConfig{})
		if err != nil {
			return r, err
		}
		k, err := kv.New(n, kv.Config{Store: store, Genesis: i == 0, Logger: cfg.Logger})
		if err != nil {
			store.Close()
			return r, fmt.Errorf("kv on node %d: %w", i+1, err)
		}
		r.stores = append(r.stores, k)
		r.logs = append(r.logs, store)
		if err := waitSettled(setup, r.nodes); err != nil {
			return r, err
		}
		if err := r.probe(setup); err != nil {
			return r, fmt.Errorf("after node %d joined: %w", i+1, err)
		}
		cfg.Progress(fmt.Sprintf("ring: node %d of %d (%s) joined, ranges synchronised, in %v",
			i+1, cfg.Nodes, n.ID().Short(), time.Since(t0).Round(time.Millisecond)))
	}
	for i := range r.keys {
		r.keys[i] = KVKey(i)
	}
	for w := range cfg.Concurrency {
		r.workers = append(r.workers, &kvWorker{n: w, rng: rand.New(rand.NewPCG(uint64(w)+1, 0x5eed)), buf: make([]byte, cfg.Value)})
	}
	cfg.Progress(fmt.Sprintf("ring: writing and reading back %d keys", cfg.Keys))
	if err := r.preload(setup, cfg); err != nil {
		return r, err
	}
	return r, nil
}

// probe writes, for every node, a key it owns (by the global view), each
// from another node, retrying until every write succeeds or ctx ends.
func (r *kvRing) probe(ctx context.Context) error {
	ids := make([]id.ID, len(r.nodes))
	for i, n := range r.nodes {
		ids[i] = n.ID()
	}
	errs := make([]error, len(r.nodes))
	var wg sync.WaitGroup
	for j := range r.nodes {
		key := ""
		for c := 0; key == ""; c++ {
			if k := fmt.Sprintf("probe-%d-%d", j, c); id.Closest(kv.KeyID(k), ids) == j {
				key = k
			}
		}
		from := r.stores[(j+1)%len(r.stores)]
		wg.Go(func() {
			var last error
			for ctx.Err() == nil {
				actx, cancel := context.WithTimeout(ctx, 3*time.Second)
				_, last = from.Put(actx, key, []byte("probe"))
				cancel()
				if last == nil {
					return
				}
				sleep(ctx, 50*time.Millisecond)
			}
			errs[j] = fmt.Errorf("cannot write %q, owned by node %d (%s): %v: %w", key, j+1, ids[j].Short(), last, ctx.Err())
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// preload writes every key from a random node and reads it back from
// another, retrying each until it succeeds or ctx ends.
func (r *kvRing) preload(ctx context.Context, cfg KVConfig) error {
	t0 := time.Now()
	next := atomic.Int64{}
	var retries atomic.Int64
	errs := make([]error, max(cfg.Concurrency, 32))
	var wg sync.WaitGroup
	for w := range errs {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w)+100, 0x5eed))
			buf := make([]byte, cfg.Value)
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(r.keys) {
					return
				}
				val := KVValue(buf, -1, uint64(i))
				for attempt := 0; ; attempt++ {
					err := r.putGet(ctx, rng, i, val)
					if err == nil {
						break
					}
					if ctx.Err() != nil {
						errs[w] = fmt.Errorf("key %q not stored: %v: %w", r.keys[i], err, ctx.Err())
						return
					}
					retries.Add(1)
					sleep(ctx, 20*time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("preload: %w", err)
	}
	cfg.Progress(fmt.Sprintf("ring: %d keys stored and read back in %v (%d retries)", len(r.keys), time.Since(t0).Round(time.Millisecond), retries.Load()))
	return nil
}

func (r *kvRing) putGet(ctx context.Context, rng *rand.Rand, i int, val []byte) error {
	v, err := r.stores[rng.IntN(len(r.stores))].Put(ctx, r.keys[i], val)
	if err != nil {
		return err
	}
	it, err := r.stores[rng.IntN(len(r.stores))].Get(ctx, r.keys[i])
	if err != nil {
		return err
	}
	if it.Version < v || len(it.Value) != len(val) {
		return fmt.Errorf("read back version %d (%d bytes) after writing version %d (%d bytes)", it.Version, len(it.Value), v, len(val))
	}
	r.saw(i, it.Version)
	return nil
}

// saw records that key i has reached version v.
func (r *kvRing) saw(i int, v uint64) {
	for {
		cur := r.versions[i].Load()
		if v <= cur || r.versions[i].CompareAndSwap(cur, v) {
			return
		}
	}
}

// KVPick returns a random key index from worker's share of keys keys
// among workers callers: the i with i mod workers = worker. Each caller
// works on its own keys, so no two operations on one key overlap and the
// phases measure latency rather than queueing behind a key's leader.
func KVPick(rng *rand.Rand, worker, workers, keys int) int {
	return worker + workers*rng.IntN((keys-worker+workers-1)/workers)
}

func (r *kvRing) get(ctx context.Context, w *kvWorker) error {
	i := KVPick(w.rng, w.n, len(r.workers), len(r.keys))
	it, err := r.stores[w.rng.IntN(len(r.stores))].Get(ctx, r.keys[i])
	if err != nil {
		return fmt.Errorf("get %q: %w", r.keys[i], err)
	}
	r.saw(i, it.Version)
	return nil
}

func (r *kvRing) put(ctx context.Context, w *kvWorker) error {
	i := KVPick(w.rng, w.n, len(r.workers), len(r.keys))
	w.seq++
	v, err := r.stores[w.rng.IntN(len(r.stores))].Put(ctx, r.keys[i], KVValue(w.buf, w.n, w.seq))
	if err != nil {
		return fmt.Errorf("put %q: %w", r.keys[i], err)
	}
	r.saw(i, v)
	return nil
}

// cas writes one of the worker's keys with IfVersion of its last known
// version. A mismatch is counted, teaches the current version and is not an
// error.
func (r *kvRing) cas(ctx context.Context, w *kvWorker) error {
	i := KVPick(w.rng, w.n, len(r.workers), len(r.keys))
	w.seq++
	v, err := r.stores[w.rng.IntN(len(r.stores))].Put(ctx, r.keys[i], KVValue(w.buf, w.n, w.seq), kv.IfVersion(r.versions[i].Load()))
	var vm *kv.VersionMismatchError
	switch {
	case errors.As(err, &vm):
		r.mismatches.Add(1)
		r.saw(i, vm.Have)
		return nil
	case err != nil:
		return fmt.Errorf("cas %q: %w", r.keys[i], err)
	}
	r.saw(i, v)
	return nil
}

// logGroups is the number of log writes (group commits) of all nodes so
// far.
func (r *kvRing) logGroups() uint64 {
	var n uint64
	for _, l := range r.logs {
		n += l.Stats().Groups
	}
	return n
}

// close stops every store, then every node, all at once.
func (r *kvRing) close() {
	var wg sync.WaitGroup
	for _, k := range r.stores {
		wg.Go(func() { k.Close() })
	}
	wg.Wait()
	for _, n := range r.nodes {
		wg.Go(func() { n.Close() })
	}
	wg.Wait()
}

// WriteJSON writes r as one JSON line.
func (r *KVResult) WriteJSON(w io.Writer) error { return json.NewEncoder(w).Encode(r) }

// WriteText writes r as a short table.
func (r *KVResult) WriteText(w io.Writer) error {
	met := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "kv: %d nodes (r=%d) on 127.0.0.1, %d keys of %d B, %d callers; %v measured after %v warm-up; GOMAXPROCS %d, load %.2f\n",
		r.Nodes, r.Replicas, r.Keys, r.ValueBytes, r.Concurrency, seconds(r.DurationS), seconds(r.WarmupS), r.GOMAXPROCS, r.LoadAvg1m)
	fmt.Fprintf(&b, "  %-44s %10s %10s %10s %8s\n", "", "ops/s", "p50 µs", "p99 µs", "p50/bare")
	row := func(name string, perS, p50, p99, ratio float64) {
		fmt.Fprintf(&b, "  %-44s %10.0f %10.1f %10.1f %8.2f\n", name, perS, p50, p99, ratio)
	}
	row("get (linearizable)", r.GetOpsPerS, r.GetP50us, r.GetP99us, r.GetRatio)
	row("put", r.PutOpsPerS, r.PutP50us, r.PutP99us, r.PutRatio)
	row(fmt.Sprintf("cas (%d mismatches)", r.CASMismatches), r.CASOpsPerS, r.CASP50us, r.CASP99us, r.CASRatio)
	fmt.Fprintf(&b, "  bare libp2p new-stream round trip, %d callers: p50 %.1f µs, p99 %.1f µs (%s, %s); 1 caller: p50 %.1f µs\n",
		r.Concurrency, r.BareRTTP50us, r.BareRTTP99us, r.Security, r.Muxer, r.BareRTT1P50us)
	fmt.Fprintf(&b, "  small write + fsync in %s: p50 %.1f µs, p99 %.1f µs; two at once, until both are durable: p50 %.1f µs\n",
		r.DataDir, r.FsyncP50us, r.FsyncP99us, r.FsyncPairP50us)
	fmt.Fprintf(&b, "  %d files written + fsynced at once, back to back: p50 %.1f µs a write, %.0f writes/s; the put phase made %.2f log writes per Put (%s)\n",
		2*r.Concurrency, r.FsyncLoadedP50us, r.DiskSyncsPerS, r.PutSyncsPerOp, r.LogWrites)
	fmt.Fprintf(&b, "  Go scheduler latency during the put phase: p90 %.1f µs\n", r.PutSchedP90us)
	if r.DataInMemory {
		fmt.Fprintf(&b, "  goals: get p50 <= %.0fx bare = %.0f µs: %s; put and cas: not judged, %s is in memory (fsync keeps nothing): these figures are the stack without a disk\n",
			GoalGetRatio, r.GetGoalUs, met(r.GoalGetMet), r.DataDir)
	} else {
		fmt.Fprintf(&b, "  goals: get p50 <= %.0fx bare = %.0f µs: %s; put and cas p50 <= %.0fx bare + fsync = %.0f µs: put %s, cas %s\n",
			GoalGetRatio, r.GetGoalUs, met(r.GoalGetMet), GoalPutRatio, r.PutGoalUs, met(r.GoalPutMet), met(r.GoalCASMet))
		if !r.GoalPutMet || !r.GoalCASMet {
			fmt.Fprintf(&b, "  note: the %d nodes' logs share the one disk under %s, and every Put makes two synchronous log writes there (its owner's and a replica's);\n"+
				"  --dir /dev/shm shows the same run without the disk (docs/kv.md, \"Where the time goes\")\n", r.Nodes, r.DataDir)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
