package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// Most tests here run inside a synctest bubble: a reply that never comes is
// reported as a deadlock instead of hanging, and time (the deadlines, the
// host's clock) is virtual.

// send dispatches env and returns where its replies arrive.
func send(t *testing.T, h *Host, env Envelope) chan Reply {
	t.Helper()
	b, err := EncodeEnvelope(env)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan Reply, 4)
	h.Dispatch(b, func(r Reply) { ch <- r })
	return ch
}

// req is a request envelope for svc.m with the given ID and payload.
func req(svc, m, id string, payload any) Envelope {
	p, err := json.Marshal(payload)
	if err != nil {
		panic(err)
	}
	return Envelope{V: Version, Service: svc, Method: m, ID: id, Payload: p}
}

// wantErr fails unless r carries an error with the code.
func wantErr(t *testing.T, r Reply, code string) *Error {
	t.Helper()
	if r.Err == nil {
		t.Fatalf("reply %s: want error %q, got payload %s", r.ID, code, r.Payload)
	}
	if r.Err.Code != code {
		t.Fatalf("reply %s: want error %q, got %v", r.ID, code, r.Err)
	}
	return r.Err
}

// wantOK fails unless r is a success and decodes its payload into v.
func wantOK(t *testing.T, r Reply, v any) {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("reply %s: %v", r.ID, r.Err)
	}
	if v != nil {
		if err := json.Unmarshal(r.Payload, v); err != nil {
			t.Fatalf("reply %s payload %s: %v", r.ID, r.Payload, err)
		}
	}
}

// noReply fails if anything is waiting on ch once the bubble is idle.
func noReply(t *testing.T, ch chan Reply) {
	t.Helper()
	synctest.Wait()
	select {
	case r := <-ch:
		t.Fatalf("unexpected reply %+v", r)
	default:
	}
}

func mustRegister(t *testing.T, h *Host, s *Service) {
	t.Helper()
	if err := h.Register(s); err != nil {
		t.Fatal(err)
	}
}

func echo(c *Call) {
	var v any
	if err := c.Decode(&v); err != nil {
		c.Fail(err)
		return
	}
	c.Reply(v)
}

func TestDispatchAnswersAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHost(HostConfig{})
		defer h.Close()
		mustRegister(t, h, New("echo").Method("say", echo).Method("shout", echo))
		h.Settle()

		var got string
		wantOK(t, <-send(t, h, req("echo", "say", "1", "hi")), &got)
		if got != "hi" {
			t.Fatalf("echo said %q", got)
		}
		r := <-send(t, h, req("nope", "say", "2", nil))
		if e := wantErr(t, r, CodeUnknownService); r.ID != "2" || !strings.Contains(e.Message, `"nope"`) {
			t.Fatalf("unknown service reply %+v", r)
		}
		r = <-send(t, h, req("echo", "whisper", "3", nil))
		if e := wantErr(t, r, CodeUnknownMethod); r.ID != "3" || !strings.Contains(e.Message, "[say shout]") {
			t.Fatalf("unknown method should list the methods there are: %v", e)
		}
		if !errors.Is(r.Err, ErrUnknownMethod) {
			t.Fatal("errors.Is(ErrUnknownMethod)")
		}
		wantErr(t, <-send(t, h, Envelope{V: 2, Service: "echo", Method: "say", ID: "4"}), CodeUnsupportedVersion)
		ch := make(chan Reply, 1)
		h.Dispatch([]byte(`{"v":1,"svc":"echo","m":"say","id":"5"`), func(r Reply) { ch <- r })
		wantErr(t, <-ch, CodeBadRequest)

		st := h.Stats()
		if st.UnknownService != 1 || st.UnknownMethod != 1 || st.Unsupported != 1 || st.BadRequest != 1 {
			t.Fatalf("stats %+v", st)
		}
		if s := st.Services["echo"]; s.Handled != 1 {
			t.Fatalf("only the good request reaches the handler: %+v", s)
		}
		if got := h.Services(); fmt.Sprint(got) != "[echo]" {
			t.Fatalf("Services() = %v", got)
		}
	})
}

func TestOversizeRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHost(HostConfig{MaxRequest: 256})
		defer h.Close()
		if h.MaxRequest() != 256 {
			t.Fatal("MaxRequest")
		}
		mustRegister(t, h, New("echo").Method("say", echo))
		r := <-send(t, h, req("echo", "say", "big", strings.Repeat("x", 300)))
		if e := wantErr(t, r, CodeTooLarge); r.ID != "big" || !strings.Contains(e.Message, "limit of 256") {
			t.Fatalf("%+v %v", r, e)
		}
		wantOK(t, <-send(t, h, req("echo", "say", "small", "x")), nil)
		if st := h.Stats(); st.TooLarge != 1 || st.Services["echo"].Handled != 1 {
			t.Fatalf("stats %+v", st)
		}
		if NewHost(HostConfig{}).MaxRequest() != 1<<20 {
			t.Fatal("default limit is 1 MiB")
		}
	})
}

// The handler's state is a plain map and counter with no lock: the race
// detector proves the loop runs one message at a time, continuations
// included.
func TestOneMessageAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHost(HostConfig{})
		defer h.Close()
		var (
			count   int
			seen    = map[string]int{}
			running atomic.Int32
			maxRun  atomic.Int32
		)
		enter := func() {
			if n := running.Add(1); n > maxRun.Load() {
				maxRun.Store(n)
			}
		}
		mustRegister(t, h, New("counter").
			Method("add", func(c *Call) {
				enter()
				defer running.Add(-1)
				count++
				seen[c.ID()]++
				c.Go(func(context.Context) (any, error) { return nil, nil }, func(any, error) {
					enter()
					defer running.Add(-1)
					count++ // continuations share the loop
					c.Reply(count)
				})
			}))
		const senders, each = 8, 100
		var wg sync.WaitGroup
		var bad atomic.Int32
		for s := 0; s < senders; s++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					b, _ := EncodeEnvelope(req("counter", "add", fmt.Sprintf("%d-%d", s, i), nil))
					ch := make(chan Reply, 1)
					h.Dispatch(b, func(r Reply) { ch <- r })
					if r := <-ch; r.Err != nil {
						bad.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if bad.Load() != 0 {
			t.Fatalf("%d requests failed", bad.Load())
		}
		// Read the service's state from its own loop.
		var gotCount, gotSeen int
		h.mu.Lock()
		r := h.services["counter"]
		h.mu.Unlock()
		done := make(chan struct{})
		r.post(func() { gotCount, gotSeen = count, len(seen); close(done) })
		<-done
		if gotCount != 2*senders*each || gotSeen != senders*each {
			t.Fatalf("count %d seen %d", gotCount, gotSeen)
		}
		if maxRun.Load() != 1 {
			t.Fatalf("%d handlers ran at once", maxRun.Load())
		}
	})
}

func TestContinuationReplies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHost(HostConfig{})
		defer h.Close()
		release := make(chan struct{})
		mustRegister(t, h, New("slow").
			Method("work", func(c *Call) {
				var n int
				if err := c.Decode(&n); err != nil {
					c.Fail(err)
					return
				}
				c.Go(func(ctx context.Context) (any, error) {
					<-release
					return n * 2, nil
				}, func(v any, err error) {
					// Two steps: a continuation may start another.
					c.Go(func(context.Context) (any, error) { return v.(int) + 1, nil }, func(v any, err error) {
						c.Reply(v)
						c.Reply("ignored: a request is answered once")
					})
				})
			}).
			Method("fail", func(c *Call) {
				c.Go(func(context.Context) (any, error) { return nil, errors.New("disk on fire") }, func(_ any, err error) { c.Fail(err) })
			}).
			Method("fast", func(c *Call) { c.Reply("fast") }))
		slow := send(t, h, req("slow", "work", "w", 20))
		// While work is out, the loop serves others.
		var s string
		wantOK(t, <-send(t, h, req("slow", "fast", "f", nil)), &s)
		noReply(t, slow)
		if st := h.Stats().Services["slow"]; st.InFlight != 1 {
			t.Fatalf("in flight: %+v", st)
		}
		close(release)
		var n int
		wantOK(t, <-slow, &n)
		if n != 41 {
			t.Fatalf("got %d", n)
		}
		noReply(t, slow)
		e := wantErr(t, <-send(t, h, req("slow", "fail", "x", nil)), CodeApp)
		if e.Message != "disk on fire" || Retryable(e) {
			t.Fatalf("app error %v", e)
		}
	})
}

func TestHandlerMustAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHost(HostConfig{})
		defer h.Close()
		mustRegister(t, h, New("bad").
			Method("silent", func(c *Call) {}).
			Method("silent-later", func(c *Call) {
				c.Go(func(context.Context) (any, error) { return nil, nil }, func(any, error) {})
			}).
			Method("panic", func(c *Call) { panic("kaboom") }).
			Method("panic-later", func(c *Call) {
				c.Go(func(context.Context) (any, error) { return nil, nil }, func(any, error) { panic("later") })
			}).
			Method("work-panics", func(c *Call) {
				c.Go(func(context.Context) (any, error) { panic("in work") }, func(_ any, err error) { c.Fail(err) })
			}).
			Method("unencodable", func(c *Call) { c.Reply(func() {}) }).
			Method("ok", func(c *Call) { c.Reply(c.ID()) }))
		for _, m := range []struct{ method, msgHas string }{
			{"silent", "returned without replying"},
			{"silent-later", "returned without replying"},
			{"panic", "kaboom"},
			{"panic-later", "later"},
			{"work-panics", "in work"},
			{"unencodable", "not JSON"},
		} {
			e := wantErr(t, <-send(t, h, req("bad", m.method, m.method, nil)), CodeInternal)
			if !strings.Contains(e.Message, m.msgHas) {
				t.Errorf("%s: message %q should say %q", m.method, e.Message, m.msgHas)
			}
			// The loop survives.
			var id string
			wantOK(t, <-send(t, h, req("bad", "ok", "after-"+m.method, nil)), &id)
		}
		if st := h.Stats().Services["bad"]; st.Panics != 2 || st.InFlight != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestDecodeMismatchIsBadRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHost(HostConfig{})
		defer h.Close()
		type order struct {
			SKU string `json:"sku"`
			N   int    `json:"n"`
		}
		mustRegister(t, h, New("shop").Method("buy", func(c *Call) {
			var o order
			if err := c.Decode(&o); err != nil {
				c.Fail(err)
				return
			}
			c.Reply(o)
		}))
		e := wantErr(t, <-send(t, h, req("shop", "buy", "1", map[string]any{"sku": "a", "n": "three"})), CodeBadRequest)
		if !strings.Contains(e.Message, "shop.buy: bad payload") {
			t.Fatalf("message %q", e.Message)
		}
		// Extra payload fields are ignored; a missing payload decodes as null.
		var o order
		wantOK(t, <-send(t, h, req("shop", "buy", "2", map[string]any{"sku": "a", "n": 3, "gift": true})), &o)
		if o != (order{"a", 3}) {
			t.Fatalf("got %+v", o)
		}
		wantOK(t, <-send(t, h, Envelope{V: 1, Service: "shop", Method: "buy", ID: "3"}), &o)
	})
}

func TestDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHost(HostConfig{})
		defer h.Close()
		var ran atomic.Int32
		gate := make(chan struct{})
		started := make(chan struct{}, 1)
		mustRegister(t, h, New("d").
			Method("block", func(c *Call) {
				started <- struct{}{}
				<-gate // blocks the loop: what a handler must not do, to queue the next
				c.Reply(nil)
			}).
			Method("run", func(c *Call) {
				ran.Add(1)
				if _, ok := c.Context().Deadline(); !ok || c.Deadline().IsZero() {
					c.Fail(errors.New("no deadline in context"))
					return
				}
				c.Reply(nil)
			}))
		past := req("d", "run", "late", nil)
		past.Deadline = time.Now().Add(-time.Millisecond).UnixMilli()
		noReply(t, send(t, h, past))
		if st := h.Stats(); st.Expired != 1 || ran.Load() != 0 {
			t.Fatalf("expired request ran: %+v", st)
		}
		ok := req("d", "run", "ok", nil)
		ok.Deadline = time.Now().Add(time.Second).UnixMilli()
		wantOK(t, <-send(t, h, ok), nil)

		// Expires while queued behind a slow request.
		blocked := send(t, h, req("d", "block", "b", nil))
		<-started
		queued := req("d", "run", "queued", nil)
		queued.Deadline = time.Now().Add(100 * time.Millisecond).UnixMilli()
		qch := send(t, h, queued)
		time.Sleep(200 * time.Millisecond)
		close(gate)
		wantOK(t, <-blocked, nil)
		wantErr(t, <-qch, CodeDeadlineExceeded)
		st := h.Stats()
		if ran.Load() != 1 || st.Expired != 2 || st.Services["d"].Expired != 1 {
			t.Fatalf("ran %d, stats %+v", ran.Load(), st)
		}
	})
}

// A disk-heavy service at its limit is refused; a cpu service is not.
func TestAdmissionPerResource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHost(HostConfig{})
		defer h.Close()
		h.SetLimit("disk", Limits{MaxInFlight: 2})
		release := make(chan struct{})
		mustRegister(t, h, New("store").Uses("disk").Method("put", func(c *Call) {
			c.Go(func(context.Context) (any, error) { <-release; return "stored", nil }, func(v any, err error) { c.Reply(v) })
		}))
		mustRegister(t, h, New("calc").Uses("cpu").Method("add", func(c *Call) { c.Reply(1) }))
		// The same resource across services counts together.
		mustRegister(t, h, New("backup").Uses("disk").Method("copy", func(c *Call) { c.Reply("copied") }))

		a := send(t, h, req("store", "put", "a", nil))
		b := send(t, h, req("store", "put", "b", nil))
		r := <-send(t, h, req("store", "put", "c", nil))
		e := wantErr(t, r, CodeOverloaded)
		if e.Resource != "disk" || e.RetryAfterMs <= 0 || r.ID != "c" || !errors.Is(e, ErrOverloaded) || !Retryable(e) {
			t.Fatalf("refusal %+v", e)
		}
		wantErr(t, <-send(t, h, req("backup", "copy", "d", nil)), CodeOverloaded)
		for i := 0; i < 10; i++ {
			wantOK(t, <-send(t, h, req("calc", "add", fmt.Sprint("cpu", i), nil)), nil)
		}
		st := h.Stats()
		if st.Refused["disk"] != 2 || st.Refused["cpu"] != 0 || st.Services["store"].Refused != 1 ||
			st.Services["backup"].Refused != 1 || st.Services["store"].InFlight != 2 || st.Services["calc"].Refused != 0 {
			t.Fatalf("stats %+v", st)
		}
		close(release)
		wantOK(t, <-a, nil)
		wantOK(t, <-b, nil)
		wantOK(t, <-send(t, h, req("backup", "copy", "e", nil)), nil)
	})
}

func TestAdmissionBytes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHost(HostConfig{})
		defer h.Close()
		h.SetLimit("buf", Limits{MaxBytes: 100})
		release := make(chan struct{})
		mustRegister(t, h, New("up").Uses("buf").Method("load", func(c *Call) {
			c.Go(func(context.Context) (any, error) { <-release; return nil, nil }, func(any, error) { c.Reply(nil) })
		}))
		// One request bigger than the limit is admitted when nothing else
		// holds the resource: otherwise it could never run.
		big := send(t, h, req("up", "load", "big", strings.Repeat("x", 150)))
		wantErr(t, <-send(t, h, req("up", "load", "small", "x")), CodeOverloaded)
		close(release)
		wantOK(t, <-big, nil)
		release = make(chan struct{})
		a := send(t, h, req("up", "load", "a", strings.Repeat("x", 60))) // 62 bytes of JSON
		wantErr(t, <-send(t, h, req("up", "load", "b", strings.Repeat("x", 60))), CodeOverloaded)
		c := send(t, h, req("up", "load", "c", strings.Repeat("x", 30)))
		close(release)
		wantOK(t, <-a, nil)
		wantOK(t, <-c, nil)
	})
}

func TestQueueLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHost(HostConfig{})
		defer h.Close()
		gate := make(chan struct{})
		started := make(chan struct{}, 1)
		mustRegister(t, h, New("q").QueueLen(2).Method("m", func(c *Call) {
			if c.ID() == "first" {
				started <- struct{}{}
				<-gate
			}
			c.Reply(c.ID())
		}))
		first := send(t, h, req("q", "m", "first", nil))
		<-started // running, so no longer queued
		q1 := send(t, h, req("q", "m", "q1", nil))
		q2 := send(t, h, req("q", "m", "q2", nil))
		e := wantErr(t, <-send(t, h, req("q", "m", "q3", nil)), CodeOverloaded)
		if e.Resource != "queue:q" || e.RetryAfterMs <= 0 {
			t.Fatalf("refusal %+v", e)
		}
		if st := h.Stats().Services["q"]; st.Queued != 2 || st.Refused != 1 || st.InFlight != 3 {
			t.Fatalf("stats %+v", st)
		}
		close(gate)
		for _, ch := range []chan Reply{first, q1, q2} {
			wantOK(t, <-ch, nil)
		}
	})
}

// One stuck service does not delay another.
func TestServicesRunInParallel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHost(HostConfig{})
		defer h.Close()
		gate := make(chan struct{})
		mustRegister(t, h, New("stuck").Method("m", func(c *Call) { <-gate; c.Reply(nil) }))
		mustRegister(t, h, New("free").Method("m", func(c *Call) { c.Reply(nil) }))
		stuck := send(t, h, req("stuck", "m", "s", nil))
		for i := 0; i < 5; i++ {
			wantOK(t, <-send(t, h, req("free", "m", fmt.Sprint(i), nil)), nil)
		}
		noReply(t, stuck)
		close(gate)
		wantOK(t, <-stuck, nil)
	})
}

// dedupeHost registers "idem" with a dedupe window on a host with a clock
// the test moves, and counts handler runs per request ID.
type dedupeHost struct {
	h    *Host
	now  time.Time
	mu   sync.Mutex
	runs map[string]int
	gate chan struct{} // requests with ID prefix "slow" wait for it
}

func newDedupeHost(t *testing.T, max int, age time.Duration) *dedupeHost {
	d := &dedupeHost{now: time.Unix(1_800_000_000, 0), runs: map[string]int{}, gate: make(chan struct{})}
	d.h = NewHost(HostConfig{Now: func() time.Time { d.mu.Lock(); defer d.mu.Unlock(); return d.now }})
	d.h.SetLimit("slot", Limits{MaxInFlight: 1})
	h := func(c *Call) {
		d.mu.Lock()
		d.runs[c.ID()]++
		n := d.runs[c.ID()]
		d.mu.Unlock()
		var in string
		_ = c.Decode(&in)
		switch in {
		case "fail":
			c.Fail(AppError("no %s", c.ID()))
			return
		case "panic":
			panic("handler bug")
		}
		if strings.HasPrefix(c.ID(), "slow") {
			d.mu.Lock()
			gate := d.gate
			d.mu.Unlock()
			c.Go(func(context.Context) (any, error) { <-gate; return nil, nil }, func(any, error) {
				c.Reply(fmt.Sprintf("%s run %d", in, n))
			})
			return
		}
		c.Reply(fmt.Sprintf("%s run %d", in, n))
	}
	mustRegister(t, d.h, New("idem").Dedupe(max, age).Method("do", h))
	mustRegister(t, d.h, New("idem-slot").Uses("slot").Dedupe(max, age).Method("do", h))
	return d
}

func (d *dedupeHost) advance(dt time.Duration) { d.mu.Lock(); d.now = d.now.Add(dt); d.mu.Unlock() }

func (d *dedupeHost) ran(id string) int { d.mu.Lock(); defer d.mu.Unlock(); return d.runs[id] }

func replyString(t *testing.T, r Reply) string {
	t.Helper()
	var s string
	wantOK(t, r, &s)
	return s
}

func TestDedupeReplaysAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDedupeHost(t, 100, time.Minute)
		defer d.h.Close()
		h := d.h
		first := replyString(t, <-send(t, h, req("idem", "do", "a", "x")))
		// A duplicate, even with a different payload, gets the first answer.
		for i := 0; i < 3; i++ {
			if got := replyString(t, <-send(t, h, req("idem", "do", "a", "y"))); got != first {
				t.Fatalf("duplicate got %q, first answer %q", got, first)
			}
		}
		// Application errors are answers too.
		e1 := wantErr(t, <-send(t, h, req("idem", "do", "f", "fail")), CodeApp)
		e2 := wantErr(t, <-send(t, h, req("idem", "do", "f", "ok")), CodeApp)
		if e1.Message != e2.Message {
			t.Fatalf("%v vs %v", e1, e2)
		}
		if d.ran("a") != 1 || d.ran("f") != 1 {
			t.Fatalf("handler runs: %v", d.runs)
		}
		if st := h.Stats().Services["idem"]; st.Replayed != 4 || st.Handled != 2 || st.DedupeSize != 2 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestDedupeJoinsRunningRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDedupeHost(t, 100, time.Minute)
		defer d.h.Close()
		h := d.h
		orig := send(t, h, req("idem", "do", "slow-1", "x"))
		dups := []chan Reply{send(t, h, req("idem", "do", "slow-1", "x")), send(t, h, req("idem", "do", "slow-1", "x"))}
		noReply(t, orig)
		close(d.gate)
		want := replyString(t, <-orig)
		for _, ch := range dups {
			if got := replyString(t, <-ch); got != want {
				t.Fatalf("joined duplicate got %q, want %q", got, want)
			}
		}
		if d.ran("slow-1") != 1 {
			t.Fatalf("ran %d times", d.ran("slow-1"))
		}
		if st := h.Stats().Services["idem"]; st.Joined != 2 || st.Handled != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestDedupeWindowBounds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDedupeHost(t, 2, time.Minute)
		defer d.h.Close()
		h := d.h
		for _, id := range []string{"a", "b", "c"} {
			replyString(t, <-send(t, h, req("idem", "do", id, "x")))
		}
		if st := h.Stats().Services["idem"]; st.DedupeSize != 2 {
			t.Fatalf("window of 2 holds %d", st.DedupeSize)
		}
		// "a" was pushed out by count: its duplicate runs again.
		if got := replyString(t, <-send(t, h, req("idem", "do", "a", "x"))); got != "x run 2" {
			t.Fatalf("a: %q", got)
		}
		// "c" is still in the window.
		if got := replyString(t, <-send(t, h, req("idem", "do", "c", "x"))); got != "x run 1" {
			t.Fatalf("c: %q", got)
		}
		// By age: after maxAge everything is forgotten.
		d.advance(59 * time.Second)
		if got := replyString(t, <-send(t, h, req("idem", "do", "c", "x"))); got != "x run 1" {
			t.Fatalf("c within the age: %q", got)
		}
		d.advance(2 * time.Second)
		if got := replyString(t, <-send(t, h, req("idem", "do", "c", "x"))); got != "x run 2" {
			t.Fatalf("c after the age: %q", got)
		}
		if st := h.Stats().Services["idem"]; st.DedupeSize > 2 {
			t.Fatalf("window grew to %d", st.DedupeSize)
		}
	})
}

// A request that failed with an internal error is forgotten, so its retry
// runs; that retry's answer is then held like any other, pushed out only by
// maxEntries newer answers.
func TestDedupeRetryAfterInternalError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDedupeHost(t, 2, time.Hour)
		defer d.h.Close()
		h := d.h
		replyString(t, <-send(t, h, req("idem", "do", "b", "ok")))
		wantErr(t, <-send(t, h, req("idem", "do", "x", "panic")), CodeInternal)
		if got := replyString(t, <-send(t, h, req("idem", "do", "x", "ok"))); got != "ok run 2" {
			t.Fatalf("retry after internal: %q", got)
		}
		replyString(t, <-send(t, h, req("idem", "do", "a", "ok")))
		// The window of 2 holds x and a.
		if got := replyString(t, <-send(t, h, req("idem", "do", "x", "ok"))); got != "ok run 2" {
			t.Fatalf("x was pushed out of a window of 2 by one newer answer: %q", got)
		}
		if got := replyString(t, <-send(t, h, req("idem", "do", "a", "ok"))); got != "ok run 1" {
			t.Fatalf("a: %q", got)
		}
		if st := h.Stats().Services["idem"]; st.DedupeSize != 2 || st.Replayed != 2 {
			t.Fatalf("stats %+v", st)
		}
		// b, the oldest, was the one pushed out.
		if got := replyString(t, <-send(t, h, req("idem", "do", "b", "ok"))); got != "ok run 2" {
			t.Fatalf("b: %q", got)
		}
	})
}

func TestDedupeDoesNotCacheRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDedupeHost(t, 100, time.Minute)
		defer d.h.Close()
		h := d.h
		hold := send(t, h, req("idem-slot", "do", "slow-hold", "x")) // takes the only slot
		wantErr(t, <-send(t, h, req("idem-slot", "do", "a", "x")), CodeOverloaded)
		close(d.gate)
		replyString(t, <-hold)
		// The retry runs the handler rather than replaying the refusal.
		if got := replyString(t, <-send(t, h, req("idem-slot", "do", "a", "x"))); got != "x run 1" {
			t.Fatalf("retry after overload: %q", got)
		}
		// Neither is an expiry remembered.
		late := req("idem", "do", "late", "x")
		late.Deadline = time.Unix(1_800_000_000, 0).Add(-time.Second).UnixMilli()
		noReply(t, send(t, h, late))
		if got := replyString(t, <-send(t, h, req("idem", "do", "late", "x"))); got != "x run 1" {
			t.Fatalf("after expiry: %q", got)
		}
	})
}

// The retry-after hint is the typical time a request holds the resource,
// measured on the host's clock.
func TestRetryAfterFollowsHoldingTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDedupeHost(t, 100, time.Hour)
		defer d.h.Close()
		h := d.h
		for i := 0; i < 40; i++ {
			gate := make(chan struct{})
			d.mu.Lock()
			d.gate = gate
			d.mu.Unlock()
			hold := send(t, h, req("idem-slot", "do", fmt.Sprint("slow-", i), "x"))
			synctest.Wait()
			d.advance(400 * time.Millisecond)
			close(gate)
			replyString(t, <-hold)
		}
		d.mu.Lock()
		d.gate = make(chan struct{})
		d.mu.Unlock()
		hold := send(t, h, req("idem-slot", "do", "slow-last", "x"))
		e := wantErr(t, <-send(t, h, req("idem-slot", "do", "b", "x")), CodeOverloaded)
		// 40 samples of 400ms through an EWMA with alpha 0.1: 400ms·(1-0.9^40) ≈ 394ms.
		if e.RetryAfter() < 300*time.Millisecond || e.RetryAfter() > 400*time.Millisecond {
			t.Fatalf("retry-after %v, want about 394ms", e.RetryAfter())
		}
		close(d.gate)
		replyString(t, <-hold)
	})
}

func TestRegisterValidates(t *testing.T) {
	h := NewHost(HostConfig{})
	ok := func(c *Call) { c.Reply(nil) }
	for _, tt := range []struct {
		s    *Service
		want string
	}{
		{New("").Method("m", ok), "name must be 1 to 128"},
		{New(strings.Repeat("n", 129)).Method("m", ok), "name must be 1 to 128"},
		{New("s"), "no methods"},
		{New("s").Method("", ok), "method name"},
		{New("s").Method("m", ok).QueueLen(0), "QueueLen must be >= 1, got 0"},
		{New("s").Method("m", ok).Dedupe(0, time.Minute), "Dedupe needs maxEntries >= 1"},
		{New("s").Method("m", ok).Dedupe(5, 0), "maxAge > 0"},
	} {
		if err := h.Register(tt.s); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Register(%q) = %v, want %q", tt.s.Name(), err, tt.want)
		}
	}
	if err := h.Register(New("s").Method("m", ok)); err != nil {
		t.Fatal(err)
	}
	if err := h.Register(New("s").Method("m", ok)); err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Fatalf("second registration: %v", err)
	}
	h.Close()
	h.Close() // idempotent
	if err := h.Register(New("t").Method("m", ok)); err == nil {
		t.Fatal("register after close")
	}
	// After Close a request is answered, not lost.
	ch := make(chan Reply, 1)
	b, _ := EncodeEnvelope(req("s", "m", "x", nil))
	h.Dispatch(b, func(r Reply) { ch <- r })
	select {
	case r := <-ch:
		wantErr(t, r, CodeInternal)
	default:
		t.Fatal("no answer after Close")
	}
}

// Stats, Dispatch and replies from many goroutines at once: no deadlock
// and nothing lost. Not in a bubble: a lock-order deadlock would hang
// synctest rather than fail it, so a watchdog reports it.
func TestConcurrentStatsAndDispatch(t *testing.T) {
	h := NewHost(HostConfig{}) // closed only on success: Close would hang on a deadlocked host
	h.SetLimit("disk", Limits{MaxInFlight: 4})
	mustRegister(t, h, New("a").Uses("disk").Method("m", func(c *Call) {
		c.Go(func(context.Context) (any, error) { return nil, nil }, func(any, error) { c.Reply(nil) })
	}))
	mustRegister(t, h, New("b").Dedupe(64, time.Minute).Method("m", func(c *Call) { c.Reply(nil) }))
	done := make(chan struct{})
	var answered atomic.Int64
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(2)
			go func() {
				defer wg.Done()
				for i := 0; i < 2000; i++ {
					_ = h.Stats()
				}
			}()
			go func() {
				defer wg.Done()
				for i := 0; i < 2000; i++ {
					svc := []string{"a", "b"}[i%2]
					b, _ := EncodeEnvelope(req(svc, "m", fmt.Sprint(g, "-", i%100), nil))
					ch := make(chan Reply, 1)
					h.Dispatch(b, func(Reply) { ch <- Reply{} })
					<-ch
					answered.Add(1)
				}
			}()
		}
		wg.Wait()
	}()
	watchdog := time.NewTimer(30 * time.Second)
	defer watchdog.Stop()
	select {
	case <-done:
		h.Close()
	case <-watchdog.C:
		t.Fatalf("deadlock: %d requests answered, then nothing for 30s", answered.Load())
	}
}

// Close returns while work started with Go is still out and while requests
// wait in the queue. Those get no answer (their callers time out and retry
// elsewhere: an internal error would not be retried); a request arriving
// after Close is answered internal at once.
func TestCloseWithWorkOutstanding(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHost(HostConfig{})
		release := make(chan struct{})
		gate := make(chan struct{})
		started := make(chan struct{}, 1)
		mustRegister(t, h, New("w").
			Method("go", func(c *Call) {
				c.Go(func(context.Context) (any, error) { <-release; return nil, nil }, func(any, error) { c.Reply("late") })
			}).
			Method("block", func(c *Call) { started <- struct{}{}; <-gate; c.Reply(nil) }).
			Method("m", func(c *Call) { c.Reply(nil) }))
		out := send(t, h, req("w", "go", "out", nil))
		synctest.Wait()
		blocked := send(t, h, req("w", "block", "blocked", nil))
		<-started
		queued := send(t, h, req("w", "m", "queued", nil))
		closed := make(chan struct{})
		go func() { h.Close(); close(closed) }()
		synctest.Wait()
		close(gate) // Close waits for the running handler, not for queued work
		<-closed
		wantOK(t, <-blocked, nil)
		close(release)
		noReply(t, out)
		noReply(t, queued)
		wantErr(t, <-send(t, h, req("w", "m", "after", nil)), CodeInternal)
	})
}

// TestStartGrace: until the host is settled, and for StartGrace after it
// was made, a request for a service that is not registered (yet) is a
// retryable "unavailable"; then it is "unknown service".
func TestStartGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHost(HostConfig{StartGrace: 5 * time.Second})
		defer h.Close()
		r := <-send(t, h, req("late", "say", "1", nil))
		if e := wantErr(t, r, CodeUnavailable); !strings.Contains(e.Message, `"late"`) || e.RetryAfter() <= 0 || !Retryable(e) {
			t.Fatalf("unregistered service at start: %+v", e)
		}
		mustRegister(t, h, New("late").Method("say", echo))
		var got string
		wantOK(t, <-send(t, h, req("late", "say", "2", "hi")), &got)
		if got != "hi" {
			t.Fatalf("late service said %q", got)
		}
		time.Sleep(5 * time.Second)
		wantErr(t, <-send(t, h, req("nope", "say", "3", nil)), CodeUnknownService)

		h2 := NewHost(HostConfig{StartGrace: time.Hour})
		defer h2.Close()
		h2.Settle()
		wantErr(t, <-send(t, h2, req("nope", "say", "4", nil)), CodeUnknownService)

		h3 := NewHost(HostConfig{StartGrace: -1})
		defer h3.Close()
		wantErr(t, <-send(t, h3, req("nope", "say", "5", nil)), CodeUnknownService)
	})
}

// TestReplyAfter: the answer decided on the loop goes out when the work
// finishes, from the work's goroutine; the loop serves others meanwhile;
// later replies are ignored; a failed work answers its error.
func TestReplyAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHost(HostConfig{})
		defer h.Close()
		gate := make(chan struct{})
		mustRegister(t, h, New("disk").
			Method("write", func(c *Call) {
				c.ReplyAfter(func(context.Context) error { <-gate; return nil }, "durable")
				c.Reply("too early") // ignored: the call is answered
			}).
			Method("broken", func(c *Call) {
				c.ReplyAfter(func(context.Context) error { return Unavailable(time.Second, "disk gone") }, "never")
			}).
			Method("ping", echo))
		first := send(t, h, req("disk", "write", "1", nil))
		var got string
		wantOK(t, <-send(t, h, req("disk", "ping", "2", "pong")), &got) // the loop is free
		synctest.Wait()
		select {
		case r := <-first:
			t.Fatalf("answered before the work finished: %+v", r)
		default:
		}
		close(gate)
		wantOK(t, <-first, &got)
		if got != "durable" {
			t.Fatalf("ReplyAfter answered %q", got)
		}
		if e := wantErr(t, <-send(t, h, req("disk", "broken", "3", nil)), CodeUnavailable); !strings.Contains(e.Message, "disk gone") {
			t.Fatalf("failed work answered %+v", e)
		}
	})
}
