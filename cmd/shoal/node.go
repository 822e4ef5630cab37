package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-p2p/shoal/httpapi"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/transport"
	"github.com/shoal-p2p/shoal/transport/p2p"
)

func init() {
	register(command{name: "node", summary: "run one node (prints its ID and addresses to bootstrap others)", run: runNode})
}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func ringProfile(name string) (ring.Config, error) {
	switch name {
	case "lan", "":
		return ring.DefaultConfig(), nil
	case "local":
		return ring.LocalConfig(), nil
	case "wan":
		return ring.WANConfig(), nil
	}
	return ring.Config{}, fmt.Errorf("%w: --profile must be lan, local or wan, got %q", errUsage, name)
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level must be debug, info, warn or error, got %q", errUsage, level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// parseBootstrap turns --bootstrap multiaddrs into peers, grouping
// addresses of the same node.
func parseBootstrap(addrs []string) ([]transport.Peer, error) {
	var out []transport.Peer
	for _, a := range addrs {
		p, err := p2p.ParsePeer(a)
		if err != nil {
			return nil, fmt.Errorf("%w: --bootstrap %q: %v (copy a full address printed by another node, ending in /p2p/<peer-id>)", errUsage, a, err)
		}
		merged := false
		for i := range out {
			if out[i].ID == p.ID {
				out[i].Addrs = append(out[i].Addrs, p.Addrs...)
				merged = true
			}
		}
		if !merged {
			out = append(out, p)
		}
	}
	return out, nil
}

func runNode(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("node", "[--listen MULTIADDR]... [--bootstrap MULTIADDR]... [--data DIR]", stderr)
	var listen, boot multiFlag
	fs.Var(&listen, "listen", "multiaddr to listen on (repeatable; default TCP and QUIC on all interfaces, ephemeral ports)")
	fs.Var(&boot, "bootstrap", "full multiaddr of a running node to join through, ending in /p2p/<peer-id> (repeatable; none starts a new ring)")
	data := fs.String("data", "", "data directory: keeps the node's identity key, so its ID survives restarts, and its key-value replicas in DIR/kv (default: a fresh identity and a temporary store each start)")
	profile := fs.String("profile", "lan", "timing profile: lan (default), local (fast failure detection, more traffic) or wan")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	httpAddr := fs.String("http", "", "serve the HTTP API on this address, e.g. 127.0.0.1:8080 (default: no HTTP API)")
	var workers multiFlag
	fs.Var(&workers, "worker", "work this task queue with the built-in effect worker, which records each task's effect once in the store at effect/QUEUE/TASK (repeatable; for demos and tests)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q (flags start with --)", errUsage, fs.Arg(0))
	}
	rcfg, err := ringProfile(*profile)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		return err
	}
	peers, err := parseBootstrap(boot)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	tcfg := p2p.DefaultConfig()
	tcfg.DataDir = *data
	if len(listen) > 0 {
		tcfg.Listen = listen
	}
	tcfg.Logger = log
	tr, err := p2p.New(ctx, tcfg)
	if err != nil {
		return fmt.Errorf("start libp2p host: %w", err)
	}
	self := tr.Self()
	fmt.Fprintf(stdout, "shoal node %s\n", self.ID)
	fmt.Fprintln(stdout, "addresses (pass one to another node as --bootstrap):")
	for _, a := range self.Addrs {
		fmt.Fprintf(stdout, "  %s\n", a)
	}
	if *data == "" {
		fmt.Fprintln(stdout, "note: no --data directory, so this node gets a new ID every start")
	}
	cfg := node.DefaultConfig()
	cfg.Ring = rcfg
	cfg.Transport = tr
	cfg.Bootstrap = peers
	cfg.Logger = log
	cfg.OnOwnerChange = func(oc node.OwnerChange) {
		log.Info("owned range changed", "from", oc.Range.From.Short(), "to", oc.Range.To.Short(), "whole_ring", oc.Range.Whole, "sure", oc.Sure)
	}
	if len(peers) > 0 {
		fmt.Fprintf(stdout, "joining through %d bootstrap node(s)…\n", len(peers))
	}
	n, err := node.Start(ctx, cfg)
	if err != nil {
		tr.Close()
		return err
	}
	if len(peers) == 0 {
		fmt.Fprintln(stdout, "started a new ring; this node owns every key until others join")
	} else {
		fmt.Fprintln(stdout, "joined the ring")
	}
	svc, err := startServices(n, serviceOptions{Profile: *profile, DataDir: *data, Genesis: len(peers) == 0, Log: log, Out: stdout, Workers: workers})
	if err != nil {
		n.Close()
		return err
	}
	fmt.Fprintf(stdout, "key-value store in %s\n", svc.kvDir)
	var api *httpapi.Server
	if *httpAddr != "" {
		api = httpapi.New(n, log)
		registerAPIs(api, svc, tr, log)
		if err := api.Start(*httpAddr); err != nil {
			svc.Close()
			n.Close()
			return err
		}
		fmt.Fprintf(stdout, "HTTP API on http://%s (try: curl http://%s/v1/ring)\n", api.Addr(), api.Addr())
	}
	<-ctx.Done()
	if api != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		api.Close(sctx)
		cancel()
	}
	if err := svc.Close(); err != nil { // the store closes before the node
		log.Error("stopping the node's services", "err", err)
	}
	fmt.Fprintln(stdout, "stopping: telling the neighbours…")
	start := time.Now()
	if err := n.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "left the ring in %v\n", time.Since(start).Round(time.Millisecond))
	return nil
}
