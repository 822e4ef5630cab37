package e2e

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var queueTasks = flag.Int("e2e.tasks", 10000, "tasks the real-process queue test enqueues")

// TestQueueAcrossRealProcesses runs five `shoal node --worker jobs`
// processes, enqueues tasks with idempotency keys over HTTP while it kills
// (-9) and restarts workers and the queue's owner and pauses one with
// SIGSTOP, then checks that every acknowledged task was done and its effect
// (a create-only record, internal/effect) happened exactly once, and reports
// the raw duplicate executions.
func TestQueueAcrossRealProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five processes")
	}
	const seed = 11
	const queue = "jobs"
	n := *queueTasks
	r := startRing(t, seed, "--worker", queue)
	hc := &http.Client{Timeout: 10 * time.Second}
	call := func(method, path string, body []byte, hdr map[string]string) (int, []byte, error) {
		req, _ := http.NewRequest(method, "http://"+r.pick().api+path, bytes.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b, nil
	}
	// Create the queue once the ring accepts writes (bounded).
	cfg, _ := json.Marshal(map[string]any{"visibility": "3s", "max_attempts": 100, "backoff": "200ms", "max_backoff": "2s"})
	deadline := time.Now().Add(90 * time.Second)
	for {
		code, b, err := call(http.MethodPut, "/v1/queues/"+queue, cfg, nil)
		if err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("seed %d: the queue could not be created: %d %s %v", seed, code, b, err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Producers: each task is retried with its idempotency key until it is
	// acknowledged, so every task ends with one acknowledged ID.
	start := time.Now()
	ids := make([]string, n)
	var next, retries atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				for attempt := 0; ; attempt++ {
					code, b, err := call(http.MethodPost, "/v1/queues/"+queue+"/tasks", fmt.Appendf(nil, "task %d", i), map[string]string{"Idempotency-Key": fmt.Sprintf("task-%d", i)})
					if err == nil && code == http.StatusCreated {
						var e struct{ ID string }
						if json.Unmarshal(b, &e) == nil && e.ID != "" {
							ids[i] = e.ID
							break
						}
					}
					retries.Add(1)
					if attempt > 200 {
						t.Errorf("seed %d: task %d never acknowledged: %d %s %v", seed, i, code, b, err)
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}

	// Faults while the producers and workers run.
	owner := func() *proc {
		resp, err := client.Get("http://" + r.pick().api + "/v1/owner/" + url.PathEscape("{q/"+queue+"}"))
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var p struct {
			Owner struct{ ID string } `json:"owner"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&p)
		return r.byID(p.Owner.ID)
	}
	faults := 0
	producing := make(chan struct{})
	go func() { wg.Wait(); close(producing) }()
	for round := 0; ; round++ {
		select {
		case <-producing:
		case <-time.After(3 * time.Second):
		}
		if next.Load() >= int64(n) || round >= 12 {
			break
		}
		var p *proc
		what := "a worker"
		if round%3 == 0 {
			p, what = owner(), "the queue's owner"
		}
		if p == nil {
			p = r.pick()
		}
		if round == 4 {
			t.Logf("SIGSTOP node %d (%s) for 5s (its leases expire)", p.idx, what)
			p.mu.Lock()
			p.stopped = true
			p.mu.Unlock()
			_ = p.cmd.Process.Signal(syscall.SIGSTOP)
			time.Sleep(5 * time.Second)
			_ = p.cmd.Process.Signal(syscall.SIGCONT)
			p.mu.Lock()
			p.stopped = false
			p.mu.Unlock()
		} else {
			t.Logf("kill -9 node %d (%s) after %d enqueues; restart in 2s", p.idx, what, next.Load())
			p.kill()
			time.Sleep(2 * time.Second)
			r.start(p, r.live()[0].addr)
		}
		faults++
	}
	<-producing
	enqueued := time.Since(start)
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d tasks enqueued in %.1fs (%d retried enqueue calls) under %d faults", n, enqueued.Seconds(), retries.Load(), faults)

	// Wait for the queue to report every task done (bounded).
	deadline = time.Now().Add(5 * time.Minute)
	var st struct {
		Ready, Delayed, Leased, Done, Dead int
	}
	for {
		code, b, err := call(http.MethodGet, "/v1/queues/"+queue, nil, nil)
		if err == nil && code == 200 && json.Unmarshal(b, &st) == nil && st.Done >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("seed %d: tasks not done after 5 minutes: %+v", seed, st)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("all %d tasks done %.1fs after the first enqueue; stats %+v", n, time.Since(start).Seconds(), st)
	if st.Dead != 0 {
		t.Errorf("seed %d: %d tasks dead-lettered", seed, st.Dead)
	}

	// Every acknowledged task's effect exists, applied once; count the
	// raw duplicate executions recorded with it.
	var missing, dups, reads atomic.Int64
	var cw sync.WaitGroup
	var ni atomic.Int64
	for range 16 {
		cw.Go(func() {
			for {
				i := int(ni.Add(1)) - 1
				if i >= n {
					return
				}
				var rec struct{ Runs int }
				ok := false
				for attempt := 0; attempt < 20 && !ok; attempt++ {
					code, b, err := call(http.MethodGet, "/v1/kv/effect/"+queue+"/"+ids[i], nil, nil)
					reads.Add(1)
					switch {
					case err == nil && code == 200:
						if json.Unmarshal(b, &rec) == nil {
							ok = true
						}
					case err == nil && code == 404:
						missing.Add(1)
						ok = true
						rec.Runs = 1
					default:
						time.Sleep(100 * time.Millisecond)
					}
				}
				if !ok {
					t.Errorf("seed %d: could not read the effect of task %d", seed, i)
					return
				}
				dups.Add(int64(rec.Runs - 1))
			}
		})
	}
	cw.Wait()
	t.Logf("effects: %d of %d tasks applied exactly once (create-only writes), %d missing; raw duplicate executions: %d", int64(n)-missing.Load(), n, missing.Load(), dups.Load())
	if missing.Load() > 0 {
		t.Fatalf("seed %d: %d acknowledged tasks have no effect: lost", seed, missing.Load())
	}
}
