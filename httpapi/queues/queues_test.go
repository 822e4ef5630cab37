package queues

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/httpapi"
	"github.com/shoal-p2p/shoal/internal/testring"
	"github.com/shoal-p2p/shoal/taskq"
)

type served struct {
	q *taskq.Queues
	h http.Handler
}

func do(t *testing.T, h http.Handler, method, path, body string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func errCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var e httpapi.Error
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", w.Body, err)
	}
	return e.Code
}

// TestQueueRoutes drives every route over a memnet ring: create, enqueue
// (idempotent), stats, a failing task dead-lettered, dead list, re-drive,
// and the errors a user can cause.
func TestQueueRoutes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := testring.New(t, testring.Options{Seed: 3, Nodes: 4, Attach: func(m *testring.Member) (any, func()) {
			q, err := taskq.New(m.Node, m.KV, taskq.Config{MaxPayload: 1024})
			if err != nil {
				t.Fatalf("taskq: %v", err)
			}
			s := httpapi.New(m.Node, nil)
			Register(s, q)
			return &served{q: q, h: s.Handler()}, func() { q.Close() }
		}})
		defer c.Close()
		a := c.Live()[0].Extra.(*served)
		b := c.Live()[1].Extra.(*served)

		if w := do(t, a.h, "POST", "/v1/queues/nope/tasks", "x", nil); w.Code != 404 || errCode(t, w) != "unknown_queue" {
			t.Fatalf("enqueue to an unknown queue: %d %s", w.Code, w.Body)
		}
		if w := do(t, a.h, "PUT", "/v1/queues/jobs", `{"visibility": "soon"}`, nil); w.Code != 400 {
			t.Fatalf("bad config: %d %s", w.Code, w.Body)
		}
		if w := do(t, a.h, "PUT", "/v1/queues/jobs", `{"visibility": "2s", "max_attempts": 2, "backoff": "100ms"}`, nil); w.Code != 200 {
			t.Fatalf("create: %d %s", w.Code, w.Body)
		}
		w := do(t, a.h, "POST", "/v1/queues/jobs/tasks", "one", map[string]string{"Idempotency-Key": "k1"})
		var e1, e2 Enqueued
		if w.Code != 201 || json.Unmarshal(w.Body.Bytes(), &e1) != nil || e1.ID == "" {
			t.Fatalf("enqueue: %d %s", w.Code, w.Body)
		}
		w = do(t, b.h, "POST", "/v1/queues/jobs/tasks", "one again", map[string]string{"Idempotency-Key": "k1"})
		if w.Code != 201 || json.Unmarshal(w.Body.Bytes(), &e2) != nil || e2.ID != e1.ID {
			t.Fatalf("idempotent enqueue gave %s, first %s (%d %s)", e2.ID, e1.ID, w.Code, w.Body)
		}
		if w := do(t, a.h, "POST", "/v1/queues/jobs/tasks?delay=soon", "x", nil); w.Code != 400 {
			t.Fatalf("bad delay: %d %s", w.Code, w.Body)
		}
		if w := do(t, a.h, "POST", "/v1/queues/jobs/tasks", strings.Repeat("x", 2000), nil); w.Code != 413 {
			t.Fatalf("oversized payload: %d %s", w.Code, w.Body)
		}
		if w := do(t, a.h, "POST", "/v1/queues/jobs/tasks?delay=1h", "later", nil); w.Code != 201 {
			t.Fatalf("delayed enqueue: %d %s", w.Code, w.Body)
		}

		// A worker that always fails: the task dies after 2 attempts.
		wk, err := a.q.Work("jobs", func(context.Context, taskq.Task) error { return errors.New("boom") })
		if err != nil {
			t.Fatal(err)
		}
		var st Stats
		for i := 0; ; i++ {
			w := do(t, b.h, "GET", "/v1/queues/jobs", "", nil)
			if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &st) != nil {
				t.Fatalf("stats: %d %s", w.Code, w.Body)
			}
			if st.Dead == 1 {
				break
			}
			if i > 300 {
				t.Fatalf("seed 3: the failing task never died: %+v", st)
			}
			time.Sleep(100 * time.Millisecond)
		}
		wk.Stop()
		if st.Delayed != 1 || st.Config.MaxAttempts != 2 || st.Owner == "" {
			t.Fatalf("stats %+v", st)
		}
		w = do(t, b.h, "GET", "/v1/queues/jobs/dead", "", nil)
		var dead []DeadTask
		if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &dead) != nil || len(dead) != 1 || dead[0].ID != e1.ID || dead[0].Attempts != 2 || !strings.Contains(dead[0].LastError, "boom") {
			t.Fatalf("dead: %d %s", w.Code, w.Body)
		}
		if w := do(t, a.h, "POST", "/v1/queues/jobs/redrive", `{"ids": 7}`, nil); w.Code != 400 {
			t.Fatalf("bad redrive body: %d %s", w.Code, w.Body)
		}
		w = do(t, a.h, "POST", "/v1/queues/jobs/redrive", "", nil)
		if w.Code != 200 || !strings.Contains(w.Body.String(), `"redriven": 1`) {
			t.Fatalf("redrive: %d %s", w.Code, w.Body)
		}
		done := make(chan struct{})
		var once sync.Once
		wk, err = b.q.Work("jobs", func(context.Context, taskq.Task) error { once.Do(func() { close(done) }); return nil })
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("seed 3: the re-driven task never ran")
		}
		wk.Stop()
	})
}
