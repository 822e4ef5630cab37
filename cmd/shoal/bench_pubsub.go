package main

import (
	"context"
	"fmt"
	"io"

	"github.com/shoal-p2p/shoal/internal/bench"
)

func init() {
	benchCases = append(benchCases, benchCase{name: "pubsub",
		summary: "publish to subscribers on every node of a loopback ring: latency and wire messages per delivery",
		run:     runBenchPubSub})
}

func runBenchPubSub(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench pubsub", "[--nodes N] [--messages M] [--interval D] [--payload BYTES] [--json]", stderr)
	d := bench.DefaultPubSubConfig()
	var cfg bench.PubSubConfig
	fs.IntVar(&cfg.Nodes, "nodes", d.Nodes, "ring size, the publisher included (2 to 200); every other node subscribes")
	fs.IntVar(&cfg.Messages, "messages", d.Messages, "measured messages")
	fs.DurationVar(&cfg.Interval, "interval", d.Interval, "time between the starts of two publishes")
	fs.IntVar(&cfg.Payload, "payload", d.Payload, "message size in bytes (at least 9)")
	fs.DurationVar(&cfg.Drain, "drain", d.Drain, "longest wait for missing deliveries after the last publish")
	asJSON := fs.Bool("json", false, "print the result as one JSON line")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	case cfg.Messages < 1:
		return fmt.Errorf("%w: --messages must be >= 1, got %d", errUsage, cfg.Messages)
	case cfg.Interval <= 0:
		return fmt.Errorf("%w: --interval must be > 0, got %v", errUsage, cfg.Interval)
	case cfg.Drain <= 0:
		return fmt.Errorf("%w: --drain must be > 0, got %v", errUsage, cfg.Drain)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	cfg.Progress = func(s string) { fmt.Fprintln(stderr, "bench pubsub:", s) }
	res, err := bench.PubSub(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		return res.WriteJSON(stdout)
	}
	return res.WriteText(stdout)
}
