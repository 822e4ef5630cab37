package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/shoal-p2p/shoal/internal/demo"
)

func init() {
	register(command{name: "demo", summary: "start an 8-node ring on loopback and show routing, failover, pub/sub, the replicated store, a task queue and an IP pool", run: runDemo})
}

func runDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", "[--nodes N]", stderr)
	nodes := fs.Int("nodes", 8, "number of nodes in the demo ring (2 to 64)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *nodes < 2 || *nodes > 64 {
		return fmt.Errorf("%w: --nodes must be between 2 and 64, got %d", errUsage, *nodes)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return demo.Run(ctx, demo.Options{Nodes: *nodes, Out: stdout})
}
