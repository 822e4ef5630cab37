package p2p

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
)

// TestExchangeTCP has three transports send to each other over TCP, reply
// to the Peer they were handed, and reach a known peer without addresses.
func TestExchangeTCP(t *testing.T) {
	ts := make([]*Transport, 3)
	rs := make([]*recorder, 3)
	for i := range ts {
		ts[i], rs[i] = newTransport(t, Config{})
	}
	for i, from := range ts {
		for j, to := range ts {
			if i != j {
				send(t, from, only(t, to.Self(), "/tcp/"), fmt.Sprintf("%d->%d", i, j))
			}
		}
	}
	for j, r := range rs {
		got := map[string]bool{}
		for range len(ts) - 1 {
			f := r.next(t)
			got[string(f.data)] = true
			i := int(f.data[0] - '0')
			if f.data[3] != byte('0'+j) || f.from.ID != ts[i].id {
				t.Fatalf("node %d got %q from %s", j, f.data, f.from.ID.Short())
			}
			if !strings.Contains(f.from.Addrs[0], "/tcp/") {
				t.Fatalf("frame %q came over %v, want TCP", f.data, f.from.Addrs)
			}
		}
		if len(got) != len(ts)-1 {
			t.Fatalf("node %d got %v", j, got)
		}
	}

	// Reply to the Peer the frame came with.
	a, b := ts[0], ts[1]
	ra, rb := rs[0], rs[1]
	send(t, a, only(t, b.Self(), "/tcp/"), "ping")
	f := expect(t, rb, a, "ping")
	send(t, b, f.from, "pong")
	expect(t, ra, b, "pong")

	// A peer that has connected is known by ID alone.
	send(t, b, transport.Peer{ID: a.id}, "by id")
	expect(t, ra, b, "by id")

	// Many frames on one stream arrive in order.
	const n = 500
	for i := range n {
		send(t, a, only(t, b.Self(), "/tcp/"), fmt.Sprint(i))
	}
	for i := range n {
		expect(t, rb, a, fmt.Sprint(i))
	}
	if got := b.Stats().FramesIn; got != 2+1+n {
		t.Errorf("b.FramesIn = %d, want %d", got, 2+1+n)
	}
	if s := a.Stats(); s.BadFrames+s.Dropped+s.DialFailures != 0 {
		t.Errorf("a.Stats = %+v, want no failures", s)
	}
}

// TestExchangeQUIC gives each side only the other's QUIC address.
func TestExchangeQUIC(t *testing.T) {
	a, ra := newTransport(t, Config{})
	b, rb := newTransport(t, Config{})
	send(t, a, only(t, b.Self(), "/quic-v1"), "over quic")
	f := expect(t, rb, a, "over quic")
	if !strings.Contains(f.from.Addrs[0], "/quic-v1") {
		t.Fatalf("frame came from %v, want a QUIC address", f.from.Addrs)
	}
	send(t, b, f.from, "back over quic")
	f = expect(t, ra, b, "back over quic")
	if !strings.Contains(f.from.Addrs[0], "/quic-v1") {
		t.Fatalf("reply came from %v, want a QUIC address", f.from.Addrs)
	}
}

// TestUnreachable sends to a transport that has gone away.
func TestUnreachable(t *testing.T) {
	a, ra := newTransport(t, Config{})
	gone, _ := newTransport(t, Config{})
	to := only(t, gone.Self(), "/tcp/")
	if err := gone.Close(); err != nil {
		t.Fatal(err)
	}
	send(t, a, to, "anyone there?")
	f := ra.nextFailure(t)
	if f.to != to.ID || f.err == nil {
		t.Fatalf("Unreachable(%s, %v), want (%s, error)", f.to.Short(), f.err, to.ID.Short())
	}
	t.Logf("reported: %v", f.err)
	if s := a.Stats(); s.DialFailures != 1 || s.Dropped != 1 || s.FramesOut != 0 {
		t.Fatalf("Stats = %+v, want one dial failure and one dropped frame", s)
	}
}

// TestQueueOverflow stalls a peer that never reads until Send has had to
// drop a frame, and expects ErrQueueFull once the peer drains.
func TestQueueOverflow(t *testing.T) {
	a, ra := newTransport(t, Config{QueueLen: 4})
	h := newRawHost(t)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // runs before h closes, even if the test fails early
	h.SetStreamHandler(ProtocolID, func(s network.Stream) {
		defer s.Reset()
		<-release
		buf := make([]byte, 64<<10)
		for {
			if _, err := s.Read(buf); err != nil {
				return
			}
		}
	})
	to := rawPeer(t, h)

	big := make([]byte, 64<<10)
	for i := 0; a.Stats().Dropped == 0; i++ {
		if i == 1000 {
			t.Fatal("1000 frames of 64 KiB to a stalled peer and none dropped")
		}
		if err := a.Send(context.Background(), to, big); err != nil {
			t.Fatal(err)
		}
	}
	free()
	f := ra.nextFailure(t)
	if f.to != to.ID || !errors.Is(f.err, ErrQueueFull) {
		t.Fatalf("Unreachable(%s, %v), want (%s, ErrQueueFull)", f.to.Short(), f.err, to.ID.Short())
	}
}

// rawPeer is the transport.Peer for a plain libp2p host.
func rawPeer(t *testing.T, h host.Host) transport.Peer {
	t.Helper()
	nid, err := IDFromPeerID(h.ID())
	if err != nil {
		t.Fatal(err)
	}
	p := transport.Peer{ID: nid}
	for _, a := range h.Addrs() {
		p.Addrs = append(p.Addrs, a.String()+"/p2p/"+h.ID().String())
	}
	return p
}

func TestSendErrors(t *testing.T) {
	a, _ := newTransport(t, Config{MaxFrame: 100})
	b, _ := newTransport(t, Config{})
	ctx := context.Background()
	tests := []struct {
		name string
		to   transport.Peer
		size int
		want error
	}{
		{"too large", b.Self(), 101, transport.ErrFrameTooLarge},
		{"no address, unknown peer", transport.Peer{ID: b.id}, 1, transport.ErrNoAddress},
		{"addresses of another key", transport.Peer{ID: id.HashString("x"), Addrs: b.Self().Addrs}, 1, ErrPeerMismatch},
		{"no peer ID in address", transport.Peer{ID: b.id, Addrs: []string{"/ip4/127.0.0.1/tcp/1"}}, 1, ErrNoPeerID},
		{"garbage address", transport.Peer{ID: b.id, Addrs: []string{"garbage"}}, 1, ErrBadAddr},
		{"self", a.Self(), 1, ErrSelf},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := a.Send(ctx, tt.to, make([]byte, tt.size))
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			t.Logf("%v", err)
		})
	}
	if err := a.Start(newRecorder()); !errors.Is(err, ErrStarted) {
		t.Errorf("second Start: got %v, want ErrStarted", err)
	}
	if s := a.Stats(); s != (Stats{}) {
		t.Errorf("refused sends changed Stats: %+v", s)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Send(ctx, b.Self(), []byte("late")); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Send after Close: got %v, want ErrClosed", err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestPeerRestart restarts a peer with the same key and address: the
// sender notices the dead connection and reconnects without losing a frame.
func TestPeerRestart(t *testing.T) {
	a, ra := newTransport(t, Config{})
	dir := t.TempDir()
	b, rb := newTransport(t, Config{DataDir: dir})
	to := only(t, b.Self(), "/tcp/")
	send(t, a, to, "before")
	expect(t, rb, a, "before")

	sub, err := a.host.EventBus().Subscribe(new(event.EvtPeerConnectednessChanged))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(wait)
	for disconnected := false; !disconnected; {
		select {
		case e := <-sub.Out():
			ev := e.(event.EvtPeerConnectednessChanged)
			disconnected = ev.Peer == b.pid && ev.Connectedness != network.Connected
		case <-timeout:
			t.Fatal("a never saw b disconnect")
		}
	}

	port := strings.Split(strings.TrimPrefix(to.Addrs[0], "/ip4/127.0.0.1/tcp/"), "/")[0]
	b2, rb2 := newTransport(t, Config{DataDir: dir, Listen: []string{"/ip4/127.0.0.1/tcp/" + port}})
	if b2.id != b.id {
		t.Fatal("restart changed the ID")
	}
	send(t, a, to, "after")
	expect(t, rb2, a, "after")
	select {
	case f := <-ra.unreachable:
		t.Fatalf("Unreachable(%s, %v) for a peer that came back", f.to.Short(), f.err)
	default:
	}
	if s := a.Stats(); s.Dropped != 0 || s.DialFailures != 0 {
		t.Fatalf("Stats = %+v, want nothing lost", s)
	}
}

// Send copies the frame, so its caller may reuse the buffer at once;
// SendOwned takes the buffer as it is (the node builds every frame for one
// send and saves the copy).
func TestSendCopiesSendOwnedTakes(t *testing.T) {
	a, _ := newTransport(t, Config{})
	b, rb := newTransport(t, Config{})
	to := only(t, b.Self(), "/tcp/")
	var _ transport.OwningSender = a
	buf := []byte("first")
	if err := a.Send(context.Background(), to, buf); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXXX") // at once: without Send's copy the frame would usually go out changed
	expect(t, rb, a, "first")
	if err := a.SendOwned(context.Background(), to, []byte("owned")); err != nil {
		t.Fatal(err)
	}
	expect(t, rb, a, "owned")
	if err := a.SendOwned(context.Background(), to, make([]byte, a.cfg.MaxFrame+1)); !errors.Is(err, transport.ErrFrameTooLarge) {
		t.Fatalf("SendOwned of an oversized frame: %v, want ErrFrameTooLarge", err)
	}
}
