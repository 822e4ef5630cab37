package service

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/shoal-p2p/shoal/transport"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Responder delivers the answer to one request. The node supplies it; it
// must be safe to call from any goroutine and called at most once.
type Responder func(Reply)

// Host runs a node's services. Safe for concurrent use.
type Host struct {
	maxBytes int // default request limit
	ceiling  int // the largest any service may accept
	log      *slog.Logger
	now      func() time.Time
	started  time.Time
	grace    time.Duration
	settled  atomic.Bool

	mu        sync.Mutex
	services  map[string]*running
	resources map[string]*resource
	closed    bool

	stats hostStats
}

type hostStats struct {
	unknownService, unknownMethod, badRequest, tooLarge, unsupported, expired atomic.Uint64
}

// HostConfig configures a Host.
type HostConfig struct {
	// Ceiling is the most any service may accept (the node's message
	// limit). Default MaxRequest.
	Ceiling int
	// MaxRequest is the largest request envelope accepted by a service that
	// sets no limit of its own, in bytes.
	// Default 1 MiB.
	MaxRequest int
	// Logger, nil to discard.
	Logger *slog.Logger
	// Now is the clock (tests may fake it). Default time.Now.
	Now func() time.Time
	// StartGrace is how long after the host is made a request for a service
	// that is not registered is answered CodeUnavailable (which callers
	// retry) rather than CodeUnknownService, unless Settle was called: a
	// node joins the ring, and gets requests, before its application has
	// registered its services. Default DefaultStartGrace; negative: none.
	StartGrace time.Duration
}

// DefaultStartGrace is HostConfig.StartGrace's default.
const DefaultStartGrace = 10 * time.Second

// NewHost returns a host with the default resource limits.
func NewHost(cfg HostConfig) *Host {
	if cfg.MaxRequest == 0 {
		cfg.MaxRequest = DefaultMaxRequest
	}
	if cfg.Ceiling < cfg.MaxRequest {
		cfg.Ceiling = cfg.MaxRequest
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.StartGrace == 0 {
		cfg.StartGrace = DefaultStartGrace
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Host{maxBytes: cfg.MaxRequest, ceiling: cfg.Ceiling, log: cfg.Logger.With("subsys", "service"), now: cfg.Now,
		services: make(map[string]*running), resources: make(map[string]*resource), started: cfg.Now(), grace: cfg.StartGrace}
	for name, l := range DefaultLimits() {
		h.resources[name] = &resource{name: name, lim: l}
	}
	return h
}

// DefaultMaxRequest is the default limit on one service request: 1 MiB.
const DefaultMaxRequest = 1 << 20

// MaxRequest is the request size limit in bytes.
func (h *Host) MaxRequest() int { return h.maxBytes }

// SetLimit sets the limits of a resource (creating it).
func (h *Host) SetLimit(name string, l Limits) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r, ok := h.resources[name]; ok {
		r.lim = l
		return
	}
	h.resources[name] = &resource{name: name, lim: l}
}

// OverLimit reports the first of resources that is at or over its limit
// now (no room for one more request), so work that is not a service request
// (a pubsub anycast, say) can decline while the node is overloaded. Unknown
// resources are unlimited.
func (h *Host) OverLimit(resources ...string) (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, name := range resources {
		if r, ok := h.resources[name]; ok && !r.admits(0) {
			return name, true
		}
	}
	return "", false
}

// Settle says every service this host will run is registered: from now on
// a request for any other service is answered CodeUnknownService at once,
// without waiting out HostConfig.StartGrace.
func (h *Host) Settle() { h.settled.Store(true) }

// Register starts a service's loop. A name can be registered once.
func (h *Host) Register(s *Service) error {
	if err := s.validate(); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return fmt.Errorf("service: host is closed")
	}
	if _, dup := h.services[s.name]; dup {
		return fmt.Errorf("service: %q is already registered", s.name)
	}
	for _, u := range s.uses {
		if _, ok := h.resources[u]; !ok {
			h.resources[u] = &resource{name: u} // unlimited until SetLimit
		}
	}
	r := newRunning(h, s)
	h.services[s.name] = r
	go r.loop()
	return nil
}

// Close stops every service loop and waits for them. Requests still queued
// and work still out get no answer (their callers time out and retry,
// elsewhere if this node is leaving); requests dispatched after Close are
// answered with CodeInternal.
func (h *Host) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	svcs := make([]*running, 0, len(h.services))
	for _, r := range h.services {
		svcs = append(svcs, r)
	}
	h.mu.Unlock()
	for _, r := range svcs {
		r.stop()
	}
}

// Dispatch hands one request frame to its service. It never blocks: the
// request is refused, answered from the dedupe window, or queued on the
// service's loop. respond may be nil for one-way messages.
func (h *Host) Dispatch(frame []byte, respond Responder) {
	h.DispatchFrom(frame, transport.Peer{}, respond)
}

// DispatchFrom is Dispatch for a request whose sender is known: from the
// authenticated connection for direct calls, the originating node for
// routed ones. Handlers read it with Call.From.
func (h *Host) DispatchFrom(frame []byte, from transport.Peer, respond Responder) {
	env, bad := DecodeEnvelope(frame, h.ceiling)
	if bad != nil {
		switch bad.Code {
		case CodeTooLarge:
			h.stats.tooLarge.Add(1)
		case CodeUnsupportedVersion:
			h.stats.unsupported.Add(1)
		default:
			h.stats.badRequest.Add(1)
		}
		answer(respond, env.ID, bad)
		return
	}
	h.mu.Lock()
	r := h.services[env.Service]
	h.mu.Unlock()
	if r == nil {
		h.stats.unknownService.Add(1)
		if up := h.now().Sub(h.started); !h.settled.Load() && up < h.grace {
			answer(respond, env.ID, Unavailable(100*time.Millisecond, "no service %q on this node yet: it started %s ago and may still be registering its services", env.Service, up.Round(time.Millisecond)))
			return
		}
		answer(respond, env.ID, &Error{Code: CodeUnknownService, Message: fmt.Sprintf("no service %q on this node", env.Service)})
		return
	}
	if limit := r.limit(h.maxBytes, h.ceiling); len(frame) > limit {
		h.stats.tooLarge.Add(1)
		answer(respond, env.ID, &Error{Code: CodeTooLarge, Message: fmt.Sprintf("request of %d bytes exceeds the limit of %d", len(frame), limit)})
		return
	}
	hd := r.svc.methods[env.Method]
	if hd == nil {
		h.stats.unknownMethod.Add(1)
		answer(respond, env.ID, &Error{Code: CodeUnknownMethod, Message: fmt.Sprintf("service %q has no method %q (it has %v)", env.Service, env.Method, r.methodNames())})
		return
	}
	if dl := env.DeadlineTime(); !dl.IsZero() && h.now().After(dl) {
		h.stats.expired.Add(1)
		return // the caller has given up: do not start the work
	}
	if env.OneWay {
		respond = nil
	}
	r.admit(&request{env: env, handler: hd, respond: respond, size: int64(len(env.Payload)), from: from})
}

func answer(respond Responder, id string, e *Error) {
	if respond != nil {
		respond(Reply{V: Version, ID: id, Err: e})
	}
}

// Stats is a snapshot of the host's counters.
type Stats struct {
	UnknownService uint64                  `json:"unknown_service"`
	UnknownMethod  uint64                  `json:"unknown_method"`
	BadRequest     uint64                  `json:"bad_request"`
	TooLarge       uint64                  `json:"too_large"`
	Unsupported    uint64                  `json:"unsupported_version"`
	Expired        uint64                  `json:"expired"`
	Refused        map[string]uint64       `json:"refused_by_resource"`
	Services       map[string]ServiceStats `json:"services"`
}

// ServiceStats counts one service's work.
type ServiceStats struct {
	Handled    uint64 `json:"handled"`    // handler runs
	Replayed   uint64 `json:"replayed"`   // duplicates answered from the dedupe window
	Joined     uint64 `json:"joined"`     // duplicates that waited for a running original
	Refused    uint64 `json:"refused"`    // refused as overloaded
	Expired    uint64 `json:"expired"`    // dropped from the queue after the caller's deadline
	Panics     uint64 `json:"panics"`     // handler panics (answered CodeInternal)
	Queued     int    `json:"queued"`     // waiting now
	InFlight   int    `json:"in_flight"`  // admitted, not yet answered
	DedupeSize int    `json:"dedupe_len"` // answers held for duplicates
}

// Stats returns the counters.
func (h *Host) Stats() Stats {
	st := Stats{
		UnknownService: h.stats.unknownService.Load(), UnknownMethod: h.stats.unknownMethod.Load(),
		BadRequest: h.stats.badRequest.Load(), TooLarge: h.stats.tooLarge.Load(),
		Unsupported: h.stats.unsupported.Load(), Expired: h.stats.expired.Load(),
		Refused: make(map[string]uint64), Services: make(map[string]ServiceStats),
	}
	h.mu.Lock()
	for name, r := range h.resources {
		if r.refused > 0 {
			st.Refused[name] = r.refused
		}
	}
	svcs := make(map[string]*running, len(h.services))
	for name, r := range h.services {
		svcs[name] = r
	}
	h.mu.Unlock()
	// r.stats takes r.mu, which admit holds while it takes h.mu: never
	// hold h.mu here.
	for name, r := range svcs {
		st.Services[name] = r.stats()
	}
	return st
}

// Services lists the registered service names.
func (h *Host) Services() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.services))
	for n := range h.services {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// request is one admitted request.
type request struct {
	from     transport.Peer
	env      Envelope
	handler  Handler
	respond  Responder
	size     int64
	admitted time.Time
	held     []*resource
}

// Call is one request as its handler sees it. Its methods must be called on
// the service's loop (in the handler or in a continuation), except where noted.
type Call struct {
	r       *running
	req     *request
	replied bool
	pending int // continuations not yet run
	ctx     context.Context
	cancel  context.CancelFunc
}

// Method is the method name.
func (c *Call) Method() string { return c.req.env.Method }

// From is the node that sent the request: authenticated by the connection
// for direct calls (node.CallNode), the originating node for routed ones.
// Zero when unknown.
func (c *Call) From() transport.Peer { return c.req.from }

// ID is the request ID (the same for every retry of one request).
func (c *Call) ID() string { return c.req.env.ID }

// Deadline is the caller's deadline, or zero.
func (c *Call) Deadline() time.Time { return c.req.env.DeadlineTime() }

// Payload is the raw JSON payload.
func (c *Call) Payload() json.RawMessage { return c.req.env.Payload }

// Context carries the caller's deadline; pass it to work started with Go
// (it is what Go passes) and to calls to other nodes, so deadlines propagate.
func (c *Call) Context() context.Context { return c.ctx }

// Decode unmarshals the payload into v. Fields v does not have are
// ignored; a type mismatch is a *Error with CodeBadRequest, ready for Fail.
func (c *Call) Decode(v any) error {
	p := c.req.env.Payload
	if len(p) == 0 {
		p = []byte("null")
	}
	if err := json.Unmarshal(p, v); err != nil {
		return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("%s.%s: bad payload: %v", c.r.svc.name, c.Method(), err)}
	}
	return nil
}

// Reply answers the request with v marshalled as JSON. Later replies are ignored.
func (c *Call) Reply(v any) {
	if c.replied {
		return
	}
	if b, ok := c.marshal(v); ok {
		c.finish(Reply{V: Version, ID: c.ID(), Payload: b})
	}
}

// marshal encodes a reply payload, or fails the call (CodeInternal) if v is
// not JSON.
func (c *Call) marshal(v any) ([]byte, bool) {
	b, err := json.Marshal(v)
	if err != nil {
		c.Fail(&Error{Code: CodeInternal, Message: "reply is not JSON: " + err.Error()})
		return nil, false
	}
	return b, true
}

// Fail answers the request with an error: an *Error keeps its code, any
// other error travels as CodeApp (never retried).
func (c *Call) Fail(err error) {
	if c.replied {
		return
	}
	c.finish(Reply{V: Version, ID: c.ID(), Err: toError(err)})
}

// Hold marks the call as answered later, by code that keeps the *Call and
// replies to it from another handler or continuation on this service's
// loop (for example a per-key queue of requests). Without it, a handler
// that returns without replying or starting work gets CodeInternal.
func (c *Call) Hold() { c.pending++ }

// Go runs work on a goroutine of its own and then, back on the service's
// loop, then with its result. The loop handles other messages meanwhile.
// work gets the call's context (the caller's deadline).
func (c *Call) Go(work func(ctx context.Context) (any, error), then func(v any, err error)) {
	c.pending++
	go func() {
		v, err := safeWork(c.ctx, work)
		c.r.post(func() {
			c.pending--
			c.r.continueCall(c, func() { then(v, err) })
		})
	}()
}

// ReplyAfter answers the request with v once work returns nil, or with
// work's error (as Fail would), straight from work's goroutine: for an
// answer decided on the loop that may only be sent after something slow
// finishes (say, a write reaching the disk). It saves the trip back to the
// loop that Go's continuation takes. v is marshalled now, on the loop; the
// call counts as answered from now on (later Reply and Fail are ignored).
func (c *Call) ReplyAfter(work func(ctx context.Context) error, v any) {
	if c.replied {
		return
	}
	b, ok := c.marshal(v)
	if !ok {
		return
	}
	c.replied = true
	go func() {
		_, err := safeWork(c.ctx, func(ctx context.Context) (any, error) { return nil, work(ctx) })
		rep := Reply{V: Version, ID: c.ID(), Payload: b}
		if err != nil {
			rep = Reply{V: Version, ID: c.ID(), Err: toError(err)}
		}
		c.cancel()
		c.r.done(c.req, rep)
	}()
}

func safeWork(ctx context.Context, work func(context.Context) (any, error)) (v any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &Error{Code: CodeInternal, Message: fmt.Sprintf("async work panicked: %v", p)}
		}
	}()
	return work(ctx)
}

func (c *Call) finish(rep Reply) {
	c.replied = true
	c.cancel()
	c.r.done(c.req, rep)
}
