package p2p

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
)

// writeBufSize is the per-peer write buffer: frames smaller than this are
// coalesced into one write; larger ones bypass it.
const writeBufSize = 32 << 10

// sender owns the one outbound stream to a peer and the queue feeding it.
type sender struct {
	t        *Transport
	id       id.ID
	pid      peer.ID
	q        chan []byte
	overflow atomic.Uint64                  // frames dropped on a full queue, not yet reported
	dial     atomic.Pointer[[]ma.Multiaddr] // addresses to dial; nil: the peerstore's

	addrs []string // addresses last checked for this peer; guarded by t.mu
}

// newSenderLocked starts the sender goroutine for a peer. t.mu must be held
// and the transport not closed.
func (t *Transport) newSenderLocked(n id.ID, pid peer.ID) *sender {
	s := &sender{t: t, id: n, pid: pid, q: make(chan []byte, t.cfg.QueueLen)}
	t.senders[n] = s
	t.wg.Add(1)
	go s.run()
	return s
}

// run writes queued frames until the transport closes. It opens the stream
// on the first frame and again on the first frame after a failure.
func (s *sender) run() {
	t := s.t
	defer t.wg.Done()
	var (
		st network.Stream
		bw *bufio.Writer
	)
	defer func() {
		if st != nil {
			// Close, not Reset: frames already written (a graceful leave)
			// must still reach the peer.
			st.Close()
		}
	}()
	for {
		var frame []byte
		select {
		case <-t.ctx.Done():
			return
		case frame = <-s.q:
		}
		if st != nil && st.Conn().IsClosed() {
			// The peer went away while the stream sat idle (say it
			// restarted): open a new one rather than lose this batch.
			st.Reset()
			st = nil
		}
		if st == nil {
			var err error
			if st, err = s.open(); err != nil {
				t.stats.dialFailures.Add(1)
				s.fail(1, fmt.Errorf("p2p: open stream to %s: %w", s.pid, err))
				continue
			}
			w := &deadlineWriter{st: st, timeout: t.cfg.WriteTimeout}
			if bw == nil {
				bw = bufio.NewWriterSize(w, writeBufSize)
			} else {
				bw.Reset(w)
			}
		}
		n, err := s.writeBatch(bw, frame)
		if err != nil {
			st.Reset()
			st = nil
			s.fail(n, fmt.Errorf("p2p: write to %s: %w", s.pid, err))
			continue
		}
		t.stats.framesOut.Add(uint64(n))
		t.settle(n)
		if lost := s.overflow.Swap(0); lost > 0 {
			t.unreachable(s.id, fmt.Errorf("%w: dropped %d frames for %s", ErrQueueFull, lost, s.pid))
		}
	}
}

// open connects to the peer if needed and opens a stream, within
// DialTimeout. It dials the addresses Send was given rather than trust the
// peerstore, which libp2p prunes and rewrites as connections come and go.
func (s *sender) open() (network.Stream, error) {
	ctx, cancel := context.WithTimeout(s.t.ctx, s.t.cfg.DialTimeout)
	defer cancel()
	if addrs := s.dial.Load(); addrs != nil {
		if err := s.connect(ctx, *addrs); err != nil {
			return nil, err
		}
	}
	return s.t.host.NewStream(ctx, s.pid, ProtocolID)
}

// dialAttempts bounds the dials open makes before it gives up on a peer.
const dialAttempts = 3

// connect dials the peer, trying again after a short random pause if a dial
// fails. Two nodes that dial each other at the same instant from their
// (reused) listening ports can meet in one TCP simultaneous open, where both
// sides start the security handshake as initiator and both fail; the random
// pauses make the retries miss each other, and the other side's dial may
// have connected us meanwhile. Retries bypass libp2p's dial backoff, which
// would otherwise refuse them outright for seconds.
func (s *sender) connect(ctx context.Context, addrs []ma.Multiaddr) error {
	info := peer.AddrInfo{ID: s.pid, Addrs: addrs}
	var err error
	for attempt := range dialAttempts {
		if attempt > 0 {
			if s.t.host.Network().Connectedness(s.pid) == network.Connected {
				return nil
			}
			pause := time.Duration(attempt) * (10*time.Millisecond + rand.N(40*time.Millisecond))
			select {
			case <-ctx.Done():
				return err
			case <-time.After(pause):
			}
			ctx = network.WithForceDirectDial(ctx, "shoal: retry a failed dial")
		}
		if err = s.t.host.Connect(ctx, info); err == nil || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// writeBatch writes first and whatever else is already queued, then
// flushes. It returns the number of frames taken from the queue (including
// first) and the first error.
func (s *sender) writeBatch(bw *bufio.Writer, first []byte) (int, error) {
	n := 1
	err := transport.WriteFrame(bw, first)
loop:
	for err == nil {
		select {
		case f := <-s.q:
			n++
			err = transport.WriteFrame(bw, f)
		default:
			break loop
		}
	}
	if err == nil {
		err = bw.Flush()
	}
	return n, err
}

// fail drops the lost frames and everything queued, and reports err.
// Overflow drops since the last report are folded into this one.
func (s *sender) fail(lost int, err error) {
	n := uint64(lost)
drain:
	for {
		select {
		case <-s.q:
			n++
		default:
			break drain
		}
	}
	s.t.stats.dropped.Add(n)
	s.t.settle(int(n))
	s.overflow.Swap(0)
	s.t.unreachable(s.id, err)
}

// deadlineWriter gives every write to the stream between half of
// WriteTimeout and all of it to complete, so the timeout bounds a stall,
// not the length of a busy burst. The deadline is moved only once half of
// it is used up: every move costs the muxer a new timer, and a stream
// writes a frame or a batch at a time, thousands a second.
type deadlineWriter struct {
	st      network.Stream
	timeout time.Duration
	until   time.Time // the stream's write deadline; zero: none set yet
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	if now := time.Now(); w.until.Sub(now) < w.timeout/2 {
		w.until = now.Add(w.timeout)
		if err := w.st.SetWriteDeadline(w.until); err != nil {
			return 0, err
		}
	}
	return w.st.Write(p)
}
