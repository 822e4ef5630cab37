// Package kv is Shoal's replicated key-value store. Every update of a key
// goes through its owner (the node closest to the key's ID, the "daddy"
// node), which orders it, gives it the next version and replicates it to the
// key's replica set (the owner and its next r-1 nodes clockwise) with a
// Paxos-style protocol; a write is acknowledged once a majority of the
// replicas have it on stable storage. Reads are linearizable by default.
// See docs/kv.md for the protocol and its invariants.
package kv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/service"
	"github.com/shoal-p2p/shoal/transport"
)

// Config configures the store on one node.
type Config struct {
	// Replicas is the replication factor r: each key lives on its owner and
	// the owner's r-1 successors. Default 3 (tolerates one failure).
	Replicas int
	// MaxValue is the largest value in bytes. Default 1 MiB.
	MaxValue int
	// MaxKey is the longest key in bytes. Default 1 KiB.
	MaxKey int
	// Store keeps the replicas. Required: OpenLog(dir, LogConfig{}) on
	// real nodes, NewMemStore() in simulations.
	Store Store
	// SyncInterval is how often a node pulls the ranges it replicates from
	// their other replicas (anti-entropy). Default 10s; ranges it has not
	// synchronised yet are retried every SyncInterval/10.
	SyncInterval time.Duration
	// RoundTimeout bounds one replication round (prepare, accept, confirm).
	// Default 2s.
	RoundTimeout time.Duration
	// ReadLease is how long a yes from a majority of a key's replicas to the
	// owner's accept or confirm lets the owner answer linearizable reads
	// without asking again (the replicas promise no other node meanwhile;
	// docs/kv.md). Default 1s. Longer: fewer rounds; but a new owner of a
	// key (after a crash or a join) waits up to this long before it can
	// serve it, and a restarted node promises nothing for this long.
	// Negative: no leases, every read is confirmed by a round.
	ReadLease time.Duration
	// Retry is the policy clients use to reach a key's owner. Default
	// service.DefaultRetryPolicy().
	Retry service.RetryPolicy
	// Genesis marks the first node of a new ring (started without bootstrap
	// nodes, with an empty store): it starts as the synchronised holder of
	// every range. Every other node synchronises from the replicas first,
	// so a node that is merely alone (cut off) can never claim a key is
	// absent.
	Genesis bool
	// Logger, nil to discard.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults; set Store.
func DefaultConfig() Config {
	return Config{Replicas: 3, MaxValue: 1 << 20, MaxKey: 1 << 10, SyncInterval: 10 * time.Second, RoundTimeout: 2 * time.Second, ReadLease: time.Second, Retry: service.DefaultRetryPolicy()}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Replicas < 1:
		return fmt.Errorf("kv: Replicas must be >= 1, got %d", c.Replicas)
	case c.MaxValue < 1:
		return fmt.Errorf("kv: MaxValue must be >= 1, got %d", c.MaxValue)
	case c.MaxKey < 1:
		return fmt.Errorf("kv: MaxKey must be >= 1, got %d", c.MaxKey)
	case c.Store == nil:
		return fmt.Errorf("kv: Store is required (kv.OpenLog(dir, kv.LogConfig{}) or kv.NewMemStore())")
	case c.SyncInterval <= 0:
		return fmt.Errorf("kv: SyncInterval must be > 0, got %v", c.SyncInterval)
	case c.RoundTimeout <= 0:
		return fmt.Errorf("kv: RoundTimeout must be > 0, got %v", c.RoundTimeout)
	}
	return c.Retry.Validate()
}

// ServiceName is the name of the store's service on every node.
const ServiceName = "kv"

// KV is the store's presence on one node: replica of the keys near it, owner
// of the keys closest to it, and client for everything else.
type KV struct {
	n   *node.Node
	cfg Config
	log *slog.Logger
	r   *replica // touched only on the service loop

	view   atomic.Pointer[cachedLayout] // for ownerByView, on callers' goroutines
	synced atomic.Uint64                // see Synchronised: 1 + the view generation it holds for; 0 if not synchronised

	regressions atomic.Uint64 // see Stats.VersionRegressions

	stop chan struct{}
	done chan struct{}
}

// New starts the store on a node: it loads the node's replicas, registers
// the kv service and begins synchronising the ranges the node replicates.
func New(n *node.Node, cfg Config) (*KV, error) {
	d := DefaultConfig()
	if cfg.Replicas == 0 {
		cfg.Replicas = d.Replicas
	}
	if cfg.MaxValue == 0 {
		cfg.MaxValue = d.MaxValue
	}
	if cfg.MaxKey == 0 {
		cfg.MaxKey = d.MaxKey
	}
	if cfg.SyncInterval == 0 {
		cfg.SyncInterval = d.SyncInterval
	}
	if cfg.RoundTimeout == 0 {
		cfg.RoundTimeout = d.RoundTimeout
	}
	if cfg.ReadLease == 0 {
		cfg.ReadLease = d.ReadLease
	}
	if cfg.Retry == (service.RetryPolicy{}) {
		cfg.Retry = d.Retry
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := &KV{n: n, cfg: cfg, log: log.With("subsys", "kv", "node", n.ID().Short()), stop: make(chan struct{}), done: make(chan struct{})}
	r, err := newReplica(k)
	if err != nil {
		return nil, err
	}
	k.r = r
	if err := n.Handle(r.service()); err != nil {
		return nil, err
	}
	go k.ticker()
	return k, nil
}

// Close stops the store's background work and closes its Store. The node
// keeps running; close the store before the node. First the store gives
// back the read leases its replicas granted it (waiting at most half a
// second for them), so that when the node then leaves the ring the next
// owners of its keys can take them over at once; from then on it answers
// no operation.
func (k *KV) Close() error {
	select {
	case <-k.stop:
		return nil
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*releaseTimeout)
	_ = k.n.CallNode(ctx, k.n.Self(), ServiceName, "leave", struct{}{}, nil, node.WithRetry(service.NoRetry()))
	cancel()
	close(k.stop)
	<-k.done
	return k.cfg.Store.Close()
}

// viewPoll is how often the ticker looks for a change of the leaf set.
const viewPoll = 50 * time.Millisecond

// ticker asks the service loop to run its periodic work: every tenth of
// SyncInterval, and as soon as the leaf set changes (seen within viewPoll),
// so that a node that has become a replica of a range, or whose replica
// set changed, starts copying it at once instead of at the next tick.
func (k *KV) ticker() {
	defer close(k.done)
	t := time.NewTicker(k.cfg.SyncInterval / 10)
	defer t.Stop()
	watch := time.NewTicker(viewPoll)
	defer watch.Stop()
	gen := k.n.View().Gen
	tick := func() {
		gen = k.n.View().Gen
		ctx, cancel := context.WithTimeout(context.Background(), k.cfg.SyncInterval)
		_ = k.n.CallNode(ctx, k.n.Self(), ServiceName, "tick", struct{}{}, nil, node.WithRetry(service.NoRetry()))
		cancel()
	}
	for {
		select {
		case <-k.stop:
			return
		case <-t.C:
			tick()
		case <-watch.C:
			if k.n.View().Gen != gen {
				tick()
			}
		}
	}
}

// Item is a key's value and version.
type Item struct {
	Key     string
	Value   []byte
	Version uint64
}

type readOpts struct{ stale bool }

// ReadOption adjusts a Get.
type ReadOption func(*readOpts)

// Stale reads from the owner's replica without confirming with a majority:
// cheaper, but it may miss the latest writes (for example while ownership
// moves). Reads are linearizable without it.
func Stale() ReadOption { return func(o *readOpts) { o.stale = true } }

type writeOpts struct {
	ifVersion *uint64
	ifAbsent  bool
	req       string
}

// WriteOption makes a write conditional.
type WriteOption func(*writeOpts)

// IfVersion makes the write a compare-and-set: it applies only if the key
// exists at version v, and fails with *VersionMismatchError otherwise.
func IfVersion(v uint64) WriteOption { return func(o *writeOpts) { o.ifVersion = &v } }

// IfAbsent makes the write create-only: it applies only if the key has no value.
func IfAbsent() WriteOption { return func(o *writeOpts) { o.ifAbsent = true } }

// RequestID sets the write's idempotency key (default: random per call,
// kept across its retries). A write whose ID the key has recently seen is
// not applied again; its first result is returned.
func RequestID(id string) WriteOption { return func(o *writeOpts) { o.req = id } }

func (k *KV) checkKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrBadKey)
	}
	if len(key) > k.cfg.MaxKey {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrBadKey, len(key), k.cfg.MaxKey)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("%w: not valid UTF-8", ErrBadKey)
	}
	return nil
}

// KeyID is the ring position of a key. A key that starts with a hash tag,
// "{tag}" followed by anything, is placed by its tag alone: every key
// starting "{orders}" lives on the same owner and replicas, which lets a
// service keep a group of keys together (a task queue keeps its tasks at
// the queue's owner this way). Other keys are placed by the whole key.
func KeyID(key string) id.ID {
	if len(key) > 2 && key[0] == '{' {
		if end := strings.IndexByte(key, '}'); end > 1 {
			return id.HashString("kv:" + key[:end+1])
		}
	}
	return id.HashString("kv:" + key)
}

// LocalItem is a key as this node's replica holds it; see KV.Local.
type LocalItem struct {
	Item
	Deleted   bool // a tombstone
	Committed bool // known to be on a majority; false: accepted here, maybe not chosen
}

type localReq struct {
	Prefix string `json:"prefix"`
}

type localResp struct {
	Items []localItem `json:"items"`
}

type localItem struct {
	Key       string `json:"k"`
	Value     []byte `json:"v,omitempty"`
	Version   uint64 `json:"ver"`
	Deleted   bool   `json:"del,omitempty"`
	Committed bool   `json:"c,omitempty"`
}

// Local lists the keys starting with prefix that this node's own replica
// holds, without asking anyone: no quorum, so an item may be stale, may be
// a value that was never chosen, and keys this replica missed are absent.
// It lets an owner rebuild an index of its keys cheaply after a restart or
// a change of owner; confirm what matters with Get or a compare-and-set.
func (k *KV) Local(ctx context.Context, prefix string) ([]LocalItem, error) {
	var resp localResp
	if err := k.n.CallNode(ctx, k.n.Self(), ServiceName, "local", localReq{Prefix: prefix}, &resp, node.WithRetry(service.NoRetry())); err != nil {
		return nil, err
	}
	out := make([]LocalItem, len(resp.Items))
	for i, it := range resp.Items {
		out[i] = LocalItem{Item: Item{Key: it.Key, Value: it.Value, Version: it.Version}, Deleted: it.Deleted, Committed: it.Committed}
	}
	return out, nil
}

// opReq is a client's request to a key's owner.
type opReq struct {
	Op        string  `json:"op"` // get, put, del
	Key       string  `json:"key"`
	Value     []byte  `json:"value,omitempty"`
	IfVersion *uint64 `json:"if_version,omitempty"`
	IfAbsent  bool    `json:"if_absent,omitempty"`
	Stale     bool    `json:"stale,omitempty"`
	Req       string  `json:"req,omitempty"`
}

type opResp struct {
	Exists   bool   `json:"exists"`
	Version  uint64 `json:"version"`
	Value    []byte `json:"value,omitempty"`
	Mismatch bool   `json:"mismatch,omitempty"`
}

func (k *KV) do(ctx context.Context, req opReq) (opResp, error) {
	var resp opResp
	kid := KeyID(req.Key)
	if to, ok := k.ownerByView(kid); ok {
		// One attempt straight to the owner this node's view names, saving
		// the overlay's routing; the owner checks ownership by its own view
		// either way. Anything but an answer falls back to the routed call,
		// with the same request ID.
		one := k.cfg.Retry
		one.Attempts = 1
		err := k.n.CallNode(ctx, to, ServiceName, "op", req, &resp, node.WithRetry(one), node.WithRequestID(req.Req))
		if err == nil || !retryDirect(err) || ctx.Err() != nil {
			return resp, k.opError(req, err)
		}
		resp = opResp{}
	}
	err := k.n.Call(ctx, kid, ServiceName, "op", req, &resp, node.WithRetry(k.cfg.Retry), node.WithRequestID(req.Req))
	return resp, k.opError(req, err)
}

// retryDirect reports whether a failed direct call should be retried by
// routing: anything but a definite answer from the service.
func retryDirect(err error) bool {
	var se *service.Error
	if errors.As(err, &se) {
		switch se.Code {
		case service.CodeApp, service.CodeBadRequest, service.CodeTooLarge:
			return false
		}
	}
	return true
}

// ownerByView returns the owner of a key by this node's view of the ring,
// when the view settles it: it holds the whole ring, or the key falls
// between two nodes of its window.
func (k *KV) ownerByView(kid id.ID) (transport.Peer, bool) {
	v := k.n.View()
	if !v.Ready {
		return transport.Peer{}, false
	}
	c := k.view.Load()
	if c == nil || c.gen != v.Gen || c.l.self != v.Self.ID {
		c = &cachedLayout{gen: v.Gen, l: newLayout(v, k.cfg.Replicas)}
		k.view.Store(c)
	}
	l := c.l
	if len(l.nodes) == 0 {
		return transport.Peer{}, false
	}
	i := l.ownerIdx(kid)
	if !l.whole && (i == 0 || i == len(l.nodes)-1) {
		return transport.Peer{}, false
	}
	return l.nodes[i], true
}

type cachedLayout struct {
	gen uint64
	l   *layout
}

// opError maps a failed call to the store's errors.
func (k *KV) opError(req opReq, err error) error {
	if err != nil {
		var se *service.Error
		if errors.As(err, &se) {
			switch se.Code {
			case service.CodeApp:
				if se.Message == ambiguousMsg {
					return ErrAmbiguous
				}
			case service.CodeUnavailable, service.CodeOverloaded:
				return fmt.Errorf("%w: %s", ErrUnavailable, se.Message)
			case service.CodeBadRequest, service.CodeTooLarge:
				if req.Op != "get" && len(req.Value) > k.cfg.MaxValue {
					return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(req.Value), k.cfg.MaxValue)
				}
			}
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, node.ErrUndeliverable) {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return err
	}
	return nil
}

// Get reads a key. It returns ErrNotFound if the key has no value.
func (k *KV) Get(ctx context.Context, key string, opts ...ReadOption) (Item, error) {
	if err := k.checkKey(key); err != nil {
		return Item{}, err
	}
	var o readOpts
	for _, f := range opts {
		f(&o)
	}
	resp, err := k.do(ctx, opReq{Op: "get", Key: key, Stale: o.stale, Req: newReqID()})
	if err != nil {
		return Item{}, err
	}
	if !resp.Exists {
		return Item{Key: key, Version: resp.Version}, ErrNotFound
	}
	return Item{Key: key, Value: resp.Value, Version: resp.Version}, nil
}

func (k *KV) write(ctx context.Context, op, key string, value []byte, opts []WriteOption) (uint64, error) {
	if err := k.checkKey(key); err != nil {
		return 0, err
	}
	if len(value) > k.cfg.MaxValue {
		return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(value), k.cfg.MaxValue)
	}
	o := writeOpts{}
	for _, f := range opts {
		f(&o)
	}
	if o.req == "" {
		o.req = newReqID()
	}
	resp, err := k.do(ctx, opReq{Op: op, Key: key, Value: value, IfVersion: o.ifVersion, IfAbsent: o.ifAbsent, Req: o.req})
	if err != nil {
		return 0, err
	}
	if resp.Mismatch {
		e := &VersionMismatchError{Key: key, Have: resp.Version, Exists: resp.Exists, IfAbsent: o.ifAbsent}
		if o.ifVersion != nil {
			e.Want = *o.ifVersion
		}
		return resp.Version, e
	}
	return resp.Version, nil
}

// Put writes a value and returns its new version.
func (k *KV) Put(ctx context.Context, key string, value []byte, opts ...WriteOption) (uint64, error) {
	if value == nil {
		value = []byte{}
	}
	return k.write(ctx, "put", key, value, opts)
}

// Delete removes a key (leaving a tombstone, so versions keep growing if it
// is written again) and returns the tombstone's version.
func (k *KV) Delete(ctx context.Context, key string, opts ...WriteOption) (uint64, error) {
	return k.write(ctx, "del", key, nil, opts)
}

// UpdateAttempts bounds Update's read-modify-write retries.
const UpdateAttempts = 16

// Update reads the key, applies f and writes the result back with a
// compare-and-set on the version read, retrying with backoff when another
// writer got in first. f gets exists=false for an absent key; returning an
// error aborts. After UpdateAttempts conflicts it fails with ErrConflict.
func (k *KV) Update(ctx context.Context, key string, f func(old []byte, exists bool) ([]byte, error)) (Item, error) {
	backoff := 5 * time.Millisecond
	for attempt := 1; attempt <= UpdateAttempts; attempt++ {
		cur, err := k.Get(ctx, key)
		exists := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return Item{}, err
		}
		next, err := f(cur.Value, exists)
		if err != nil {
			return Item{}, err
		}
		var opt WriteOption
		if exists {
			opt = IfVersion(cur.Version)
		} else {
			opt = IfAbsent()
		}
		v, err := k.Put(ctx, key, next, opt)
		if err == nil {
			return Item{Key: key, Value: next, Version: v}, nil
		}
		if !errors.Is(err, ErrVersionMismatch) {
			return Item{}, err
		}
		t := time.NewTimer(backoff + time.Duration(randInt63n(int64(backoff))))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return Item{}, fmt.Errorf("%w: %v", ErrConflict, ctx.Err())
		}
		if backoff < 500*time.Millisecond {
			backoff *= 2
		}
	}
	return Item{}, fmt.Errorf("%w: %q changed under %d consecutive attempts", ErrConflict, key, UpdateAttempts)
}

// Placement is where a key lives, as a node sees it.
type Placement struct {
	Key      string           `json:"key"`
	ID       id.ID            `json:"id"`
	Owner    transport.Peer   `json:"owner"`
	Replicas []transport.Peer `json:"replicas"`
}

// Stats are the store's counters.
type Stats struct {
	// VersionRegressions counts states this node's acceptor was asked to
	// take (by an accept or from anti-entropy) that would have replaced a
	// state it knew to be committed with a lower version under a higher
	// ballot. The protocol makes that impossible (docs/kv.md, invariants 1
	// and 2): a later leader always carries the committed state forward.
	// Each one is logged at error level with the key and both states; any
	// count above zero means an acknowledged write may have been lost, and
	// the fault tests fail on it.
	VersionRegressions uint64 `json:"version_regressions"`
}

// Stats returns the store's counters; safe at any time, also after Close.
func (k *KV) Stats() Stats {
	return Stats{VersionRegressions: k.regressions.Load()}
}

// Synchronised reports whether this node has copied every range it
// replicates, by its current view of the ring. A node new to a range (it
// joined, or a neighbour left or died) copies the range from the range's
// previous replicas before it serves it, and until then writes there may
// answer ErrUnavailable. Once every live node reports true, the ring can
// lose any one node and every range keeps a majority of synchronised
// replicas; losing a second node before then can leave a range without
// one. It is false from the moment the node's view of the ring changes
// until the store has looked at the new view (every SyncInterval/10).
func (k *KV) Synchronised() bool {
	g := k.synced.Load()
	return g != 0 && g == k.n.View().Gen+1
}

// Placement asks the key's owner for its replica set.
func (k *KV) Placement(ctx context.Context, key string) (Placement, error) {
	if err := k.checkKey(key); err != nil {
		return Placement{}, err
	}
	var p Placement
	err := k.n.Call(ctx, KeyID(key), ServiceName, "placement", opReq{Key: key}, &p, node.WithRetry(k.cfg.Retry))
	return p, err
}
