package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/shoal-p2p/shoal/internal/bench"
)

func init() {
	benchCases = append(benchCases, benchCase{name: "kv",
		summary: "Get, Put and CAS on a loopback ring with durable stores, against one bare libp2p round trip and one fsync",
		run:     runBenchKV})
}

func runBenchKV(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench kv", "[--nodes N] [--keys K] [--value BYTES] [--concurrency C] [--duration D] [--warmup D] [--dir DIR] [--json]", stderr)
	d := bench.DefaultKVConfig()
	var cfg bench.KVConfig
	fs.IntVar(&cfg.Nodes, "nodes", d.Nodes, "ring size (3 to 100)")
	fs.IntVar(&cfg.Keys, "keys", d.Keys, "keys written before measuring; each operation picks one at random")
	fs.IntVar(&cfg.Value, "value", d.Value, "value size in bytes (also the bare round trip's payload)")
	fs.IntVar(&cfg.Concurrency, "concurrency", d.Concurrency, "concurrent callers, each from a random node per operation")
	fs.DurationVar(&cfg.Duration, "duration", d.Duration, "measured window of each phase (fsync, fsync pair, fsync loaded, bare, bare with 1 caller, get, put, cas)")
	fs.DurationVar(&cfg.Warmup, "warmup", d.Warmup, "unmeasured warm-up before each phase's window")
	fs.StringVar(&cfg.Dir, "dir", "", "where to make the nodes' temporary data directories: the disk to measure (default $TMPDIR or /tmp); on tmpfs (/dev/shm) the figures are the stack without a disk, and the put and cas goals are not judged")
	verbose := fs.Bool("verbose", false, "log the nodes' kv debug messages to stderr")
	asJSON := fs.Bool("json", false, "print the result as one JSON line")
	profile := fs.String("cpuprofile", "", "write a CPU profile of each phase to `PREFIX`-get.pprof, -put.pprof, -cas.pprof, -bare.pprof and -fsync.pprof")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
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
	if cfg.Warmup == 0 {
		cfg.Warmup = 1 // KVConfig reads 0 as "default"; 1ns is no warm-up.
	}
	cfg.Progress = func(s string) { fmt.Fprintln(stderr, "bench kv:", s) }
	if *verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if *profile != "" {
		cfg.AroundCase = cpuProfiler(*profile, stderr)
	}
	res, err := bench.KV(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		return res.WriteJSON(stdout)
	}
	return res.WriteText(stdout)
}
