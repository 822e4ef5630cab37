package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	gossip "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	shoalbench "github.com/shoal-p2p/shoal/internal/bench"
	"github.com/shoal-p2p/shoal/transport/p2p"
)

// setupTimeout bounds starting the hosts, forming the mesh and warming up.
const setupTimeout = 30 * time.Second

func runPubSub(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("pubsub", "[--system gossipsub|shoal] [--nodes N] [--messages M] [--interval D] [--payload BYTES] [--json]", stderr)
	d := shoalbench.DefaultPubSubConfig()
	var cfg shoalbench.PubSubConfig
	system := fs.String("system", "gossipsub", "system to measure: gossipsub (go-libp2p-pubsub) or shoal (Shoal's pubsub, as `shoal bench pubsub`)")
	fs.IntVar(&cfg.Nodes, "nodes", d.Nodes, "number of hosts, the publisher included (2 to 200)")
	fs.IntVar(&cfg.Messages, "messages", d.Messages, "measured messages")
	fs.DurationVar(&cfg.Interval, "interval", d.Interval, "time between two publishes")
	fs.IntVar(&cfg.Payload, "payload", d.Payload, "message size in bytes (at least 9)")
	fs.DurationVar(&cfg.Drain, "drain", d.Drain, "longest wait for missing deliveries after the last publish")
	degree := fs.Int("connect", 4, "gossipsub: each host dials the next K hosts on the ring, so it has 2K neighbours")
	asJSON := fs.Bool("json", false, "print the result as one JSON line")
	if err := parse(fs, args); err != nil {
		return err
	}
	if cfg.Messages < 1 {
		return fmt.Errorf("%w: --messages must be >= 1, got %d", errUsage, cfg.Messages)
	}
	if cfg.Interval <= 0 {
		return fmt.Errorf("%w: --interval must be > 0, got %v", errUsage, cfg.Interval)
	}
	if cfg.Drain <= 0 {
		return fmt.Errorf("%w: --drain must be > 0, got %v", errUsage, cfg.Drain)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	cfg.Progress = func(s string) { fmt.Fprintln(stderr, "bench pubsub:", s) }
	var res *shoalbench.PubSubResult
	var err error
	switch *system {
	case "gossipsub":
		if *degree < 1 || *degree >= cfg.Nodes {
			return fmt.Errorf("%w: --connect must be in [1, nodes-1], got %d", errUsage, *degree)
		}
		res, err = gossipSub(ctx, cfg, *degree)
	case "shoal":
		res, err = shoalbench.PubSub(ctx, cfg)
	default:
		return fmt.Errorf("%w: --system must be gossipsub or shoal, got %q", errUsage, *system)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return res.WriteJSON(stdout)
	}
	return res.WriteText(stdout)
}

// counter is shared by the tracers of every host.
type counter struct {
	copies  atomic.Int64 // copies of measured messages received, over all hosts
	control atomic.Int64 // control entries received (IHAVE, IWANT, GRAFT, PRUNE, IDONTWANT)
}

// tracer counts, for one host, what it receives and the size of its mesh.
type tracer struct {
	c    *counter
	mesh atomic.Int64
}

func (t *tracer) RecvRPC(rpc *gossip.RPC) {
	for _, m := range rpc.Publish {
		if measured, _, ok := shoalbench.DecodeProbe(m.GetData()); ok && measured && m.GetTopic() == shoalbench.PubSubTopic {
			t.c.copies.Add(1)
		}
	}
	if ctl := rpc.GetControl(); ctl != nil {
		t.c.control.Add(int64(len(ctl.Ihave) + len(ctl.Iwant) + len(ctl.Graft) + len(ctl.Prune) + len(ctl.Idontwant)))
	}
}

func (t *tracer) Graft(peer.ID, string) { t.mesh.Add(1) }
func (t *tracer) Prune(peer.ID, string) { t.mesh.Add(-1) }

func (*tracer) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (*tracer) OnClosedOutboundStream(peer.ID)                       {}
func (*tracer) Join(string)                                          {}
func (*tracer) Leave(string)                                         {}
func (*tracer) ValidateMessage(*gossip.Message)                      {}
func (*tracer) DeliverMessage(*gossip.Message)                       {}
func (*tracer) RejectMessage(*gossip.Message, string)                {}
func (*tracer) DuplicateMessage(*gossip.Message)                     {}
func (*tracer) ThrottlePeer(peer.ID)                                 {}
func (*tracer) SendRPC(*gossip.RPC, peer.ID)                         {}
func (*tracer) SendRPCCompleted(*gossip.RPC, peer.ID, time.Duration) {}
func (*tracer) DropRPC(*gossip.RPC, peer.ID)                         {}
func (*tracer) UndeliverableMessage(*gossip.Message)                 {}

// gossipSub runs the workload on go-libp2p-pubsub's gossipsub with its
// default parameters (D=6, flood publishing on): cfg.Nodes libp2p hosts
// built like Shoal's transport (p2p.HostOptions: TCP on 127.0.0.1, Noise,
// yamux), each dialling the next degree hosts on a ring. Host 1 joins the
// topic and publishes without subscribing; every other host subscribes.
// Before measuring it waits for every subscriber's mesh to reach
// min(Dlo, neighbours) peers and for a warm-up message to reach every
// subscriber. Wire messages are the copies of measured messages that hosts
// received (RPC publish entries, whether delivered or dropped as
// duplicates, gossip IWANT replies included); control entries are counted
// apart.
func gossipSub(ctx context.Context, cfg shoalbench.PubSubConfig, degree int) (*shoalbench.PubSubResult, error) {
	cfg = cfg.WithDefaults()
	t0 := time.Now()
	res := &shoalbench.PubSubResult{System: "gossipsub", Bench: "pubsub", Nodes: cfg.Nodes, PayloadBytes: cfg.Payload,
		IntervalMs: float64(cfg.Interval) / float64(time.Millisecond), GOMAXPROCS: runtime.GOMAXPROCS(0),
		Topology: fmt.Sprintf("ring, each host dials the next %d (%d neighbours); gossipsub defaults", degree, 2*degree)}

	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	setup, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()

	cfg.Progress(fmt.Sprintf("gossipsub: starting %d hosts on 127.0.0.1", cfg.Nodes))
	hosts := make([]host.Host, 0, cfg.Nodes)
	defer func() {
		for _, h := range hosts {
			h.Close()
		}
	}()
	tcfg := p2p.DefaultConfig()
	tcfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	for i := 0; i < cfg.Nodes; i++ {
		opts, err := p2p.HostOptions(tcfg)
		if err != nil {
			return nil, err
		}
		h, err := libp2p.New(opts...)
		if err != nil {
			return nil, fmt.Errorf("start libp2p host %d: %w", i+1, err)
		}
		hosts = append(hosts, h)
	}
	for i, h := range hosts {
		for k := 1; k <= degree; k++ {
			o := hosts[(i+k)%len(hosts)]
			if o.ID() == h.ID() || len(h.Network().ConnsToPeer(o.ID())) > 0 {
				continue
			}
			if err := h.Connect(setup, peer.AddrInfo{ID: o.ID(), Addrs: o.Addrs()}); err != nil {
				return nil, fmt.Errorf("connect host %d to host %d: %w", i+1, (i+k)%len(hosts)+1, err)
			}
		}
	}

	var count counter
	tracers := make([]*tracer, cfg.Nodes)
	topics := make([]*gossip.Topic, cfg.Nodes)
	for i, h := range hosts {
		tracers[i] = &tracer{c: &count}
		ps, err := gossip.NewGossipSub(runCtx, h, gossip.WithRawTracer(tracers[i]))
		if err != nil {
			return nil, fmt.Errorf("gossipsub on host %d: %w", i+1, err)
		}
		if topics[i], err = ps.Join(shoalbench.PubSubTopic); err != nil {
			return nil, fmt.Errorf("join topic on host %d: %w", i+1, err)
		}
	}
	rec := shoalbench.NewRecorder(cfg.Nodes-1, cfg.Messages)
	var readers sync.WaitGroup
	defer readers.Wait()
	defer cancelRun()
	for i := 1; i < cfg.Nodes; i++ {
		sub, err := topics[i].Subscribe()
		if err != nil {
			return nil, fmt.Errorf("subscribe on host %d: %w", i+1, err)
		}
		readers.Go(func() {
			defer sub.Cancel()
			for {
				m, err := sub.Next(runCtx)
				if err != nil {
					return
				}
				rec.Delivered(i-1, m.GetData(), 0)
			}
		})
	}

	cfg.Progress("gossipsub: waiting for the mesh to form")
	if err := waitMesh(setup, hosts, tracers); err != nil {
		return nil, err
	}
	publish := func(ctx context.Context, data []byte) error { return topics[0].Publish(ctx, data) }
	cfg.Progress("gossipsub: mesh formed; warming up until every subscriber has a message")
	if err := shoalbench.WarmUp(setup, rec, cfg.Payload, publish); err != nil {
		return nil, fmt.Errorf("gossipsub: %w", err)
	}
	res.SetupS = float64(time.Since(t0).Round(10*time.Millisecond)) / float64(time.Second)

	cfg.Progress(fmt.Sprintf("gossipsub: publishing %d messages every %v", cfg.Messages, cfg.Interval))
	ctl0 := count.control.Load()
	if err := shoalbench.Measure(ctx, cfg, rec, publish); err != nil {
		return nil, fmt.Errorf("gossipsub: %w", err)
	}
	rec.Fill(res)
	res.SetCounts(count.copies.Load(), count.control.Load()-ctl0,
		"copies of the measured messages received by all hosts: mesh pushes, flood publish and IWANT replies, duplicates included; control_msgs counts IHAVE, IWANT, GRAFT, PRUNE and IDONTWANT entries received")
	return res, nil
}

// waitMesh waits until every subscribing host (all but the first) has at
// least min(Dlo, neighbours) peers in its mesh for the topic.
func waitMesh(ctx context.Context, hosts []host.Host, tracers []*tracer) error {
	for {
		ready := true
		for i := 1; i < len(hosts); i++ {
			want := min(int64(gossip.GossipSubDlo), int64(len(hosts[i].Network().Peers())-1))
			if tracers[i].mesh.Load() < max(want, 1) {
				ready = false
				break
			}
		}
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gossipsub mesh did not form: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
