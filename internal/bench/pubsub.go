package bench

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shoal-p2p/shoal/internal/bench/load"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/pubsub"
	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/transport"
)

// Goal of the pubsub case (issue 5): at most this many wire messages per
// delivered message (a tree sends each message once per edge; gossipsub
// sends it about once per mesh link).
const GoalMsgsPerDelivery = 1.2

// PubSubTopic is the topic every pubsub run publishes on.
const PubSubTopic = "bench"

// PubSubConfig configures the pubsub case: one publisher, a subscriber on
// every other node, Messages messages published Interval apart. Zero fields
// take DefaultPubSubConfig's values. The same workload runs on Shoal here
// and on gossipsub in the separate bench/ module, which reuses this config,
// the Recorder and PubSubResult so that both are measured by the same code.
type PubSubConfig struct {
	// Nodes is the ring size, publisher included. Default 20; 2 to 200.
	Nodes int
	// Messages is the number of measured messages. Default 200.
	Messages int
	// Interval separates the starts of two publishes (an open loop, so a
	// slow publish does not slow the rate). Default 10ms.
	Interval time.Duration
	// Payload is the message size in bytes, at least 9 (the benchmark's
	// own header). Default 100.
	Payload int
	// Drain bounds the wait for missing deliveries after the last publish.
	// Default 3s.
	Drain time.Duration
	// Progress, if set, receives one line per step (for stderr).
	Progress func(string)
}

// DefaultPubSubConfig is `shoal bench pubsub` without flags.
func DefaultPubSubConfig() PubSubConfig {
	return PubSubConfig{Nodes: 20, Messages: 200, Interval: 10 * time.Millisecond, Payload: 100, Drain: 3 * time.Second}
}

// WithDefaults fills zero fields from DefaultPubSubConfig.
func (c PubSubConfig) WithDefaults() PubSubConfig {
	d := DefaultPubSubConfig()
	if c.Nodes == 0 {
		c.Nodes = d.Nodes
	}
	if c.Messages == 0 {
		c.Messages = d.Messages
	}
	if c.Interval == 0 {
		c.Interval = d.Interval
	}
	if c.Payload == 0 {
		c.Payload = d.Payload
	}
	if c.Drain == 0 {
		c.Drain = d.Drain
	}
	if c.Progress == nil {
		c.Progress = func(string) {}
	}
	return c
}

// Validate reports the first setting that cannot work. Zero values are
// valid: they mean the default.
func (c PubSubConfig) Validate() error {
	switch {
	case c.Nodes != 0 && (c.Nodes < 2 || c.Nodes > 200):
		return fmt.Errorf("bench: Nodes must be in [2, 200], got %d", c.Nodes)
	case c.Messages < 0 || c.Messages > 100000:
		return fmt.Errorf("bench: Messages must be in [1, 100000], got %d", c.Messages)
	case c.Interval < 0:
		return fmt.Errorf("bench: Interval must be >= 0, got %v", c.Interval)
	case c.Payload != 0 && (c.Payload < probeHeader || c.Payload > 512<<10):
		return fmt.Errorf("bench: Payload must be in [%d, %d] bytes, got %d", probeHeader, 512<<10, c.Payload)
	case c.Drain < 0:
		return fmt.Errorf("bench: Drain must be >= 0, got %v", c.Drain)
	}
	return nil
}

// PubSubResult is what one pubsub run measured, printed by --json as one
// line. Both systems fill the same fields.
type PubSubResult struct {
	System       string  `json:"system"` // "shoal" or "gossipsub"
	Bench        string  `json:"bench"`  // "pubsub"
	Nodes        int     `json:"nodes"`
	Subscribers  int     `json:"subscribers"`
	Messages     int     `json:"messages"`
	PayloadBytes int     `json:"payload_bytes"`
	IntervalMs   float64 `json:"interval_ms"`

	P50ms           float64 `json:"p50_ms"` // publish call start to handler, per delivery
	P99ms           float64 `json:"p99_ms"`
	DeliveredPct    float64 `json:"delivered_pct"` // unique deliveries / (messages × subscribers)
	MsgsPerDelivery float64 `json:"msgs_per_delivery"`

	Deliveries int `json:"deliveries"` // unique (subscriber, message) pairs
	Expected   int `json:"expected"`
	Duplicates int `json:"duplicates"`   // deliveries of a message a subscriber already had
	OutOfOrder int `json:"out_of_order"` // deliveries older than one the subscriber already had (Shoal: by seq; gossipsub: by publish index)
	// MsgsPerDeliveryAll counts control traffic too: (wire_msgs +
	// control_msgs) / deliveries.
	MsgsPerDeliveryAll float64 `json:"msgs_per_delivery_all"`
	WireMsgs           int64   `json:"wire_msgs"`    // the numerator of msgs_per_delivery
	ControlMsgs        int64   `json:"control_msgs"` // protocol traffic not in wire_msgs, same window
	// WireCounts says what WireMsgs and ControlMsgs count for this system.
	WireCounts string  `json:"wire_counts"`
	Topology   string  `json:"topology"`
	SetupS     float64 `json:"setup_s"`
	GOMAXPROCS int     `json:"gomaxprocs"`
	// GoalMsgsMet: Shoal only, msgs_per_delivery <= GoalMsgsPerDelivery.
	GoalMsgsMet *bool `json:"goal_msgs_met,omitempty"`
}

// ratios sets MsgsPerDelivery and MsgsPerDeliveryAll from the counts.
func (r *PubSubResult) ratios() {
	if r.Deliveries > 0 {
		r.MsgsPerDelivery = round(float64(r.WireMsgs)/float64(r.Deliveries), 3)
		r.MsgsPerDeliveryAll = round(float64(r.WireMsgs+r.ControlMsgs)/float64(r.Deliveries), 3)
	}
}

// SetCounts records the wire and control message counts (with what they
// count) and computes the ratios from them and the deliveries.
func (r *PubSubResult) SetCounts(wire, control int64, what string) {
	r.WireMsgs, r.ControlMsgs, r.WireCounts = wire, control, what
	r.ratios()
}

// WriteJSON writes r as one JSON line.
func (r *PubSubResult) WriteJSON(w io.Writer) error { return json.NewEncoder(w).Encode(r) }

// WriteText writes r as a short summary.
func (r *PubSubResult) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "pubsub (%s): %d nodes, %d subscribers, %d messages of %d B every %.0f ms; %s\n",
		r.System, r.Nodes, r.Subscribers, r.Messages, r.PayloadBytes, r.IntervalMs, r.Topology)
	fmt.Fprintf(&b, "  delivered %d of %d (%.2f%%), %d duplicates, %d out of order\n",
		r.Deliveries, r.Expected, r.DeliveredPct, r.Duplicates, r.OutOfOrder)
	fmt.Fprintf(&b, "  publish to delivery: p50 %.2f ms, p99 %.2f ms\n", r.P50ms, r.P99ms)
	fmt.Fprintf(&b, "  %.2f wire messages per delivery (%d: %s)\n", r.MsgsPerDelivery, r.WireMsgs, r.WireCounts)
	fmt.Fprintf(&b, "  %.2f per delivery with the %d control messages of the same window\n", r.MsgsPerDeliveryAll, r.ControlMsgs)
	if r.GoalMsgsMet != nil {
		met := "met"
		if !*r.GoalMsgsMet {
			met = "NOT met"
		}
		fmt.Fprintf(&b, "  goal <= %.1f messages per delivery: %s\n", GoalMsgsPerDelivery, met)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// probeHeader is the benchmark's header in every message: a phase byte
// (probeWarm or probeMeasured) and the message's index.
const probeHeader = 9

const (
	probeWarm     byte = 'w'
	probeMeasured byte = 'm'
)

// EncodeProbe builds a message of size bytes (at least probeHeader).
func EncodeProbe(measured bool, index, size int) []byte {
	b := make([]byte, max(size, probeHeader))
	b[0] = probeWarm
	if measured {
		b[0] = probeMeasured
	}
	binary.BigEndian.PutUint64(b[1:9], uint64(index))
	for i := probeHeader; i < len(b); i++ {
		b[i] = 'x'
	}
	return b
}

// DecodeProbe reads a message's header; ok is false for anything else.
func DecodeProbe(b []byte) (measured bool, index int, ok bool) {
	if len(b) < probeHeader || (b[0] != probeWarm && b[0] != probeMeasured) {
		return false, 0, false
	}
	i := binary.BigEndian.Uint64(b[1:9])
	if i > 1<<31 {
		return false, 0, false
	}
	return b[0] == probeMeasured, int(i), true
}

// Recorder times deliveries: Sent marks a measured message's publish,
// Delivered each arrival at a subscriber. It is safe for concurrent use.
type Recorder struct {
	mu       sync.Mutex
	subs     int
	sent     []time.Time
	seen     [][]bool // [subscriber][message]
	last     []uint64 // highest order key delivered per subscriber
	warm     []bool   // subscriber has had a warm-up message
	warmN    int
	lat      []time.Duration
	dups     int
	disorder int
	strays   int
	done     chan struct{} // closed when every measured message reached every subscriber
}

// NewRecorder records messages measured messages for subs subscribers
// numbered 0 to subs-1.
func NewRecorder(subs, messages int) *Recorder {
	r := &Recorder{subs: subs, sent: make([]time.Time, messages), seen: make([][]bool, subs),
		last: make([]uint64, subs), warm: make([]bool, subs), done: make(chan struct{})}
	for i := range r.seen {
		r.seen[i] = make([]bool, messages)
	}
	return r
}

// Sent marks measured message index as published now.
func (r *Recorder) Sent(index int) {
	r.mu.Lock()
	r.sent[index] = time.Now()
	r.mu.Unlock()
}

// Delivered records that subscriber sub received data now. order is the
// system's own order of the message, which must grow per subscriber:
// Shoal's sequence number; gossipsub, which promises no order, passes 0
// and the publish index is used.
func (r *Recorder) Delivered(sub int, data []byte, order uint64) {
	now := time.Now()
	measured, i, ok := DecodeProbe(data)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case !ok || sub < 0 || sub >= r.subs || (measured && (i >= len(r.sent) || r.sent[i].IsZero())):
		r.strays++
	case !measured:
		if !r.warm[sub] {
			r.warm[sub] = true
			r.warmN++
		}
	case r.seen[sub][i]:
		r.dups++
	default:
		r.seen[sub][i] = true
		if order == 0 {
			order = uint64(i) + 1
		}
		if order < r.last[sub] {
			r.disorder++
		}
		r.last[sub] = max(r.last[sub], order)
		r.lat = append(r.lat, now.Sub(r.sent[i]))
		if len(r.lat) == r.subs*len(r.sent) {
			close(r.done)
		}
	}
}

// Warm reports whether every subscriber has had a warm-up message.
func (r *Recorder) Warm() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.warmN == r.subs
}

// Done is closed once every measured message reached every subscriber.
func (r *Recorder) Done() <-chan struct{} { return r.done }

// Fill writes the delivery figures into res.
func (r *Recorder) Fill(res *PubSubResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	lat := slices.Clone(r.lat)
	slices.Sort(lat)
	res.Subscribers = r.subs
	res.Messages = len(r.sent)
	res.Expected = r.subs * len(r.sent)
	res.Deliveries = len(lat)
	res.Duplicates = r.dups
	res.OutOfOrder = r.disorder
	res.P50ms = millis(load.Percentile(lat, 50))
	res.P99ms = millis(load.Percentile(lat, 99))
	if res.Expected > 0 {
		res.DeliveredPct = round(100*float64(res.Deliveries)/float64(res.Expected), 2)
	}
}

func millis(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 3) }

// WarmUp publishes warm-up messages every 100ms until every subscriber has
// had one or ctx ends: it lets trees, meshes and connections form before
// anything is measured.
func WarmUp(ctx context.Context, rec *Recorder, payload int, publish func(ctx context.Context, data []byte) error) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for i := 0; !rec.Warm(); i++ {
		if err := publish(ctx, EncodeProbe(false, i, payload)); err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("not every subscriber had a warm-up message in time (last publish error: %v): %w", lastErr, ctx.Err())
			}
			return fmt.Errorf("not every subscriber had a warm-up message in time: %w", ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// Measure publishes cfg.Messages measured messages cfg.Interval apart, each
// from its own goroutine so that a slow publish does not delay the next,
// then waits up to cfg.Drain for the last deliveries. A publish error fails
// the run.
func Measure(ctx context.Context, cfg PubSubConfig, rec *Recorder, publish func(ctx context.Context, data []byte) error) error {
	var wg sync.WaitGroup
	errs := make(chan error, cfg.Messages)
	tick := time.NewTicker(max(cfg.Interval, time.Microsecond))
	defer tick.Stop()
	for i := 0; i < cfg.Messages; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				wg.Wait()
				return ctx.Err()
			case <-tick.C:
			}
		}
		data := EncodeProbe(true, i, cfg.Payload)
		rec.Sent(i)
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := publish(pctx, data); err != nil {
				errs <- fmt.Errorf("publish message %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if err := errors.Join(all...); err != nil {
		return err
	}
	drain := time.NewTimer(cfg.Drain)
	defer drain.Stop()
	select {
	case <-rec.Done():
	case <-drain.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// PubSub runs the workload on Shoal: cfg.Nodes nodes over transport/p2p on
// 127.0.0.1/tcp with the 'local' ring and pubsub profiles, node 1 starting
// the ring and the others joining through it; a PubSub on each; a
// subscriber on every node but node 1, which publishes. Latency runs from
// the start of the Publish call to the subscriber's handler. Wire messages
// are the frames pubsub sent for the messages across all nodes (the routed
// hops of each publish to the root, then one push per tree edge), read from
// PubSub.Stats before and after the measured window; control traffic
// (heartbeats, acks) is reported apart.
func PubSub(ctx context.Context, cfg PubSubConfig) (*PubSubResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	t0 := time.Now()
	res := &PubSubResult{System: "shoal", Bench: "pubsub", Nodes: cfg.Nodes, PayloadBytes: cfg.Payload,
		IntervalMs: millis(cfg.Interval), GOMAXPROCS: runtime.GOMAXPROCS(0),
		Topology: "Pastry ring ('local' profile), Scribe tree on the topic's root"}

	setup, cancel := context.WithTimeout(ctx, setupTimeout+time.Duration(cfg.Nodes)*time.Second)
	defer cancel()
	cfg.Progress(fmt.Sprintf("shoal: starting %d nodes on 127.0.0.1", cfg.Nodes))
	nodes := make([]*node.Node, 0, cfg.Nodes)
	pss := make([]*pubsub.PubSub, 0, cfg.Nodes)
	defer func() {
		for _, ps := range pss {
			ps.Close()
		}
		for _, n := range nodes {
			n.Close()
		}
	}()
	var boot []transport.Peer
	for i := 0; i < cfg.Nodes; i++ {
		n, err := startNode(setup, boot)
		if err != nil {
			return nil, fmt.Errorf("start node %d: %w", i+1, err)
		}
		nodes = append(nodes, n)
		if i == 0 {
			boot = []transport.Peer{n.Self()}
		}
		ps, err := pubsub.New(n, pubsub.LocalConfig())
		if err != nil {
			return nil, fmt.Errorf("pubsub on node %d: %w", i+1, err)
		}
		pss = append(pss, ps)
	}
	if err := waitSettled(setup, nodes); err != nil {
		return nil, err
	}
	rec := NewRecorder(cfg.Nodes-1, cfg.Messages)
	for i := 1; i < cfg.Nodes; i++ {
		sub := i - 1
		if _, err := pss[i].Subscribe(setup, PubSubTopic, func(d *pubsub.Delivery) bool {
			rec.Delivered(sub, d.Data, d.Seq)
			return true
		}); err != nil {
			return nil, fmt.Errorf("subscribe on node %d: %w", i+1, err)
		}
	}
	publish := func(ctx context.Context, data []byte) error {
		_, err := pss[0].Publish(ctx, PubSubTopic, data)
		return err
	}
	cfg.Progress("shoal: ring settled and subscribed; warming up until every subscriber has a message")
	if err := WarmUp(setup, rec, cfg.Payload, publish); err != nil {
		return nil, fmt.Errorf("shoal: %w", err)
	}
	res.SetupS = round(time.Since(t0).Seconds(), 2)

	cfg.Progress(fmt.Sprintf("shoal: publishing %d messages every %v", cfg.Messages, cfg.Interval))
	before := sumStats(pss)
	if err := Measure(ctx, cfg, rec, publish); err != nil {
		return nil, fmt.Errorf("shoal: %w", err)
	}
	after := sumStats(pss)
	rec.Fill(res)
	res.SetCounts(after.data-before.data, after.control-before.control,
		"pubsub frames sent by all nodes: routed hops of each publish to the root, tree pushes and replays (PubSub.Stats ForwardedHops+DataSent); control_msgs counts heartbeats, acks, leaves (ControlSent)")
	met := res.MsgsPerDelivery <= GoalMsgsPerDelivery && res.Deliveries > 0
	res.GoalMsgsMet = &met
	return res, nil
}

// waitSettled waits until every node is ready, sure of its range and has a
// full leaf set (or knows every other node in a small ring).
func waitSettled(ctx context.Context, nodes []*node.Node) error {
	want := min(len(nodes)-1, ring.LocalConfig().LeafSetSize)
	for {
		ok := true
		for _, n := range nodes {
			st, err := n.Status(ctx)
			if err != nil {
				return err
			}
			if !st.Ready || !st.Sure || st.LeafSetCount < want {
				ok = false
				break
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ring of %d nodes did not settle: %w", len(nodes), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

type wireCount struct{ data, control int64 }

func sumStats(pss []*pubsub.PubSub) wireCount {
	var c wireCount
	for _, ps := range pss {
		st := ps.Stats()
		c.data += int64(st.DataSent + st.ForwardedHops)
		c.control += int64(st.ControlSent)
	}
	return c
}
