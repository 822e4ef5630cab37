// Command shoal runs Shoal nodes, the demo, the simulator and benchmarks.
//
//	shoal demo                      an 8-node ring on loopback: routing, failover, pub/sub, store, queue, IP pool
//	shoal node --listen … --bootstrap … --data DIR   run one node
//	shoal sim --nodes N --lookups M [--churn PER_MIN] [--seed S] [--json]
//	shoal pub TOPIC MESSAGE | sub TOPIC | anycast TOPIC MESSAGE   via a node's HTTP API (--api)
//	shoal kv get|put|del KEY [VALUE] [--if-version V] | owner KEY | ring   via a node's HTTP API (--api)
//	shoal queue create|enqueue|stats|dead|redrive QUEUE …          task queues via a node's HTTP API
//	shoal resources POOL | define|acquire|renew|release POOL …     shared resources via a node's HTTP API
//	shoal bench rpc|pubsub|kv|taskq [--json]                      loopback measurements
//
// Run `shoal help` or `shoal COMMAND --help` for details.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

var commands []command

func register(c command) { commands = append(commands, c) }

func usage(w io.Writer) {
	fmt.Fprintln(w, "shoal: a peer-to-peer ring that routes, stores, publishes and works as one.")
	fmt.Fprintln(w, "\nUsage: shoal COMMAND [flags]\n\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'shoal COMMAND --help' for a command's flags.")
}

// errUsage marks an error caused by how shoal was invoked (exit status 2).
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			err := c.run(args[1:], stdout, stderr)
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.Is(err, errUsage):
				fmt.Fprintf(stderr, "shoal %s: %v\n", c.name, err)
				return 2
			default:
				fmt.Fprintf(stderr, "shoal %s: %v\n", c.name, err)
				return 1
			}
		}
	}
	fmt.Fprintf(stderr, "shoal: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// newFlags returns a FlagSet that reports errors instead of exiting.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("shoal "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: shoal %s %s\n\nFlags:\n", name, synopsis)
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
	return nil
}
