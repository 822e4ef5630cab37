package node

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/service"
	"github.com/shoal-p2p/shoal/transport"
)

// Handle registers a service on this node. Requests for it arrive through
// Call (routed to the owner of a key) or CallNode (sent to this node).
func (n *Node) Handle(s *service.Service) error { return n.host.Register(s) }

// ServicesRegistered tells the node that the application has registered
// every service it will run. Until then, for Config.ServiceGrace after the
// node started, a request for a service it does not have is answered
// "unavailable" (callers retry it) rather than "unknown service": a node
// joins the ring, and may own keys, before its services are registered.
func (n *Node) ServicesRegistered() { n.host.Settle() }

// SetLimit sets the admission limits of a resource that services declare
// with Uses.
func (n *Node) SetLimit(resource string, l service.Limits) { n.host.SetLimit(resource, l) }

// OverLimit reports the first of the named resources that is at or over its
// admission limit now (see service.Host.OverLimit).
func (n *Node) OverLimit(resources ...string) (string, bool) { return n.host.OverLimit(resources...) }

// ServiceStats returns the service host's counters.
func (n *Node) ServiceStats() service.Stats { return n.host.Stats() }

// respond returns the Responder that answers m with a service Reply.
func (n *Node) respond(m *Message) service.Responder {
	if m.reqID == 0 {
		return nil
	}
	return func(rep service.Reply) {
		b, err := service.EncodeReply(rep)
		if err != nil {
			m.Fail("reply is not encodable: " + err.Error())
			return
		}
		m.Reply(b)
	}
}

// CallOption adjusts one Call.
type CallOption func(*callOpts)

type callOpts struct {
	policy service.RetryPolicy
	id     string
}

// WithRetry sets the retry policy (default service.DefaultRetryPolicy()).
func WithRetry(p service.RetryPolicy) CallOption { return func(o *callOpts) { o.policy = p } }

// WithRequestID sets the request ID, the idempotency key a service with a
// dedupe window recognises duplicates by. By default each Call gets a random
// one, kept across its retries; set it to make a call idempotent across
// process restarts of the caller too.
func WithRequestID(id string) CallOption { return func(o *callOpts) { o.id = id } }

var rngMu sync.Mutex
var jitterRng = rand.New(rand.NewSource(int64(randomUint64() >> 1)))

func newRequestID() string {
	var b [16]byte
	if _, err := crand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b[:])
}

// Call sends req to the service on the node that owns key, waits for the
// answer and decodes it into resp (which may be nil). It retries by the
// policy on timeouts, overloads and owner changes, keeping the request ID,
// so a service with a dedupe window runs it once. A *service.Error comes back
// as is (errors.Is(err, service.ErrUnknownMethod), …).
func (n *Node) Call(ctx context.Context, key id.ID, svc, method string, req, resp any, opts ...CallOption) error {
	return n.call(ctx, &key, nil, svc, method, req, resp, opts)
}

// CallNode is Call to a known node instead of a key's owner.
func (n *Node) CallNode(ctx context.Context, to transport.Peer, svc, method string, req, resp any, opts ...CallOption) error {
	return n.call(ctx, nil, &to, svc, method, req, resp, opts)
}

// Notify sends req one way to the service on the owner of key. Best effort:
// nothing tells the caller whether it arrived.
func (n *Node) Notify(ctx context.Context, key id.ID, svc, method string, req any) error {
	p, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("node: %s.%s: request is not JSON: %w", svc, method, err)
	}
	frame, err := service.EncodeEnvelope(service.Envelope{Service: svc, Method: method, OneWay: true, Deadline: deadlineOf(ctx), Payload: p})
	if err != nil {
		return err
	}
	if len(frame) > n.cfg.MaxMessage {
		return &service.Error{Code: service.CodeTooLarge, Message: fmt.Sprintf("request of %d bytes exceeds the limit of %d", len(frame), n.cfg.MaxMessage)}
	}
	f := appFrame{kind: kindSvcOneWay, deadline: deadlineOf(ctx), data: frame}.append(nil)
	return n.do(ctx, func() { n.core.Route(time.Now(), key, f) })
}

// NotifyNode is Notify to a known node instead of a key's owner: one
// message, no answer, best effort.
func (n *Node) NotifyNode(ctx context.Context, to transport.Peer, svc, method string, req any) error {
	if n.closed.Load() {
		return ErrClosed
	}
	p, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("node: %s.%s: request is not JSON: %w", svc, method, err)
	}
	frame, err := service.EncodeEnvelope(service.Envelope{Service: svc, Method: method, OneWay: true, Deadline: deadlineOf(ctx), Payload: p})
	if err != nil {
		return err
	}
	if len(frame) > n.cfg.MaxMessage {
		return &service.Error{Code: service.CodeTooLarge, Message: fmt.Sprintf("request of %d bytes exceeds the limit of %d", len(frame), n.cfg.MaxMessage)}
	}
	if to.ID == n.self.ID {
		n.enqueue(&Message{From: n.self, Payload: frame, Direct: true, n: n, service: true})
		return nil
	}
	return n.send(ctx, to, appFrame{kind: kindSvcOneWay, deadline: deadlineOf(ctx), data: frame}.direct())
}

func (n *Node) call(ctx context.Context, key *id.ID, to *transport.Peer, svc, method string, req, resp any, opts []CallOption) error {
	o := callOpts{policy: service.DefaultRetryPolicy()}
	for _, f := range opts {
		f(&o)
	}
	if err := o.policy.Validate(); err != nil {
		return err
	}
	if o.id == "" {
		o.id = newRequestID()
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.policy.Overall)
		defer cancel()
	}
	p, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("node: %s.%s: request is not JSON: %w", svc, method, err)
	}
	frame, err := service.EncodeEnvelope(service.Envelope{Service: svc, Method: method, ID: o.id, Deadline: deadlineOf(ctx), Payload: p})
	if err != nil {
		return err
	}
	if len(frame) > n.cfg.MaxMessage {
		return &service.Error{Code: service.CodeTooLarge, Message: fmt.Sprintf("request of %d bytes exceeds the limit of %d; send less or raise MaxMessage on every node", len(frame), n.cfg.MaxMessage)}
	}
	var last error
	for attempt := 1; attempt <= o.policy.Attempts; attempt++ {
		actx, cancel := context.WithTimeout(ctx, o.policy.PerAttempt)
		raw, err := n.exchange(actx, key, to, kindSvcCall, frame)
		cancel()
		if err == nil {
			rep, derr := service.DecodeReply(raw)
			switch {
			case derr != nil:
				err = derr
			case rep.Err != nil:
				err = rep.Err
			default:
				if resp == nil || len(rep.Payload) == 0 {
					return nil
				}
				if uerr := json.Unmarshal(rep.Payload, resp); uerr != nil {
					return fmt.Errorf("node: %s.%s: reply does not fit %T: %w", svc, method, resp, uerr)
				}
				return nil
			}
		}
		last = err
		if !retryable(err) || ctx.Err() != nil || attempt == o.policy.Attempts {
			break
		}
		rngMu.Lock()
		wait := o.policy.Wait(attempt, err, jitterRng)
		rngMu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		case <-n.done:
			// The node closed: no attempt after this one could leave.
			t.Stop()
			return fmt.Errorf("%w (while waiting to retry %s.%s: %v)", ErrClosed, svc, method, last)
		}
		if ctx.Err() != nil {
			break
		}
	}
	if ctx.Err() != nil && !errors.As(last, new(*service.Error)) {
		return fmt.Errorf("node: %s.%s: no answer before the deadline (%v); last error: %w", svc, method, ctx.Err(), last)
	}
	return last
}

// retryable: service errors only when overloaded; node-level errors when the
// message could not be delivered or an attempt timed out.
func retryable(err error) bool {
	var se *service.Error
	if errors.As(err, &se) {
		return se.Code == service.CodeOverloaded || se.Code == service.CodeUnavailable
	}
	var re *RemoteError
	if errors.As(err, &re) {
		return false
	}
	return errors.Is(err, ErrUndeliverable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, transport.ErrNoAddress)
}
