package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/shoal-p2p/shoal/internal/bench"
)

func init() {
	register(command{name: "bench", summary: "measure Shoal on loopback: rpc, pubsub, kv, taskq (shoal bench CASE --json)", run: runBench})
}

// benchCase is one benchmark `shoal bench NAME` can run (rpc, pubsub, kv,
// taskq). Each parses its own flags, since the cases measure different
// things.
type benchCase struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var benchCases = []benchCase{
	{name: "rpc", summary: "service call between two nodes vs bare libp2p request/response", run: runBenchRPC},
}

func benchUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: shoal bench CASE [flags]\n\nCases:")
	for _, c := range benchCases {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'shoal bench CASE --help' for a case's flags.")
}

func runBench(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		benchUsage(stderr)
		return fmt.Errorf("%w: name a case, e.g. 'shoal bench rpc'", errUsage)
	}
	if a := args[0]; a == "help" || a == "-h" || a == "--help" {
		benchUsage(stdout)
		return nil
	}
	for _, c := range benchCases {
		if c.name == args[0] {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	benchUsage(stderr)
	return fmt.Errorf("%w: unknown case %q", errUsage, args[0])
}

func runBenchRPC(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench rpc", "[--json] [--duration D] [--warmup D] [--concurrency N] [--payload BYTES]", stderr)
	d := bench.DefaultRPCConfig()
	var cfg bench.RPCConfig
	fs.DurationVar(&cfg.Duration, "duration", d.Duration, "measured window of each case (Shoal, bare, floor)")
	fs.DurationVar(&cfg.Warmup, "warmup", d.Warmup, "unmeasured warm-up before each case's window")
	fs.IntVar(&cfg.Concurrency, "concurrency", d.Concurrency, "concurrent callers for the Shoal and bare cases (the floor uses 1)")
	fs.IntVar(&cfg.Payload, "payload", d.Payload, "request and reply size in bytes")
	asJSON := fs.Bool("json", false, "print the result as one JSON line")
	profile := fs.String("cpuprofile", "", "write a CPU profile of each case to `PREFIX`-shoal.pprof, -bare.pprof and -floor.pprof")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	case cfg.Duration <= 0:
		return fmt.Errorf("%w: --duration must be > 0, got %v", errUsage, cfg.Duration)
	case cfg.Warmup < 0:
		return fmt.Errorf("%w: --warmup must be >= 0, got %v", errUsage, cfg.Warmup)
	case cfg.Concurrency < 1:
		return fmt.Errorf("%w: --concurrency must be >= 1, got %d", errUsage, cfg.Concurrency)
	case cfg.Payload < 1:
		return fmt.Errorf("%w: --payload must be >= 1, got %d", errUsage, cfg.Payload)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if cfg.Warmup == 0 {
		cfg.Warmup = 1 // RPCConfig reads 0 as "default"; 1ns is no warm-up.
	}
	cfg.Progress = func(s string) { fmt.Fprintln(stderr, "bench rpc:", s) }
	if *profile != "" {
		cfg.AroundCase = cpuProfiler(*profile, stderr)
	}
	res, err := bench.RPC(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		return res.WriteJSON(stdout)
	}
	return res.WriteText(stdout)
}

// cpuProfiler returns a bench.RPCConfig.AroundCase that writes one CPU
// profile per case to prefix-NAME.pprof. Failures are reported on stderr and
// do not stop the benchmark.
func cpuProfiler(prefix string, stderr io.Writer) func(name string) func() {
	return func(name string) func() {
		path := prefix + "-" + name + ".pprof"
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintf(stderr, "bench: cpu profile: %v\n", err)
			return nil
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			fmt.Fprintf(stderr, "bench: cpu profile: %v\n", err)
			return nil
		}
		return func() {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				fmt.Fprintf(stderr, "bench: cpu profile %s: %v\n", path, err)
				return
			}
			fmt.Fprintf(stderr, "bench: wrote %s\n", path)
		}
	}
}
