package p2p

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
)

// wait bounds every wait on the network in these tests; on loopback each
// step takes milliseconds.
const wait = 10 * time.Second

var loopback = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}

type frame struct {
	from transport.Peer
	data []byte
}

type failure struct {
	to  id.ID
	err error
}

// recorder is a Receiver that hands everything to the test over channels.
type recorder struct {
	frames      chan frame
	unreachable chan failure
}

func newRecorder() *recorder {
	return &recorder{frames: make(chan frame, 1024), unreachable: make(chan failure, 64)}
}

func (r *recorder) Receive(from transport.Peer, data []byte) { r.frames <- frame{from, data} }
func (r *recorder) Unreachable(to id.ID, err error)          { r.unreachable <- failure{to, err} }

func (r *recorder) next(t *testing.T) frame {
	t.Helper()
	select {
	case f := <-r.frames:
		return f
	case <-time.After(wait):
		t.Fatal("no frame arrived")
		return frame{}
	}
}

func (r *recorder) nextFailure(t *testing.T) failure {
	t.Helper()
	select {
	case f := <-r.unreachable:
		return f
	case <-time.After(wait):
		t.Fatal("no Unreachable report")
		return failure{}
	}
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newTransport starts a transport on loopback, logging to the test, closed
// at cleanup.
func newTransport(t *testing.T, cfg Config) (*Transport, *recorder) {
	t.Helper()
	if cfg.Listen == nil {
		cfg.Listen = loopback
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	tr, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	r := newRecorder()
	if err := tr.Start(r); err != nil {
		t.Fatal(err)
	}
	return tr, r
}

// only returns p with just the addresses containing proto, e.g. "/tcp/".
func only(t *testing.T, p transport.Peer, proto string) transport.Peer {
	t.Helper()
	var addrs []string
	for _, a := range p.Addrs {
		if strings.Contains(a, proto) {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		t.Fatalf("no %s address in %v", proto, p.Addrs)
	}
	return transport.Peer{ID: p.ID, Addrs: addrs}
}

// newRawHost is a plain libp2p host on loopback TCP, speaking to the
// transport without its framing.
func newRawHost(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func send(t *testing.T, from *Transport, to transport.Peer, data string) {
	t.Helper()
	if err := from.Send(context.Background(), to, []byte(data)); err != nil {
		t.Fatalf("Send %q: %v", data, err)
	}
}

// expect reads one frame and checks its sender and contents.
func expect(t *testing.T, r *recorder, from *Transport, data string) frame {
	t.Helper()
	f := r.next(t)
	if f.from.ID != from.id || string(f.data) != data {
		t.Fatalf("got %q from %s, want %q from %s", f.data, f.from.ID.Short(), data, from.id.Short())
	}
	if len(f.from.Addrs) != 1 || !strings.HasSuffix(f.from.Addrs[0], "/p2p/"+from.pid.String()) {
		t.Fatalf("sender addrs %v do not end in /p2p/%s", f.from.Addrs, from.pid)
	}
	return f
}
