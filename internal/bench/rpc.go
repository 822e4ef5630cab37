package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"time"

	"github.com/shoal-p2p/shoal/internal/bench/load"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/service"
	"github.com/shoal-p2p/shoal/transport"
	"github.com/shoal-p2p/shoal/transport/p2p"
	"github.com/shoal-p2p/shoal/transport/p2p/p2pbench"
)

// Goals of the RPC case (issue 3): Shoal's throughput at least half the
// bare new-stream figure, and its median latency within twice it.
const (
	GoalThroughputRatio = 0.5
	GoalP50Ratio        = 2.0
)

// MaxRPCPayload is the largest RPCConfig.Payload: the request must fit in
// one Shoal message (node.Config.MaxMessage, 1 MiB by default) with its
// envelope.
const MaxRPCPayload = 512 << 10

// setupTimeout bounds starting and joining the two Shoal nodes.
const setupTimeout = 15 * time.Second

// RPCConfig configures the RPC case. Zero fields take DefaultRPCConfig's values.
type RPCConfig struct {
	// Concurrency is the number of callers for the Shoal and bare cases,
	// each with one call in flight. Default 16. The floor always uses one.
	Concurrency int
	// Warmup precedes each case's measured window; nothing in it is
	// counted. Default 1s.
	Warmup time.Duration
	// Duration is each case's measured window. Default 3s. The whole run
	// takes about three times Warmup+Duration, plus setup.
	Duration time.Duration
	// Payload is the request and reply size in bytes: the bare cases send
	// exactly this; Shoal sends it as a JSON string inside its envelope.
	// Default 100; at most MaxRPCPayload.
	Payload int
	// Progress, if set, receives one line per step (for stderr).
	Progress func(string)
	// AroundCase, if set, is called as each case ("shoal", "bare",
	// "floor") starts, and the function it returns as that case ends: a
	// hook to take one CPU profile per case.
	AroundCase func(name string) (end func())
}

// DefaultRPCConfig is the configuration of `shoal bench rpc` without flags.
func DefaultRPCConfig() RPCConfig {
	return RPCConfig{Concurrency: 16, Warmup: time.Second, Duration: 3 * time.Second, Payload: 100}
}

func (c RPCConfig) withDefaults() RPCConfig {
	d := DefaultRPCConfig()
	if c.Concurrency == 0 {
		c.Concurrency = d.Concurrency
	}
	if c.Warmup == 0 {
		c.Warmup = d.Warmup
	}
	if c.Duration == 0 {
		c.Duration = d.Duration
	}
	if c.Payload == 0 {
		c.Payload = d.Payload
	}
	return c
}

// Validate reports the first setting that cannot work. Zero values are
// valid: they mean the default.
func (c RPCConfig) Validate() error {
	switch {
	case c.Concurrency < 0 || c.Concurrency > 4096:
		return fmt.Errorf("bench: Concurrency must be in [1, 4096], got %d", c.Concurrency)
	case c.Warmup < 0:
		return fmt.Errorf("bench: Warmup must be >= 0, got %v", c.Warmup)
	case c.Duration < 0:
		return fmt.Errorf("bench: Duration must be > 0, got %v", c.Duration)
	case c.Payload < 0 || c.Payload > MaxRPCPayload:
		return fmt.Errorf("bench: Payload must be in [1, %d] bytes, got %d", MaxRPCPayload, c.Payload)
	}
	return nil
}

// RPCResult is what one RPC run measured, printed by --json as one line.
// Latencies are in microseconds, throughputs in completed calls per second
// over the measured window.
type RPCResult struct {
	Bench        string  `json:"bench"`     // "rpc"
	Transport    string  `json:"transport"` // "tcp (127.0.0.1)"
	Security     string  `json:"security"`  // negotiated by the bare hosts, as configured for Shoal's
	Muxer        string  `json:"muxer"`
	Concurrency  int     `json:"concurrency"`
	WarmupS      float64 `json:"warmup_s"`
	DurationS    float64 `json:"duration_s"`
	PayloadBytes int     `json:"payload_bytes"`
	GOMAXPROCS   int     `json:"gomaxprocs"`

	ShoalOps     int     `json:"shoal_ops"`
	ShoalOpsPerS float64 `json:"shoal_ops_per_s"`
	ShoalP50us   float64 `json:"shoal_p50_us"`
	ShoalP99us   float64 `json:"shoal_p99_us"`

	BareOps     int     `json:"bare_ops"`
	BareOpsPerS float64 `json:"bare_ops_per_s"`
	BareP50us   float64 `json:"bare_p50_us"`
	BareP99us   float64 `json:"bare_p99_us"`

	FloorOps     int     `json:"floor_ops"`
	FloorOpsPerS float64 `json:"floor_ops_per_s"`
	FloorP50us   float64 `json:"floor_p50_us"`
	FloorP99us   float64 `json:"floor_p99_us"`

	ThroughputRatio   float64 `json:"throughput_ratio"` // shoal_ops_per_s / bare_ops_per_s
	P50Ratio          float64 `json:"p50_ratio"`        // shoal_p50_us / bare_p50_us
	GoalThroughputMet bool    `json:"goal_throughput_met"`
	GoalP50Met        bool    `json:"goal_p50_met"`
}

// RPC measures, one after the other so they do not compete for CPU:
//
//  1. Shoal: two nodes over transport/p2p on 127.0.0.1/tcp; node B runs an
//     "echo" service whose "echo" method decodes the request and replies it;
//     node A calls it with node.CallNode from cfg.Concurrency callers.
//  2. bare: two plain libp2p hosts configured as Shoal's transport, a new
//     stream per request (p2pbench.NewStream), same callers.
//  3. floor: one long-lived stream, one caller (p2pbench.Floor).
//
// Each case gets cfg.Warmup then cfg.Duration; its hosts are closed before
// the next starts. ctx bounds the whole run; each case is also bounded by
// its own timeout, so a stuck call fails the run rather than hang it.
func RPC(ctx context.Context, cfg RPCConfig) (*RPCResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	progress := cfg.Progress
	if progress == nil {
		progress = func(string) {}
	}
	lc := load.Config{Concurrency: cfg.Concurrency, Warmup: cfg.Warmup, Duration: cfg.Duration}
	// Generous bound per case: setup, warm-up, window and a slow close.
	caseTimeout := setupTimeout + cfg.Warmup + cfg.Duration + 10*time.Second
	window := fmt.Sprintf("warm-up %v, measuring %v", cfg.Warmup, cfg.Duration)

	res := &RPCResult{
		Bench: "rpc", Transport: "tcp (127.0.0.1)",
		Concurrency: cfg.Concurrency, WarmupS: cfg.Warmup.Seconds(), DurationS: cfg.Duration.Seconds(),
		PayloadBytes: cfg.Payload, GOMAXPROCS: runtime.GOMAXPROCS(0),
	}

	progress(fmt.Sprintf("shoal: two nodes, %d callers of echo.echo, %s", cfg.Concurrency, window))
	sctx, cancel := context.WithTimeout(ctx, caseTimeout)
	end := around(cfg, "shoal")
	shoal, err := runShoal(sctx, lc, cfg.Payload, progress)
	end()
	cancel()
	if err != nil {
		return nil, fmt.Errorf("shoal case: %w", err)
	}
	res.ShoalOps, res.ShoalOpsPerS, res.ShoalP50us, res.ShoalP99us = figures(shoal)
	progress(summary("shoal", shoal))

	progress(fmt.Sprintf("bare: two libp2p hosts, new stream per request, %d callers, %s", cfg.Concurrency, window))
	bctx, cancel := context.WithTimeout(ctx, caseTimeout)
	end = around(cfg, "bare")
	bare, err := p2pbench.NewStream(bctx, p2pbench.Options{Load: lc, Payload: cfg.Payload})
	end()
	cancel()
	if err != nil {
		return nil, fmt.Errorf("bare case: %w", err)
	}
	res.Security, res.Muxer = bare.Security, bare.Muxer
	res.BareOps, res.BareOpsPerS, res.BareP50us, res.BareP99us = figures(bare.Result)
	progress(summary("bare", bare.Result) + " (" + bare.Security + ", " + bare.Muxer + ")")

	progress("floor: one long-lived stream, 1 caller, " + window)
	fctx, cancel := context.WithTimeout(ctx, caseTimeout)
	lc.Concurrency = 1
	end = around(cfg, "floor")
	floor, err := p2pbench.Floor(fctx, p2pbench.Options{Load: lc, Payload: cfg.Payload})
	end()
	cancel()
	if err != nil {
		return nil, fmt.Errorf("floor case: %w", err)
	}
	res.FloorOps, res.FloorOpsPerS, res.FloorP50us, res.FloorP99us = figures(floor.Result)
	progress(summary("floor", floor.Result))

	res.ThroughputRatio = round(res.ShoalOpsPerS/res.BareOpsPerS, 3)
	res.P50Ratio = round(res.ShoalP50us/res.BareP50us, 3)
	res.GoalThroughputMet = res.ThroughputRatio >= GoalThroughputRatio
	res.GoalP50Met = res.P50Ratio <= GoalP50Ratio
	return res, nil
}

func around(cfg RPCConfig, name string) func() {
	if cfg.AroundCase == nil {
		return func() {}
	}
	if end := cfg.AroundCase(name); end != nil {
		return end
	}
	return func() {}
}

// echoMsg is the echo service's request and reply.
type echoMsg struct {
	Data string `json:"data"`
}

// runShoal starts node A (a new ring) and node B (joining through A),
// registers echo on B and drives A's calls to it.
func runShoal(ctx context.Context, lc load.Config, payload int, progress func(string)) (load.Result, error) {
	setup, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	a, err := startNode(setup, nil)
	if err != nil {
		return load.Result{}, fmt.Errorf("start node A: %w", err)
	}
	defer a.Close()
	b, err := startNode(setup, []transport.Peer{a.Self()})
	if err != nil {
		return load.Result{}, fmt.Errorf("start node B (joining A): %w", err)
	}
	defer b.Close()
	echo := service.New("echo").Method("echo", func(c *service.Call) {
		var m echoMsg
		if err := c.Decode(&m); err != nil {
			c.Fail(err)
			return
		}
		c.Reply(m)
	})
	if err := b.Handle(echo); err != nil {
		return load.Result{}, fmt.Errorf("register echo on node B: %w", err)
	}
	progress(fmt.Sprintf("shoal: nodes %s and %s up", a.ID().Short(), b.ID().Short()))

	to := b.Self()
	req := echoMsg{Data: strings.Repeat("x", payload)}
	return load.Run(ctx, lc, func(ctx context.Context, _ int) error {
		var resp echoMsg
		if err := a.CallNode(ctx, to, "echo", "echo", req, &resp); err != nil {
			return err
		}
		if resp.Data != req.Data {
			return fmt.Errorf("echo replied %d bytes that differ from the %d sent", len(resp.Data), len(req.Data))
		}
		return nil
	})
}

// startNode starts a Shoal node over libp2p on 127.0.0.1/tcp.
func startNode(ctx context.Context, boot []transport.Peer) (*node.Node, error) {
	tcfg := p2p.DefaultConfig()
	tcfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	tr, err := p2p.New(ctx, tcfg)
	if err != nil {
		return nil, err
	}
	cfg := node.DefaultConfig()
	cfg.Ring = ring.LocalConfig()
	cfg.Transport = tr
	cfg.Bootstrap = boot
	n, err := node.Start(ctx, cfg)
	if err != nil {
		tr.Close()
		return nil, err
	}
	return n, nil
}

// figures returns ops, ops/s and p50, p99 in microseconds, rounded for print.
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

// WriteJSON writes r as one JSON line.
func (r *RPCResult) WriteJSON(w io.Writer) error { return json.NewEncoder(w).Encode(r) }

// WriteText writes r as a short table.
func (r *RPCResult) WriteText(w io.Writer) error {
	met := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "rpc: %d B payload over %s, %s, %s; %v measured after %v warm-up; GOMAXPROCS %d\n",
		r.PayloadBytes, r.Transport, r.Security, r.Muxer, seconds(r.DurationS), seconds(r.WarmupS), r.GOMAXPROCS)
	fmt.Fprintf(&b, "  %-40s %10s %10s %10s\n", "", "calls/s", "p50 µs", "p99 µs")
	row := func(name string, perS, p50, p99 float64) {
		fmt.Fprintf(&b, "  %-40s %10.0f %10.1f %10.1f\n", name, perS, p50, p99)
	}
	row(fmt.Sprintf("shoal CallNode, %d callers", r.Concurrency), r.ShoalOpsPerS, r.ShoalP50us, r.ShoalP99us)
	row(fmt.Sprintf("bare libp2p, new stream, %d callers", r.Concurrency), r.BareOpsPerS, r.BareP50us, r.BareP99us)
	row("floor: one long-lived stream, 1 caller", r.FloorOpsPerS, r.FloorP50us, r.FloorP99us)
	fmt.Fprintf(&b, "  shoal/bare throughput %.2f (goal >= %.1f: %s), p50 %.2fx (goal <= %.0fx: %s)\n",
		r.ThroughputRatio, GoalThroughputRatio, met(r.GoalThroughputMet), r.P50Ratio, GoalP50Ratio, met(r.GoalP50Met))
	_, err := io.WriteString(w, b.String())
	return err
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
