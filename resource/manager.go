package resource

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-p2p/shoal/kv"
)

// Manager hands out leases on the resources of pools stored in kv. One per
// node; safe for concurrent use.
type Manager struct {
	kv  *kv.KV
	cfg Config
	log *slog.Logger
	now func() time.Time

	mu     sync.Mutex
	pools  map[string]map[string]bool // names known to exist (pools only grow, so this never lies)
	closed bool

	ctx    context.Context // ends at Close; stops KeepAlive goroutines
	cancel context.CancelFunc
	wg     sync.WaitGroup

	st struct{ acquired, takenOver, renewed, released, lost, unknown atomic.Uint64 }
}

// Stats counts what a Manager has done since it started.
type Stats struct {
	Acquired  uint64 // leases granted (TakenOver included)
	TakenOver uint64 // of which taken from an expired holder
	Renewed   uint64 // successful renewals
	Released  uint64 // successful releases
	Lost      uint64 // renewals or releases that found the lease gone
	Unknown   uint64 // writes whose outcome kv could not tell, resolved by reading back
}

// New returns a Manager storing its pools in store.
func New(store *kv.KV, cfg Config) (*Manager, error) {
	if store == nil {
		return nil, fmt.Errorf("resource: New needs a *kv.KV")
	}
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{kv: store, cfg: cfg, log: log.With("subsys", "resource", "holder", cfg.Holder), now: cfg.Clock,
		pools: map[string]map[string]bool{}, ctx: ctx, cancel: cancel}, nil
}

// Close stops the Manager's KeepAlive goroutines and waits for them. Leases
// are not released: they expire.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
	return nil
}

// Stats returns the Manager's counters.
func (m *Manager) Stats() Stats {
	return Stats{Acquired: m.st.acquired.Load(), TakenOver: m.st.takenOver.Load(), Renewed: m.st.renewed.Load(),
		Released: m.st.released.Load(), Lost: m.st.lost.Load(), Unknown: m.st.unknown.Load()}
}

// Config returns the Manager's configuration with defaults filled in.
func (m *Manager) Config() Config { return m.cfg }

// storeErr turns a kv failure into ErrUnavailable (keeping the cause).
func storeErr(op string, err error) error {
	if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrCorrupt) {
		return err
	}
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

// DefinePool creates a pool or adds names to it. It is idempotent and
// never removes a name, so a held resource never disappears from its pool.
func (m *Manager) DefinePool(ctx context.Context, pool string, names []string) error {
	if err := checkName("pool", pool, maxPool); err != nil {
		return err
	}
	for _, n := range names {
		if err := checkName("resource", n, maxName); err != nil {
			return err
		}
	}
	var merged []string
	_, err := m.kv.Update(ctx, metaKey(pool), func(old []byte, exists bool) ([]byte, error) {
		var cur meta
		if exists {
			var err error
			if cur, err = decodeMeta(old); err != nil {
				return nil, err
			}
		}
		all := slices.Concat(cur.Names, names)
		slices.Sort(all)
		all = slices.Compact(all)
		if len(all) > MaxPoolSize {
			return nil, fmt.Errorf("%w: pool %s would have %d resources, limit %d", ErrBadName, pool, len(all), MaxPoolSize)
		}
		merged = all
		return meta{Names: all}.encode(), nil
	})
	if err != nil {
		if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrBadName) {
			return err
		}
		return storeErr("define pool "+pool, err)
	}
	m.remember(pool, merged)
	m.log.Info("pool defined", "pool", pool, "size", len(merged))
	return nil
}

func (m *Manager) remember(pool string, names []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	set := m.pools[pool]
	if set == nil {
		set = map[string]bool{}
		m.pools[pool] = set
	}
	for _, n := range names {
		set[n] = true
	}
}

func (m *Manager) known(pool, name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pools[pool][name]
}

// names reads a pool's definition.
func (m *Manager) names(ctx context.Context, pool string) ([]string, error) {
	it, err := m.kv.Get(ctx, metaKey(pool))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, fmt.Errorf("%w: %q", ErrUnknownPool, pool)
	}
	if err != nil {
		return nil, storeErr("read pool "+pool, err)
	}
	md, err := decodeMeta(it.Value)
	if err != nil {
		return nil, fmt.Errorf("pool %s: %w", pool, err)
	}
	m.remember(pool, md.Names)
	return md.Names, nil
}

// checkMember confirms that name belongs to pool (cached after the first
// time: names are never removed).
func (m *Manager) checkMember(ctx context.Context, pool, name string) error {
	if m.known(pool, name) {
		return nil
	}
	names, err := m.names(ctx, pool)
	if err != nil {
		return err
	}
	if _, ok := slices.BinarySearch(names, name); !ok {
		return fmt.Errorf("%w: %q in pool %q", ErrUnknownName, name, pool)
	}
	return nil
}

// read returns a resource's record and its kv version. An absent record
// (never held) reads as free with token 0, except that a tombstone (the key
// was deleted behind our back) lends its version as the token floor:
// versions never go back and a record's token never exceeds its version,
// so tokens keep growing even then.
func (m *Manager) read(ctx context.Context, pool, name string) (rec record, ver uint64, exists bool, err error) {
	it, err := m.kv.Get(ctx, resKey(pool, name))
	if errors.Is(err, kv.ErrNotFound) {
		return record{State: StateFree, Token: it.Version}, it.Version, false, nil
	}
	if err != nil {
		return record{}, 0, false, storeErr("read "+pool+"/"+name, err)
	}
	rec, err = decodeRecord(it.Value)
	if err != nil {
		return record{}, 0, false, fmt.Errorf("%s/%s: %w", pool, name, err)
	}
	return rec, it.Version, true, nil
}

// AcquireOption adjusts an acquisition.
type AcquireOption func(*acqOpts)

type acqOpts struct{ label string }

// As names the holder "<Config.Holder>/<label>", for example the client an
// HTTP node acquires on behalf of. Same naming rules as resources.
func As(label string) AcquireOption { return func(o *acqOpts) { o.label = label } }

func (m *Manager) holder(opts []AcquireOption) (string, error) {
	var o acqOpts
	for _, f := range opts {
		f(&o)
	}
	if o.label == "" {
		return m.cfg.Holder, nil
	}
	if err := checkName("holder label", o.label, maxName); err != nil {
		return "", err
	}
	return m.cfg.Holder + "/" + o.label, nil
}

// errRaced: the record changed between our read and our write.
var errRaced = errors.New("resource: raced")

// grant tries once to take pool/name for holder: read, decide, write.
func (m *Manager) grant(ctx context.Context, pool, name, holder string) (*Lease, error) {
	rec, ver, exists, err := m.read(ctx, pool, name)
	if err != nil {
		return nil, err
	}
	takeover := false
	if rec.held() {
		if !m.now().After(rec.expires().Add(m.cfg.DriftMargin)) {
			return nil, &HeldError{Pool: pool, Name: name, Holder: rec.Holder, Token: rec.Token, Expires: rec.expires()}
		}
		takeover = true
	}
	start := m.now() // before the write is sent: the lease can only be shorter than TTL
	nr := record{Holder: holder, Token: rec.Token + 1, Expires: start.Add(m.cfg.TTL).UnixMilli(), State: StateHeld, Grant: newID()}
	opt := kv.IfAbsent()
	if exists {
		opt = kv.IfVersion(ver)
	}
	nv, err := m.write(ctx, resKey(pool, name), nr.encode(), opt, kv.RequestID(nr.Grant))
	switch {
	case err == nil:
	case errors.Is(err, kv.ErrVersionMismatch):
		return nil, errRaced
	default:
		// Unknown outcome: our write may have applied. Look for our grant ID.
		m.st.unknown.Add(1)
		got, gver, _, rerr := m.read(ctx, pool, name)
		if rerr != nil {
			return nil, storeErr("acquire "+pool+"/"+name+" (outcome unknown; an unusable grant may hold it until it expires)", err)
		}
		if !got.held() || got.Grant != nr.Grant {
			return nil, errRaced
		}
		nv = gver
	}
	m.st.acquired.Add(1)
	if takeover {
		m.st.takenOver.Add(1)
		m.log.Info("lease taken over", "pool", pool, "name", name, "token", nr.Token, "from", rec.Holder, "expired", rec.expires())
	} else {
		m.log.Debug("lease granted", "pool", pool, "name", name, "token", nr.Token)
	}
	return newLease(m, pool, name, nr, nv, takeover), nil
}

// AcquireName takes the named resource if it is free or its lease expired
// (by this node's clock, more than DriftMargin ago). A held resource gives a
// *HeldError.
func (m *Manager) AcquireName(ctx context.Context, pool, name string, opts ...AcquireOption) (*Lease, error) {
	if err := checkName("pool", pool, maxPool); err != nil {
		return nil, err
	}
	if err := checkName("resource", name, maxName); err != nil {
		return nil, err
	}
	holder, err := m.holder(opts)
	if err != nil {
		return nil, err
	}
	if err := m.checkMember(ctx, pool, name); err != nil {
		return nil, err
	}
	for range 3 {
		l, err := m.grant(ctx, pool, name, holder)
		if !errors.Is(err, errRaced) {
			return l, err
		}
	}
	// Three races in a row: others are busy with it. Report who holds it.
	rec, _, _, err := m.read(ctx, pool, name)
	if err != nil {
		return nil, err
	}
	if !rec.held() {
		return nil, fmt.Errorf("%w: %s/%s changed under three attempts to acquire it", ErrUnavailable, pool, name)
	}
	return nil, &HeldError{Pool: pool, Name: name, Holder: rec.Holder, Token: rec.Token, Expires: rec.expires()}
}

// Acquire takes any free or expired resource of the pool, trying them from
// a random starting point. It costs one read per resource tried plus one
// write. ErrPoolExhausted (*ExhaustedError) if all are held.
func (m *Manager) Acquire(ctx context.Context, pool string, opts ...AcquireOption) (*Lease, error) {
	if err := checkName("pool", pool, maxPool); err != nil {
		return nil, err
	}
	holder, err := m.holder(opts)
	if err != nil {
		return nil, err
	}
	names, err := m.names(ctx, pool)
	if err != nil {
		return nil, err
	}
	ex := &ExhaustedError{Pool: pool, Size: len(names)}
	var failed error
	off := 0
	if len(names) > 0 {
		off = rand.IntN(len(names))
	}
	for i := range names {
		if ctx.Err() != nil {
			return nil, storeErr("acquire from "+pool, ctx.Err())
		}
		name := names[(off+i)%len(names)]
		l, err := m.grant(ctx, pool, name, holder)
		var he *HeldError
		switch {
		case err == nil:
			return l, nil
		case errors.As(err, &he):
			if ex.Soonest.IsZero() || he.Expires.Before(ex.Soonest) {
				ex.Soonest = he.Expires
			}
		case errors.Is(err, errRaced):
		default:
			m.log.Warn("acquire: resource skipped", "pool", pool, "name", name, "err", err)
			failed = err
		}
	}
	if failed != nil {
		// Some resources could not be checked: they may be free.
		return nil, fmt.Errorf("%w (pool %s: no free resource among those reachable)", failed, pool)
	}
	return nil, ex
}

// Status is one resource as List reports it.
type Status struct {
	Name    string    `json:"name"`
	Holder  string    `json:"holder,omitempty"`
	Token   uint64    `json:"token"`            // the current or last holder's fencing token; 0: never held
	Expires time.Time `json:"expires,omitzero"` // as stored (the holder's clock); zero when free
	State   string    `json:"state"`            // free, held, expired (by the reader's clock) or unknown
	Error   string    `json:"error,omitempty"`  // why the state is unknown
}

// List reads every resource of the pool (up to 8 reads at a time), in name
// order: the human peeking into the ring. Resources it could not read are
// listed with State "unknown" and the first such error is returned with
// the list.
func (m *Manager) List(ctx context.Context, pool string) ([]Status, error) {
	if err := checkName("pool", pool, maxPool); err != nil {
		return nil, err
	}
	names, err := m.names(ctx, pool)
	if err != nil {
		return nil, err
	}
	out := make([]Status, len(names))
	errs := make([]error, len(names))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			rec, _, _, err := m.read(ctx, pool, name)
			if err != nil {
				out[i], errs[i] = Status{Name: name, State: StateUnknown, Error: err.Error()}, err
				return
			}
			out[i] = rec.status(name, m.now())
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// write is a kv Put bounded by TTL/2 (and ctx): a lease written more
// slowly than that would arrive with little or nothing left. A write cut
// short this way has an unknown outcome, which callers resolve by reading.
func (m *Manager) write(ctx context.Context, key string, val []byte, opts ...kv.WriteOption) (uint64, error) {
	wctx, cancel := context.WithTimeout(ctx, m.cfg.TTL/2)
	defer cancel()
	return m.kv.Put(wctx, key, val, opts...)
}

func newID() string {
	var b [12]byte
	crand.Read(b[:])
	return hex.EncodeToString(b[:])
}
