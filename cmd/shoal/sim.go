package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/shoal-p2p/shoal/sim"
)

func init() {
	register(command{name: "sim", summary: "run the ring code on a simulated network and measure routing", run: runSim})
}

func runSim(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sim", "--nodes N --lookups M [--churn PER_MIN] [--seed S] [--json]", stderr)
	var cfg sim.RunConfig
	fs.IntVar(&cfg.Nodes, "nodes", 1000, "number of nodes in the simulated ring")
	fs.IntVar(&cfg.Lookups, "lookups", 10000, "random lookups to route and check against the true owner")
	fs.Float64Var(&cfg.ChurnPerMin, "churn", 0, "node crashes per virtual minute (each followed by a join); 0 for a stable ring")
	fs.Int64Var(&cfg.Seed, "seed", 1, "random seed; the same seed replays the same run")
	fs.Float64Var(&cfg.LookupRate, "rate", 2000, "lookups issued per virtual second")
	asJSON := fs.Bool("json", false, "print the result as one JSON line")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if cfg.Nodes < 1 {
		return fmt.Errorf("%w: --nodes must be at least 1, got %d", errUsage, cfg.Nodes)
	}
	if cfg.Lookups < 0 || cfg.ChurnPerMin < 0 || cfg.LookupRate <= 0 {
		return fmt.Errorf("%w: --lookups and --churn must be >= 0 and --rate > 0", errUsage)
	}
	cfg.Progress = func(s string) { fmt.Fprintln(stderr, "sim:", s) }
	res, err := sim.Run(cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprintf(stdout, "nodes %d, lookups %d, churn %.1f/min, seed %d\n", res.Nodes, res.Lookups, res.ChurnPerMin, res.Seed)
	fmt.Fprintf(stdout, "  hops: avg %.2f, p99 %d (log16 N = %.2f)\n", res.AvgHops, res.P99Hops, res.Log16N)
	fmt.Fprintf(stdout, "  delivered at the true owner: %.3f%%  (delivered anywhere: %.3f%%)\n", res.CorrectPct, res.DeliveredPct)
	if res.ChurnPerMin > 0 {
		fmt.Fprintf(stdout, "  crashes: %d; after the repair time: %.3f%% of %d lookups at the true owner\n", res.Crashes, res.AfterRepairPct, res.AfterRepairCount)
	}
	fmt.Fprintf(stdout, "  maintenance: %.3f messages per node per second\n", res.MsgsPerNodePerS)
	fmt.Fprintf(stdout, "  %.0f virtual seconds in %.1f wall seconds\n", res.VirtualS, res.WallS)
	return nil
}
