package main

import (
	"context"
	"fmt"
	"io"

	"github.com/shoal-p2p/shoal/internal/bench"
)

func init() {
	benchCases = append(benchCases, benchCase{name: "taskq",
		summary: "enqueue and complete throughput of a task queue on a loopback ring, enqueue-to-start latency, lost and duplicated effects",
		run:     runBenchTaskQ})
}

func runBenchTaskQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench taskq", "[--nodes N] [--tasks T] [--producers P] [--worker-concurrency C] [--payload BYTES] [--dir DIR] [--json]", stderr)
	d := bench.DefaultTaskQConfig()
	var cfg bench.TaskQConfig
	fs.IntVar(&cfg.Nodes, "nodes", d.Nodes, "ring size (3 to 50); every node runs a worker")
	fs.IntVar(&cfg.Tasks, "tasks", d.Tasks, "tasks to enqueue")
	fs.IntVar(&cfg.Producers, "producers", d.Producers, "concurrent enqueuers")
	fs.IntVar(&cfg.WorkerConcurrency, "worker-concurrency", d.WorkerConcurrency, "tasks each node's worker runs at once")
	fs.IntVar(&cfg.Payload, "payload", d.Payload, "payload bytes per task (at least 8)")
	fs.StringVar(&cfg.Dir, "dir", "", "where to make the nodes' temporary data directories (default $TMPDIR or /tmp)")
	fs.DurationVar(&cfg.Timeout, "timeout", d.Timeout, "give up after this long")
	asJSON := fs.Bool("json", false, "print the result as one JSON line")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if cfg.Tasks < 1 || cfg.Producers < 1 || cfg.WorkerConcurrency < 1 {
		return fmt.Errorf("%w: --tasks, --producers and --worker-concurrency must be >= 1", errUsage)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	cfg.Progress = func(s string) { fmt.Fprintln(stderr, "bench taskq:", s) }
	res, err := bench.TaskQ(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		return res.WriteJSON(stdout)
	}
	return res.WriteText(stdout)
}
