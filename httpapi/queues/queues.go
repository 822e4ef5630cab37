// Package queues serves the durable task queues (package taskq) over a
// node's HTTP API:
//
//	PUT  /v1/queues/{queue}            create (or reconfigure) a queue; optional JSON body
//	                                   {"visibility": "30s", "max_attempts": 5, "backoff": "1s",
//	                                   "max_backoff": "1m", "retention": "24h"}; 200 with its stats.
//	POST /v1/queues/{queue}/tasks      body = the task's payload; 201 {"queue", "id"}.
//	                                   Idempotency-Key: K   a second enqueue with K returns the first ID;
//	                                   ?delay=5s            do not start it before then.
//	GET  /v1/queues/{queue}            200 stats: ready, delayed, leased, done, dead, config, owner.
//	GET  /v1/queues/{queue}/dead       200 the dead-letter queue: [{"id", "payload", "attempts",
//	                                   "last_error", "enqueued", "died"}].
//	POST /v1/queues/{queue}/redrive    optional JSON body {"ids": [...]} (none: every dead task);
//	                                   200 {"redriven": N}.
//
// Errors are JSON {"error", "code"}: 400 bad_name / bad_request, 404
// unknown_queue, 413 too_large, 503 unavailable (with Retry-After).
package queues

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/shoal-p2p/shoal/httpapi"
	"github.com/shoal-p2p/shoal/taskq"
)

// CallTimeout bounds one queue operation.
const CallTimeout = 15 * time.Second

// maxBody bounds a payload read: the largest payload taskq accepts by
// default plus room to say it is too large.
const maxBody = 4 << 20

// Config is the JSON body of PUT /v1/queues/{queue}. Durations are Go
// duration strings ("30s"); omitted fields take the defaults.
type Config struct {
	Visibility  string `json:"visibility,omitempty"`
	MaxAttempts int    `json:"max_attempts,omitempty"`
	Backoff     string `json:"backoff,omitempty"`
	MaxBackoff  string `json:"max_backoff,omitempty"`
	Retention   string `json:"retention,omitempty"`
}

// Enqueued is the body of a successful enqueue.
type Enqueued struct {
	Queue string `json:"queue"`
	ID    string `json:"id"`
}

// Stats is the body of GET /v1/queues/{queue}.
type Stats struct {
	Queue   string `json:"queue"`
	Owner   string `json:"owner"`
	Ready   int    `json:"ready"`
	Delayed int    `json:"delayed"`
	Leased  int    `json:"leased"`
	Done    int    `json:"done"`
	Dead    int    `json:"dead"`
	Config  Config `json:"config"`
}

// DeadTask is one entry of GET /v1/queues/{queue}/dead.
type DeadTask struct {
	ID        string    `json:"id"`
	Payload   []byte    `json:"payload"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error"`
	Enqueued  time.Time `json:"enqueued"`
	Died      time.Time `json:"died"`
}

type api struct{ q *taskq.Queues }

// Register adds the queue routes to s, served by q.
func Register(s *httpapi.Server, q *taskq.Queues) {
	a := &api{q: q}
	s.Handle("PUT /v1/queues/{queue}", a.create)
	s.Handle("GET /v1/queues/{queue}", a.stats)
	s.Handle("POST /v1/queues/{queue}/tasks", a.enqueue)
	s.Handle("GET /v1/queues/{queue}/dead", a.dead)
	s.Handle("POST /v1/queues/{queue}/redrive", a.redrive)
}

func (a *api) create(w http.ResponseWriter, r *http.Request) {
	var c Config
	b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		httpapi.WriteError(w, http.StatusBadRequest, "bad_request", "reading the body: "+err.Error())
		return
	}
	if len(b) > 0 {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, "bad_request", "the body must be a queue configuration like {\"visibility\": \"30s\", \"max_attempts\": 5}: "+err.Error())
			return
		}
	}
	qc, err := c.toTaskq()
	if err != nil {
		httpapi.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), CallTimeout)
	defer cancel()
	name := r.PathValue("queue")
	if err := a.q.Create(ctx, name, qc); err != nil {
		writeErr(w, err)
		return
	}
	st, err := a.q.Stats(ctx, name)
	if err != nil {
		writeErr(w, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, fromStats(st))
}

func (a *api) enqueue(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > maxBody {
		httpapi.WriteError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("payload of %d bytes is over the limit", r.ContentLength))
		return
	}
	payload, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	switch {
	case err != nil:
		httpapi.WriteError(w, http.StatusBadRequest, "bad_request", "reading the payload: "+err.Error()+"; nothing was enqueued")
		return
	case len(payload) > maxBody:
		httpapi.WriteError(w, http.StatusRequestEntityTooLarge, "too_large", "payload is over the limit")
		return
	case r.ContentLength >= 0 && int64(len(payload)) != r.ContentLength:
		httpapi.WriteError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("body has %d bytes, Content-Length said %d; nothing was enqueued", len(payload), r.ContentLength))
		return
	}
	var opts []taskq.EnqueueOption
	if k := r.Header.Get("Idempotency-Key"); k != "" {
		opts = append(opts, taskq.IdempotencyKey(k))
	}
	if d := r.URL.Query().Get("delay"); d != "" {
		dd, err := time.ParseDuration(d)
		if err != nil || dd < 0 {
			httpapi.WriteError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("?delay must be a duration like 5s or 2m, got %q", d))
			return
		}
		opts = append(opts, taskq.Delay(dd))
	}
	ctx, cancel := context.WithTimeout(r.Context(), CallTimeout)
	defer cancel()
	name := r.PathValue("queue")
	tid, err := a.q.Enqueue(ctx, name, payload, opts...)
	if err != nil {
		writeErr(w, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, Enqueued{Queue: name, ID: tid})
}

func (a *api) stats(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), CallTimeout)
	defer cancel()
	st, err := a.q.Stats(ctx, r.PathValue("queue"))
	if err != nil {
		writeErr(w, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, fromStats(st))
}

func (a *api) dead(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), CallTimeout)
	defer cancel()
	ds, err := a.q.Dead(ctx, r.PathValue("queue"))
	if err != nil {
		writeErr(w, err)
		return
	}
	out := make([]DeadTask, 0, len(ds))
	for _, d := range ds {
		out = append(out, DeadTask{ID: d.ID, Payload: d.Payload, Attempts: d.Attempts, LastError: d.LastError, Enqueued: d.Enqueued, Died: d.Died})
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

func (a *api) redrive(w http.ResponseWriter, r *http.Request) {
	var req struct {
		IDs []string `json:"ids"`
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		httpapi.WriteError(w, http.StatusBadRequest, "bad_request", "reading the body: "+err.Error())
		return
	}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &req); err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, "bad_request", `the body must be {"ids": ["..."]} or empty (every dead task): `+err.Error())
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), CallTimeout)
	defer cancel()
	n, err := a.q.Redrive(ctx, r.PathValue("queue"), req.IDs...)
	if err != nil {
		writeErr(w, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]int{"redriven": n})
}

func (c Config) toTaskq() (taskq.QueueConfig, error) {
	var qc taskq.QueueConfig
	qc.MaxAttempts = c.MaxAttempts
	for _, f := range []struct {
		name string
		s    string
		d    *time.Duration
	}{{"visibility", c.Visibility, &qc.Visibility}, {"backoff", c.Backoff, &qc.Backoff}, {"max_backoff", c.MaxBackoff, &qc.MaxBackoff}, {"retention", c.Retention, &qc.Retention}} {
		if f.s == "" {
			continue
		}
		d, err := time.ParseDuration(f.s)
		if err != nil || d <= 0 {
			return qc, fmt.Errorf("%s must be a positive duration like 30s, got %q", f.name, f.s)
		}
		*f.d = d
	}
	if c.MaxAttempts < 0 {
		return qc, fmt.Errorf("max_attempts must be positive, got %d", c.MaxAttempts)
	}
	return qc, nil
}

func fromStats(st taskq.Stats) Stats {
	c := st.Config
	return Stats{
		Queue: st.Queue, Owner: st.Owner, Ready: st.Ready, Delayed: st.Delayed, Leased: st.Leased, Done: st.Done, Dead: st.Dead,
		Config: Config{Visibility: c.Visibility.String(), MaxAttempts: c.MaxAttempts, Backoff: c.Backoff.String(), MaxBackoff: c.MaxBackoff.String(), Retention: c.Retention.String()},
	}
}

// writeErr answers a failed queue operation.
func writeErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, taskq.ErrUnknownQueue):
		httpapi.WriteError(w, http.StatusNotFound, "unknown_queue", err.Error()+"; over HTTP: PUT /v1/queues/{queue}, or shoal queue create QUEUE")
	case errors.Is(err, taskq.ErrBadName):
		httpapi.WriteError(w, http.StatusBadRequest, "bad_name", err.Error())
	case errors.Is(err, taskq.ErrTooLarge):
		httpapi.WriteError(w, http.StatusRequestEntityTooLarge, "too_large", err.Error())
	case errors.Is(err, taskq.ErrUnavailable), errors.Is(err, taskq.ErrClosed),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		httpapi.WriteUnavailable(w, "unavailable", err.Error(), time.Second)
	default:
		httpapi.WriteError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}
