// Command bench measures other p2p systems on the same workloads as `shoal
// bench`, for comparison. It is a module of its own so that their
// dependencies (go-libp2p-pubsub, …) never enter Shoal's go.mod.
//
//	cd bench && go run . pubsub --nodes 20 --json                  gossipsub
//	cd bench && go run . pubsub --nodes 20 --json --system shoal   Shoal, through the main module
//	cd bench && go run . kv --nodes 20 --json                      kad-dht against Shoal's kv
//
// Each case prints one JSON line (--json) or a short summary. Every host
// listens on 127.0.0.1 only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// benchCase is one subcommand: it parses its own flags.
type benchCase struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var cases = []benchCase{
	{name: "pubsub", summary: "publish to every subscriber of a topic: gossipsub (default) or Shoal (--system shoal)", run: runPubSub},
}

// errUsage marks an error caused by how the command was invoked (exit 2).
var errUsage = errors.New("usage")

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: go run . CASE [flags]\n\nCases:")
	for _, c := range cases {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'go run . CASE --help' for a case's flags.")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	if a := args[0]; a == "help" || a == "-h" || a == "--help" {
		usage(stdout)
		return 0
	}
	for _, c := range cases {
		if c.name != args[0] {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			fmt.Fprintf(stderr, "bench %s: %v\n", c.name, err)
			return 2
		default:
			fmt.Fprintf(stderr, "bench %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "bench: unknown case %q\n\n", args[0])
	usage(stderr)
	return 2
}

// newFlags returns a FlagSet that reports errors instead of exiting.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("bench "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: go run . %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags and refuses stray arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q (flags start with --)", errUsage, fs.Arg(0))
	}
	return nil
}
