package p2p

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	tls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
)

// ProtocolID is the libp2p protocol that carries Shoal frames.
const ProtocolID = "/shoal/ring/1.0.0"

// Transport is a transport.Transport over a libp2p host.
type Transport struct {
	cfg  Config
	log  *slog.Logger
	host host.Host
	id   id.ID
	pid  peer.ID

	ctx    context.Context // canceled by Close: stops senders, aborts dials
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine and stream handler in flight

	isClosed atomic.Bool // fast path for Send; mu.closed is authoritative

	// outstanding counts frames queued and not yet written or dropped;
	// drained is signalled whenever it reaches zero (Flush waits on it).
	outstanding atomic.Int64
	drained     chan struct{}

	mu      sync.Mutex
	closed  bool
	started bool
	recv    transport.Receiver
	senders map[id.ID]*sender
	known   map[id.ID]peer.ID // peers that opened streams to us

	stats counters
}

var _ transport.Transport = (*Transport)(nil)

// Stats are counters since New. All counts are frames.
type Stats struct {
	FramesIn     uint64 // frames delivered to the Receiver
	FramesOut    uint64 // frames written and flushed to a stream
	BadFrames    uint64 // malformed, oversized or truncated inbound frames (each resets its stream)
	Dropped      uint64 // outbound frames dropped: queue overflow, dial or write failure
	DialFailures uint64 // failures to connect to a peer or open a stream
}

type counters struct {
	framesIn, framesOut, badFrames, dropped, dialFailures atomic.Uint64
}

// New starts a libp2p host configured by cfg (zero fields take defaults) and
// returns a transport that delivers nothing until Start. ctx bounds only the
// construction; the transport lives until Close.
func New(ctx context.Context, cfg Config) (*Transport, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("subsys", "p2p")

	priv, err := loadIdentity(cfg.DataDir, log)
	if err != nil {
		return nil, err
	}
	nid, err := idFromPubKey(priv.GetPublic())
	if err != nil {
		return nil, err
	}

	h, err := libp2p.New(hostOptions(cfg, priv)...)
	if err != nil {
		return nil, fmt.Errorf("p2p: start libp2p host: %w", err)
	}
	if err := ctx.Err(); err != nil {
		h.Close()
		return nil, err
	}

	tctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		cfg:     cfg,
		log:     log,
		host:    h,
		id:      nid,
		pid:     h.ID(),
		ctx:     tctx,
		cancel:  cancel,
		drained: make(chan struct{}, 1),
		senders: make(map[id.ID]*sender),
		known:   make(map[id.ID]peer.ID),
	}
	log.Info("transport up", "id", nid, "peer_id", h.ID(), "addrs", t.Self().Addrs)
	return t, nil
}

// hostOptions are the libp2p options for cfg: TCP and QUIC, Noise and TLS,
// yamux and the default resource manager, and NAT traversal only if asked.
func hostOptions(cfg Config, priv crypto.PrivKey) []libp2p.Option {
	opts := []libp2p.Option{
		libp2p.Identity(priv),
		libp2p.ListenAddrStrings(cfg.Listen...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Security(tls.ID, tls.New),
		libp2p.WithDialTimeout(cfg.DialTimeout),
		libp2p.UserAgent("shoal"),
		// Metrics would go to the global Prometheus registry, which
		// several transports in one process would share.
		libp2p.DisableMetrics(),
	}
	if cfg.EnableNAT {
		return append(opts, libp2p.NATPortMap(), libp2p.EnableRelay(), libp2p.EnableHolePunching())
	}
	return append(opts, libp2p.DisableRelay())
}

// Self returns this node's ID and its full addresses, each ending in
// /p2p/<peer-id>. Listening on 0.0.0.0 yields one address per interface.
func (t *Transport) Self() transport.Peer {
	addrs := t.host.Addrs()
	out := make([]string, 0, len(addrs))
	suffix := "/p2p/" + t.pid.String()
	for _, a := range addrs {
		out = append(out, a.String()+suffix)
	}
	return transport.Peer{ID: t.id, Addrs: out}
}

// Start registers the stream handler: from now on inbound frames go to r.
func (t *Transport) Start(r transport.Receiver) error {
	if r == nil {
		return errors.New("p2p: Start: nil Receiver")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closed:
		return transport.ErrClosed
	case t.started:
		return ErrStarted
	}
	t.started = true
	t.recv = r
	t.host.SetStreamHandler(ProtocolID, t.handleStream)
	return nil
}

// Send copies data onto the peer's outbound queue and returns without
// touching the network; ctx is not consulted. to.Addrs must be full
// addresses of the peer whose key gives to.ID; they may be empty for a peer
// this transport already knows (it sent to it before, or the peer connected
// to us). Failures after Send returns are reported through
// Receiver.Unreachable.
func (t *Transport) Send(ctx context.Context, to transport.Peer, data []byte) error {
	if len(data) > t.cfg.MaxFrame {
		return fmt.Errorf("%w: %d bytes, limit %d", transport.ErrFrameTooLarge, len(data), t.cfg.MaxFrame)
	}
	return t.SendOwned(ctx, to, bytes.Clone(data))
}

// SendOwned is Send without the copy: data is the transport's from now on
// (transport.OwningSender).
func (t *Transport) SendOwned(ctx context.Context, to transport.Peer, data []byte) error {
	if t.isClosed.Load() {
		return transport.ErrClosed
	}
	if len(data) > t.cfg.MaxFrame {
		return fmt.Errorf("%w: %d bytes, limit %d", transport.ErrFrameTooLarge, len(data), t.cfg.MaxFrame)
	}
	if to.ID == t.id {
		return ErrSelf
	}
	s, err := t.senderFor(to)
	if err != nil {
		return err
	}
	t.outstanding.Add(1)
	select {
	case s.q <- data:
	default:
		t.settle(1)
		t.stats.dropped.Add(1)
		s.overflow.Add(1)
	}
	return nil
}

// senderFor finds or starts the sender for to, checking to.Addrs against
// to.ID whenever they differ from the addresses last seen for that peer.
func (t *Transport) senderFor(to transport.Peer) (*sender, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, transport.ErrClosed
	}
	s := t.senders[to.ID]
	if s != nil && (len(to.Addrs) == 0 || slices.Equal(s.addrs, to.Addrs)) {
		t.mu.Unlock()
		return s, nil
	}
	if len(to.Addrs) == 0 {
		defer t.mu.Unlock()
		pid, ok := t.known[to.ID]
		if !ok {
			return nil, fmt.Errorf("%w: node %s", transport.ErrNoAddress, to.ID.Short())
		}
		return t.newSenderLocked(to.ID, pid), nil
	}
	t.mu.Unlock()

	pa, err := parseAddrs(to.Addrs)
	if err != nil {
		return nil, err
	}
	if pa.id != to.ID {
		return nil, fmt.Errorf("%w: they name node %s (peer %s), not node %s",
			ErrPeerMismatch, pa.id.Short(), pa.pid, to.ID.Short())
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, transport.ErrClosed
	}
	s = t.senders[to.ID]
	if s == nil {
		s = t.newSenderLocked(to.ID, pa.pid)
	}
	s.addrs = slices.Clone(to.Addrs)
	s.dial.Store(&pa.addrs)
	return s, nil
}

// Stats returns a snapshot of the counters.
func (t *Transport) Stats() Stats {
	return Stats{
		FramesIn:     t.stats.framesIn.Load(),
		FramesOut:    t.stats.framesOut.Load(),
		BadFrames:    t.stats.badFrames.Load(),
		Dropped:      t.stats.dropped.Load(),
		DialFailures: t.stats.dialFailures.Load(),
	}
}

// Close stops the senders, closes the host and its connections, and waits
// for every goroutine and stream handler the transport runs. Frames still
// queued are discarded without Unreachable reports. Later calls return nil.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.isClosed.Store(true)
	t.mu.Unlock()

	t.cancel()
	t.host.RemoveStreamHandler(ProtocolID)
	err := t.host.Close()
	t.wg.Wait()
	if err != nil {
		return fmt.Errorf("p2p: close host: %w", err)
	}
	return nil
}

// receiver returns the Receiver passed to Start, or nil before Start.
func (t *Transport) receiver() transport.Receiver {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.recv
}

// unreachable reports err for node n unless the transport is closing.
func (t *Transport) unreachable(n id.ID, err error) {
	if t.ctx.Err() != nil {
		return
	}
	t.log.Debug("peer unreachable", "peer", n.Short(), "err", err)
	if r := t.receiver(); r != nil {
		r.Unreachable(n, err)
	}
}

// settle records that n queued frames were written or dropped.
func (t *Transport) settle(n int) {
	if n > 0 && t.outstanding.Add(int64(-n)) == 0 {
		select {
		case t.drained <- struct{}{}:
		default:
		}
	}
}

// Flush waits until every frame queued so far has been written to its
// stream (or dropped because its peer is unreachable), or ctx ends. A node
// calls it before Close so its last messages (a graceful leave) go out.
func (t *Transport) Flush(ctx context.Context) error {
	for t.outstanding.Load() > 0 {
		select {
		case <-t.drained:
		case <-ctx.Done():
			return fmt.Errorf("p2p: flush: %d frames still queued: %w", t.outstanding.Load(), ctx.Err())
		}
	}
	return nil
}
