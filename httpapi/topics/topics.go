// Package topics serves publish/subscribe and anycast over a node's HTTP API:
//
//	POST /v1/topics/{topic}/publish   body = the message; 200 {"topic", "seq"}
//	POST /v1/topics/{topic}/anycast   body = the message; 200 {"topic", "accepted_by", "addrs"}
//	GET  /v1/topics/{topic}/events    Server-Sent Events, one per delivery
//
// {topic} is one URL path segment, percent-escaped: "a/b" is a%2Fb.
//
// Publish answers once the topic's root has given the message its sequence
// number (the publisher's acknowledgement), with that number. Anycast
// answers with the node whose subscriber accepted the message.
//
// The event stream subscribes this node to the topic for as long as the
// client stays connected, and unsubscribes when it goes away (or the server
// closes). It sends:
//
//	event: subscribed   data: {"topic", "node"}   once the subscription is in place
//	event: message      data: {"topic", "seq", "data" | "data_base64", "publisher", "gap", "anycast"}
//	event: dropped      data: {"dropped": n}      n messages were lost because this client read too slowly
//	: ping                                        a comment every 15s, to notice dead clients
//
// "data" holds the message as a string when it is valid UTF-8, otherwise
// "data_base64" holds it base64-encoded (standard alphabet, padded). "gap"
// is the number of sequence numbers the tree skipped before this message
// (after a repair); "anycast" is present and true for an anycast, which has
// no sequence number. A stream accepts an anycast unless its buffer is full,
// so a slow client declines anycasts rather than lose them.
//
// Errors are JSON {"error", "code"}:
//
//	400 bad_topic        empty or over-long topic name
//	404 no_subscribers   anycast to a topic nobody subscribes to. 404 and not
//	                     503: the ring worked and answered; retrying helps
//	                     only once someone subscribes, so no Retry-After.
//	413 too_large        message over the node's limit
//	503 closed           the node's pubsub is shutting down (Retry-After)
//	503 overloaded       a resource is at its limit (Retry-After from the node's hint)
//	503 unavailable      the ring could not take the message in time: no root
//	                     reachable, a repair in progress (Retry-After)
package topics

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/shoal-p2p/shoal/httpapi"
	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/pubsub"
	"github.com/shoal-p2p/shoal/service"
	"github.com/shoal-p2p/shoal/transport"
)

const (
	// MaxBody is the largest request body read. Anything longer is
	// refused with 413 without reading on; anything shorter but over the
	// node's message limit is refused by pubsub, also with 413.
	MaxBody = transport.DefaultMaxFrame
	// CallTimeout bounds one publish or anycast.
	CallTimeout = 10 * time.Second
	// StreamBuffer is how many deliveries may wait for a slow event-stream
	// client before further ones are dropped (and reported).
	StreamBuffer = 1024
	// KeepAlive is the interval between ping comments on an idle stream.
	KeepAlive = 15 * time.Second
	// retryAfter is the hint sent with 503s that carry none of their own.
	retryAfter = time.Second
)

// PublishResult is the body of a successful publish.
type PublishResult struct {
	Topic string `json:"topic"`
	Seq   uint64 `json:"seq"`
}

// AnycastResult is the body of a successful anycast.
type AnycastResult struct {
	Topic      string   `json:"topic"`
	AcceptedBy id.ID    `json:"accepted_by"`
	Addrs      []string `json:"addrs"`
}

// Subscribed is the data of the first event of a stream.
type Subscribed struct {
	Topic string `json:"topic"`
	Node  id.ID  `json:"node"`
}

// Event is the data of a "message" event.
type Event struct {
	Topic      string  `json:"topic"`
	Seq        uint64  `json:"seq"`
	Data       *string `json:"data,omitempty"`
	DataBase64 *string `json:"data_base64,omitempty"`
	Publisher  id.ID   `json:"publisher"`
	Gap        uint64  `json:"gap"`
	Anycast    bool    `json:"anycast,omitempty"`
}

// Bytes returns the message, whichever field carries it.
func (e *Event) Bytes() ([]byte, error) {
	switch {
	case e.Data != nil:
		return []byte(*e.Data), nil
	case e.DataBase64 != nil:
		return base64.StdEncoding.DecodeString(*e.DataBase64)
	}
	return nil, nil
}

// Dropped is the data of a "dropped" event.
type Dropped struct {
	Dropped uint64 `json:"dropped"`
}

// NewEvent turns a delivery into the data of a "message" event.
func NewEvent(d *pubsub.Delivery) Event {
	e := Event{Topic: d.Topic, Seq: d.Seq, Publisher: d.Publisher, Gap: d.Gap, Anycast: d.Anycast}
	if utf8.Valid(d.Data) {
		s := string(d.Data)
		e.Data = &s
	} else {
		s := base64.StdEncoding.EncodeToString(d.Data)
		e.DataBase64 = &s
	}
	return e
}

type api struct {
	ps      *pubsub.PubSub
	self    id.ID
	closing <-chan struct{}
}

// Register adds the topic routes to s, served by ps.
func Register(s *httpapi.Server, ps *pubsub.PubSub) {
	a := &api{ps: ps, self: s.Node().ID(), closing: s.Closing()}
	s.Handle("POST /v1/topics/{topic}/publish", a.publish)
	s.Handle("POST /v1/topics/{topic}/anycast", a.anycast)
	s.Handle("GET /v1/topics/{topic}/events", a.events)
}

// body reads the request body; on failure it has answered and returns false.
func body(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		httpapi.WriteError(w, http.StatusRequestEntityTooLarge, "too_large",
			fmt.Sprintf("message is over %d bytes", tooBig.Limit))
		return nil, false
	case err != nil:
		httpapi.WriteError(w, http.StatusBadRequest, "bad_request", "reading the request body: "+err.Error())
		return nil, false
	}
	return b, true
}

func (a *api) publish(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	data, ok := body(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), CallTimeout)
	defer cancel()
	seq, err := a.ps.Publish(ctx, topic, data)
	if err != nil {
		writeErr(w, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, PublishResult{Topic: topic, Seq: seq})
}

func (a *api) anycast(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	data, ok := body(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), CallTimeout)
	defer cancel()
	p, err := a.ps.Anycast(ctx, topic, data)
	if err != nil {
		writeErr(w, err)
		return
	}
	addrs := p.Addrs
	if addrs == nil {
		addrs = []string{}
	}
	httpapi.WriteJSON(w, http.StatusOK, AnycastResult{Topic: topic, AcceptedBy: p.ID, Addrs: addrs})
}

func (a *api) events(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	ch := make(chan *pubsub.Delivery, StreamBuffer)
	var dropped atomic.Uint64
	h := func(d *pubsub.Delivery) bool {
		select {
		case ch <- d:
			return true
		default:
			if !d.Anycast { // a declined anycast goes to another subscriber
				dropped.Add(1)
			}
			return false
		}
	}
	// ctx bounds only the wait to join the tree (pubsub's SubscribeTimeout
	// applies, as it has no deadline); the subscription lasts until the
	// deferred Close, when the client goes away or the server closes.
	sub, err := a.ps.Subscribe(r.Context(), topic, h)
	if err != nil {
		writeErr(w, err)
		return
	}
	defer sub.Close()

	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Accel-Buffering", "no") // tell proxies not to buffer the stream
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(event string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return err
		}
		return rc.Flush()
	}
	if send("subscribed", Subscribed{Topic: topic, Node: a.self}) != nil {
		return
	}
	ping := time.NewTicker(KeepAlive)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-a.closing:
			return
		case d := <-ch:
			if n := dropped.Swap(0); n > 0 {
				if send("dropped", Dropped{Dropped: n}) != nil {
					return
				}
			}
			if send("message", NewEvent(d)) != nil {
				return
			}
		case <-ping.C:
			if _, err := io.WriteString(w, ": ping\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

// writeErr answers a failed publish, anycast or subscribe.
func writeErr(w http.ResponseWriter, err error) {
	var se *service.Error
	switch {
	case errors.Is(err, pubsub.ErrBadTopic):
		httpapi.WriteError(w, http.StatusBadRequest, "bad_topic", err.Error())
	case errors.Is(err, pubsub.ErrTooLarge), errors.Is(err, node.ErrTooLarge), errors.Is(err, service.ErrTooLarge):
		httpapi.WriteError(w, http.StatusRequestEntityTooLarge, "too_large", err.Error())
	case errors.Is(err, pubsub.ErrNoSubscribers):
		httpapi.WriteError(w, http.StatusNotFound, "no_subscribers", err.Error())
	case errors.Is(err, pubsub.ErrClosed), errors.Is(err, node.ErrClosed):
		httpapi.WriteUnavailable(w, "closed", err.Error(), retryAfter)
	case errors.As(err, &se) && se.Code == service.CodeOverloaded:
		httpapi.WriteUnavailable(w, "overloaded", err.Error(), se.RetryAfter())
	default:
		// Undeliverable, timed out, a root that is moving: the ring could
		// not take the message now.
		httpapi.WriteUnavailable(w, "unavailable", "the ring could not take the message: "+err.Error(), retryAfter)
	}
}
