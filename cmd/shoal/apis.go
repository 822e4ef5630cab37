package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/shoal-p2p/shoal/httpapi"
	"github.com/shoal-p2p/shoal/httpapi/kvapi"
	"github.com/shoal-p2p/shoal/httpapi/metrics"
	"github.com/shoal-p2p/shoal/httpapi/queues"
	"github.com/shoal-p2p/shoal/httpapi/resources"
	"github.com/shoal-p2p/shoal/httpapi/topics"
	"github.com/shoal-p2p/shoal/internal/effect"
	"github.com/shoal-p2p/shoal/kv"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/pubsub"
	"github.com/shoal-p2p/shoal/resource"
	"github.com/shoal-p2p/shoal/taskq"
	"github.com/shoal-p2p/shoal/transport/p2p"
)

// services are the subsystems every node runs, whether or not it serves
// the HTTP API: a node on the path of a topic's tree forwards for it even if
// nobody on it publishes or subscribes, and a node holds replicas of the
// keys near it for everyone.
type services struct {
	ps      *pubsub.PubSub
	kv      *kv.KV
	log     *kv.LogStore // the store's log, for its counters
	tq      *taskq.Queues
	res     *resource.Manager
	sink    *effect.Sink
	workers []*taskq.Worker
	kvDir   string // where the store lives
	tmpDir  string // a data directory to remove at Close ("" if none)
}

// serviceOptions are what the subsystems need from `shoal node`.
type serviceOptions struct {
	// Profile is the ring profile (lan, local or wan; checked by
	// ringProfile), whose timings the subsystems follow.
	Profile string
	// DataDir is the node's data directory; the store lives in DataDir/kv.
	// Empty: a temporary directory, removed at Close.
	DataDir string
	// Genesis: the node started a new ring (no --bootstrap).
	Genesis bool
	Log     *slog.Logger
	// Out gets notes for the user (the temporary directory).
	Out io.Writer
	// Workers are queues this node works with the built-in effect worker
	// (`--worker QUEUE`): each task's effect is recorded once in the store
	// (kv effect/QUEUE/TASK), with a count of raw duplicate executions.
	Workers []string
}

// startServices starts the node's subsystems. Subsystems add a line here
// as they land.
func startServices(n *node.Node, o serviceOptions) (*services, error) {
	pcfg := pubsub.DefaultConfig()
	switch o.Profile {
	case "local":
		pcfg = pubsub.LocalConfig()
	case "wan":
		pcfg = pubsub.WANConfig()
	}
	pcfg.Logger = o.Log
	ps, err := pubsub.New(n, pcfg)
	if err != nil {
		return nil, fmt.Errorf("start pubsub: %w", err)
	}
	s := &services{ps: ps}
	dir := o.DataDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "shoal-node-"); err != nil {
			s.Close()
			return nil, fmt.Errorf("create a temporary data directory: %w", err)
		}
		s.tmpDir = dir
		fmt.Fprintf(o.Out, "note: no --data directory, so the key-value replicas live in %s and are deleted when the node stops\n", dir)
	}
	s.kvDir = filepath.Join(dir, "kv")
	store, err := kv.OpenLog(s.kvDir, kv.LogConfig{Logger: o.Log})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open the key-value store: %w", err)
	}
	s.log = store
	kcfg := kv.DefaultConfig()
	kcfg.Store = store
	kcfg.Genesis = o.Genesis
	kcfg.Logger = o.Log
	if s.kv, err = kv.New(n, kcfg); err != nil {
		store.Close()
		s.Close()
		return nil, fmt.Errorf("start the key-value store: %w", err)
	}
	if s.tq, err = taskq.New(n, s.kv, taskq.Config{Logger: o.Log}); err != nil {
		s.Close()
		return nil, fmt.Errorf("start the task queues: %w", err)
	}
	rcfg := resource.DefaultConfig()
	rcfg.Holder = n.ID().String()
	rcfg.Logger = o.Log
	if s.res, err = resource.New(s.kv, rcfg); err != nil {
		s.Close()
		return nil, fmt.Errorf("start shared resources: %w", err)
	}
	s.sink = effect.New(s.kv)
	for _, q := range o.Workers {
		w, err := s.tq.Work(q, s.sink.Handler(nil), taskq.Concurrency(8))
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("start a worker for queue %q: %w", q, err)
		}
		s.workers = append(s.workers, w)
		fmt.Fprintf(o.Out, "working queue %q with the built-in effect worker (8 at a time)\n", q)
	}
	n.ServicesRegistered()
	return s, nil
}

// Close stops the subsystems (closing the store), before the node itself
// closes.
func (s *services) Close() error {
	var errs []error
	for _, w := range s.workers {
		w.Stop()
	}
	if s.res != nil {
		s.res.Close()
	}
	if s.tq != nil {
		if err := s.tq.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close the task queues: %w", err))
		}
	}
	if s.kv != nil {
		if err := s.kv.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close the key-value store: %w", err))
		}
	}
	s.ps.Close()
	if s.tmpDir != "" {
		if err := os.RemoveAll(s.tmpDir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// registerAPIs adds each subsystem's HTTP routes to a node's API server.
func registerAPIs(api *httpapi.Server, svc *services, tr *p2p.Transport, log *slog.Logger) {
	topics.Register(api, svc.ps)
	kvapi.Register(api, svc.kv)
	queues.Register(api, svc.tq)
	resources.Register(api, svc.res)
	n := api.Node()
	metrics.Register(api,
		metrics.Source{Subsystem: "node", Read: func() any { return n.Metrics() }},
		metrics.Source{Subsystem: "host", Read: func() any { return n.ServiceStats() },
			Labels: map[string]string{"services": "service", "refused_by_resource": "resource"}},
		metrics.Source{Subsystem: "p2p", Read: func() any { return tr.Stats() }},
		metrics.Source{Subsystem: "kv", Read: func() any { return svc.kv.Stats() }},
		metrics.Source{Subsystem: "kv_log", Read: func() any { return svc.log.Stats() }},
		metrics.Source{Subsystem: "pubsub", Read: func() any { return svc.ps.Stats() }},
	)
}
