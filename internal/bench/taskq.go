package bench

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-p2p/shoal/internal/bench/load"
	"github.com/shoal-p2p/shoal/internal/effect"
	"github.com/shoal-p2p/shoal/taskq"
)

// TaskQConfig configures `shoal bench taskq`.
type TaskQConfig struct {
	// Nodes is the ring size; every node runs a worker. Default 5.
	Nodes int
	// Tasks is how many tasks are enqueued. Default 2000.
	Tasks int
	// Producers enqueue concurrently, each from a node in turn. Default 16.
	Producers int
	// WorkerConcurrency is the tasks each node's worker runs at once.
	// Default 8.
	WorkerConcurrency int
	// Payload is each task's payload size in bytes (at least 8). Default 100.
	Payload int
	// Dir holds the nodes' data directories (in a temporary directory,
	// removed afterwards). Default os.TempDir().
	Dir string
	// Timeout bounds the whole run after setup. Default 5m.
	Timeout  time.Duration
	Progress func(string)
	Logger   *slog.Logger
}

// DefaultTaskQConfig is `shoal bench taskq` without flags.
func DefaultTaskQConfig() TaskQConfig {
	return TaskQConfig{Nodes: 5, Tasks: 2000, Producers: 16, WorkerConcurrency: 8, Payload: 100, Timeout: 5 * time.Minute}
}

func (c TaskQConfig) withDefaults() TaskQConfig {
	d := DefaultTaskQConfig()
	if c.Nodes == 0 {
		c.Nodes = d.Nodes
	}
	if c.Tasks == 0 {
		c.Tasks = d.Tasks
	}
	if c.Producers == 0 {
		c.Producers = d.Producers
	}
	if c.WorkerConcurrency == 0 {
		c.WorkerConcurrency = d.WorkerConcurrency
	}
	if c.Payload == 0 {
		c.Payload = d.Payload
	}
	if c.Dir == "" {
		c.Dir = os.TempDir()
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.Progress == nil {
		c.Progress = func(string) {}
	}
	return c
}

// Validate reports the first setting that cannot work.
func (c TaskQConfig) Validate() error {
	switch {
	case c.Nodes != 0 && (c.Nodes < 3 || c.Nodes > 50):
		return fmt.Errorf("bench: Nodes must be in [3, 50], got %d", c.Nodes)
	case c.Tasks < 0 || c.Tasks > 1_000_000:
		return fmt.Errorf("bench: Tasks must be in [1, 1000000], got %d", c.Tasks)
	case c.Producers < 0 || c.Producers > 1024:
		return fmt.Errorf("bench: Producers must be in [1, 1024], got %d", c.Producers)
	case c.WorkerConcurrency < 0 || c.WorkerConcurrency > 256:
		return fmt.Errorf("bench: WorkerConcurrency must be in [1, 256], got %d", c.WorkerConcurrency)
	case c.Payload != 0 && (c.Payload < 8 || c.Payload > 200<<10):
		return fmt.Errorf("bench: Payload must be in [8, %d] bytes, got %d", 200<<10, c.Payload)
	case c.Timeout < 0:
		return fmt.Errorf("bench: Timeout must be > 0, got %v", c.Timeout)
	}
	return nil
}

// TaskQResult is one run of `shoal bench taskq`.
type TaskQResult struct {
	Nodes             int     `json:"nodes"`
	Tasks             int     `json:"tasks"`
	Producers         int     `json:"producers"`
	WorkerConcurrency int     `json:"worker_concurrency"`
	EnqueuePerS       float64 `json:"enqueue_per_s"`
	CompletePerS      float64 `json:"complete_per_s"`
	EnqueueP50ms      float64 `json:"enqueue_p50_ms"`
	EnqueueP99ms      float64 `json:"enqueue_p99_ms"`
	StartP50ms        float64 `json:"start_p50_ms"` // from the call to Enqueue to the handler starting
	StartP99ms        float64 `json:"start_p99_ms"`
	Lost              int     `json:"lost"`              // acknowledged enqueues whose effect never happened
	DuplicateEffects  int     `json:"duplicate_effects"` // effects applied more than once for one task
	RawDuplicates     int     `json:"raw_duplicates"`    // executions that found their effect already applied
	EnqueueErrors     int     `json:"enqueue_errors"`
	Seconds           float64 `json:"seconds"`
	Load1             float64 `json:"load1"`
}

// WriteJSON writes r as one JSON line.
func (r *TaskQResult) WriteJSON(w io.Writer) error { return json.NewEncoder(w).Encode(r) }

// WriteText writes r for people.
func (r *TaskQResult) WriteText(w io.Writer) error {
	_, err := fmt.Fprintf(w, `task queue on a %d-node loopback ring (libp2p, durable log stores), %d tasks, %d producers, workers on every node (%d at a time)
  enqueue:  %8.0f tasks/s   p50 %.2f ms  p99 %.2f ms
  complete: %8.0f tasks/s   (enqueue to handler start: p50 %.2f ms  p99 %.2f ms)
  lost %d, duplicate effects %d, raw duplicate executions %d, enqueue errors %d  (%.1fs, load %.2f)
`, r.Nodes, r.Tasks, r.Producers, r.WorkerConcurrency, r.EnqueuePerS, r.EnqueueP50ms, r.EnqueueP99ms,
		r.CompletePerS, r.StartP50ms, r.StartP99ms, r.Lost, r.DuplicateEffects, r.RawDuplicates, r.EnqueueErrors, r.Seconds, r.Load1)
	return err
}

const benchQueue = "bench"

// TaskQ runs the task-queue benchmark: producers enqueue cfg.Tasks tasks
// with idempotency keys while workers on every node run them; each task's
// effect is a create-only store write (package effect). It measures
// enqueue and completion throughput, the delay from enqueue to start, and
// checks that no acknowledged task is lost and no effect happens twice.
func TaskQ(ctx context.Context, cfg TaskQConfig) (*TaskQResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	dir, err := os.MkdirTemp(cfg.Dir, "shoal-bench-taskq-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	kc := KVConfig{Nodes: cfg.Nodes, Keys: 1, Concurrency: 1, Progress: cfg.Progress, Logger: cfg.Logger}.WithDefaults()
	r, err := startKVRing(ctx, kc, dir)
	defer r.close()
	if err != nil {
		return nil, err
	}
	qs := make([]*taskq.Queues, len(r.nodes))
	sinks := make([]*effect.Sink, len(r.nodes))
	for i, n := range r.nodes {
		if qs[i], err = taskq.New(n, r.stores[i], taskq.Config{Logger: cfg.Logger}); err != nil {
			return nil, err
		}
		defer qs[i].Close()
		sinks[i] = effect.New(r.stores[i])
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	for {
		err := qs[0].Create(ctx, benchQueue, taskq.QueueConfig{Visibility: 10 * time.Second})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("create the queue: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	t0 := time.Now()
	var (
		mu      sync.Mutex
		starts  = make([]time.Duration, 0, cfg.Tasks)
		done    atomic.Int64
		allDone = make(chan struct{})
	)
	for i := range qs {
		h := sinks[i].Handler(func(_ context.Context, t taskq.Task) error {
			if len(t.Payload) >= 8 {
				at := time.Unix(0, int64(binary.BigEndian.Uint64(t.Payload)))
				mu.Lock()
				if t.Attempt == 1 {
					starts = append(starts, time.Since(at))
				}
				mu.Unlock()
			}
			return nil
		})
		w, err := qs[i].Work(benchQueue, func(ctx context.Context, t taskq.Task) error {
			err := h(ctx, t)
			if err == nil && done.Add(1) == int64(cfg.Tasks) {
				close(allDone)
			}
			return err
		}, taskq.Concurrency(cfg.WorkerConcurrency))
		if err != nil {
			return nil, err
		}
		defer w.Stop()
	}
	cfg.Progress(fmt.Sprintf("taskq: %d producers enqueue %d tasks while workers on %d nodes run them", cfg.Producers, cfg.Tasks, cfg.Nodes))

	ids := make([]string, cfg.Tasks)
	lat := make([]time.Duration, cfg.Tasks)
	var next atomic.Int64
	var enqErrs atomic.Int64
	var wg sync.WaitGroup
	for p := range cfg.Producers {
		wg.Go(func() {
			payload := make([]byte, cfg.Payload)
			for {
				i := int(next.Add(1)) - 1
				if i >= cfg.Tasks || ctx.Err() != nil {
					return
				}
				q := qs[(p+i)%len(qs)]
				start := time.Now()
				binary.BigEndian.PutUint64(payload, uint64(start.UnixNano()))
				for attempt := 0; ; attempt++ {
					id, err := q.Enqueue(ctx, benchQueue, payload, taskq.IdempotencyKey(fmt.Sprintf("task-%d", i)))
					if err == nil {
						ids[i], lat[i] = id, time.Since(start)
						break
					}
					enqErrs.Add(1)
					if ctx.Err() != nil || attempt >= 5 {
						return
					}
				}
			}
		})
	}
	wg.Wait()
	enqDur := time.Since(t0)
	cfg.Progress(fmt.Sprintf("taskq: enqueued in %.1fs; waiting for the workers", enqDur.Seconds()))
	acked := 0
	for _, id := range ids {
		if id != "" {
			acked++
		}
	}
	select {
	case <-allDone:
	case <-ctx.Done():
	}
	if acked < cfg.Tasks {
		// Some tasks were never acknowledged: wait for the acknowledged
		// ones only, boundedly.
		for int(done.Load()) < acked && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
	compDur := time.Since(t0)

	res := &TaskQResult{Nodes: cfg.Nodes, Tasks: cfg.Tasks, Producers: cfg.Producers, WorkerConcurrency: cfg.WorkerConcurrency,
		EnqueueErrors: int(enqErrs.Load()), Seconds: round(compDur.Seconds(), 2), Load1: LoadAvg()}
	res.EnqueuePerS = round(float64(acked)/enqDur.Seconds(), 0)
	res.CompletePerS = round(float64(done.Load())/compDur.Seconds(), 0)
	var enq []time.Duration
	for i, id := range ids {
		if id != "" {
			enq = append(enq, lat[i])
		}
	}
	slices.Sort(enq)
	res.EnqueueP50ms, res.EnqueueP99ms = millis(load.Percentile(enq, 50)), millis(load.Percentile(enq, 99))
	mu.Lock()
	slices.Sort(starts)
	res.StartP50ms, res.StartP99ms = millis(load.Percentile(starts, 50)), millis(load.Percentile(starts, 99))
	mu.Unlock()

	// Check: every acknowledged task's effect is there, once.
	cfg.Progress("taskq: checking every acknowledged task's effect")
	var applied, dups int64
	for _, s := range sinks {
		a, d := s.Counts()
		applied += a
		dups += d
	}
	res.RawDuplicates = int(dups)
	found := 0
	cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
	defer ccancel()
	for i, id := range ids {
		if id == "" {
			continue
		}
		_, _, ok, err := effect.Read(cctx, r.stores[i%len(r.stores)], benchQueue, id)
		if err != nil {
			return nil, fmt.Errorf("reading the effect of task %s: %w", id, err)
		}
		if ok {
			found++
		}
	}
	res.Lost = acked - found
	res.DuplicateEffects = int(applied) - found
	return res, nil
}
