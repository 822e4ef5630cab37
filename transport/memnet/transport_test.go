package memnet

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
)

// frameRecv is a transport.Receiver that records what it is given.
type frameRecv struct {
	mu          sync.Mutex
	frames      []recvd
	unreachable []id.ID
	errs        []error
	got         chan struct{} // one token per callback; never blocks
}

type recvd struct {
	from transport.Peer
	data []byte
}

func newFrameRecv() *frameRecv { return &frameRecv{got: make(chan struct{}, 1<<10)} }

func (r *frameRecv) Receive(from transport.Peer, data []byte) {
	r.mu.Lock()
	r.frames = append(r.frames, recvd{from, data})
	r.mu.Unlock()
	r.got <- struct{}{}
}

func (r *frameRecv) Unreachable(to id.ID, err error) {
	r.mu.Lock()
	r.unreachable = append(r.unreachable, to)
	r.errs = append(r.errs, err)
	r.mu.Unlock()
	r.got <- struct{}{}
}

func (r *frameRecv) snapshot() ([]recvd, []id.ID, []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.frames), slices.Clone(r.unreachable), slices.Clone(r.errs)
}

// pair starts transports for two nodes on a realtime network.
func pair(t *testing.T, cfg Config) (n *Network, a, b *Transport, ra, rb *frameRecv) {
	t.Helper()
	cfg.Realtime = true
	n = New(cfg)
	ids := nodes(2)
	a, b = n.Transport(ids[0]), n.Transport(ids[1])
	ra, rb = newFrameRecv(), newFrameRecv()
	if err := a.Start(ra); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(rb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return n, a, b, ra, rb
}

func TestTransportExchange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, a, b, ra, rb := pair(t, DefaultConfig())
		ctx := context.Background()
		if want := "mem/" + a.self.String(); !slices.Equal(a.Self().Addrs, []string{want}) || a.Self().ID != a.self {
			t.Fatalf("Self() = %+v, want address %s", a.Self(), want)
		}
		buf := []byte("hello")
		start := time.Now()
		if err := a.Send(ctx, b.Self(), buf); err != nil {
			t.Fatal(err)
		}
		copy(buf, "XXXXX") // the sender may reuse its buffer at once
		<-rb.got
		if lat := time.Since(start); lat < time.Millisecond || lat > 10*time.Millisecond {
			t.Errorf("frame took %v, want within [1ms, 10ms]", lat)
		}
		frames, _, _ := rb.snapshot()
		if len(frames) != 1 || string(frames[0].data) != "hello" || frames[0].from.ID != a.self ||
			!slices.Equal(frames[0].from.Addrs, a.Self().Addrs) {
			t.Fatalf("b received %+v, want hello from a", frames)
		}
		if err := b.Send(ctx, frames[0].from, []byte("hi back")); err != nil {
			t.Fatal(err)
		}
		<-ra.got
		if frames, _, _ := ra.snapshot(); len(frames) != 1 || string(frames[0].data) != "hi back" {
			t.Fatalf("a received %+v, want the reply", frames)
		}
	})
}

func TestTransportMany(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Realtime, cfg.Seed = true, 11
		n := New(cfg)
		ids := nodes(16)
		recv := make([]*frameRecv, len(ids))
		trs := make([]*Transport, len(ids))
		for i, x := range ids {
			recv[i], trs[i] = newFrameRecv(), n.Transport(x)
			if err := trs[i].Start(recv[i]); err != nil {
				t.Fatal(err)
			}
		}
		for i, tr := range trs {
			for j := range trs {
				if err := tr.Send(t.Context(), trs[j].Self(), []byte{byte(i), byte(j)}); err != nil {
					t.Fatal(err)
				}
			}
		}
		time.Sleep(time.Second) // virtual: every frame has arrived
		synctest.Wait()
		for j, r := range recv {
			frames, _, _ := r.snapshot()
			if len(frames) != len(ids) {
				t.Fatalf("node %d got %d frames, want %d", j, len(frames), len(ids))
			}
			for _, f := range frames {
				if int(f.data[1]) != j || f.from.ID != ids[f.data[0]] {
					t.Fatalf("node %d got %v from %s", j, f.data, f.from.ID.Short())
				}
			}
		}
		if s := n.Stats(); s.Delivered != 256 || n.Pending() != 0 {
			t.Fatalf("stats %+v, pending %d", s, n.Pending())
		}
		for _, tr := range trs {
			tr.Close()
		}
	})
}

func TestTransportCloseStopsDeliveries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.MinLatency = 5 * time.Millisecond
		n, a, b, ra, rb := pair(t, cfg)
		ctx := context.Background()
		if err := a.Send(ctx, b.Self(), []byte("in flight")); err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if n.Up(b.self) {
			t.Fatal("b is up after Close")
		}
		if err := b.Send(ctx, a.Self(), []byte("x")); !errors.Is(err, transport.ErrClosed) {
			t.Fatalf("Send after Close = %v, want ErrClosed", err)
		}
		if err := b.Start(newFrameRecv()); !errors.Is(err, transport.ErrClosed) {
			t.Fatalf("Start after Close = %v, want ErrClosed", err)
		}
		if err := a.Send(ctx, b.Self(), []byte("after close")); err != nil {
			t.Fatalf("Send to a closed peer = %v, want nil (dropped like a real network)", err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if frames, _, _ := rb.snapshot(); len(frames) != 0 {
			t.Fatalf("closed transport received %d frames", len(frames))
		}
		if _, unr, errs := ra.snapshot(); len(unr) != 1 || unr[0] != b.self || !errors.Is(errs[0], ErrUnreachable) {
			t.Fatalf("Unreachable calls %v %v, want one for b with ErrUnreachable", unr, errs)
		}
	})
}

func TestTransportUnknownPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, a, _, ra, _ := pair(t, DefaultConfig())
		ghost := id.HashString("ghost")
		if err := a.Send(context.Background(), transport.Peer{ID: ghost}, []byte("boo")); err != nil {
			t.Fatal(err)
		}
		<-ra.got
		if _, unr, errs := ra.snapshot(); len(unr) != 1 || unr[0] != ghost || !errors.Is(errs[0], ErrUnreachable) {
			t.Fatalf("Unreachable calls %v %v, want one for ghost", unr, errs)
		}
	})
}

func TestTransportPartitionIsSilent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, a, b, ra, rb := pair(t, DefaultConfig())
		n.Partition([]id.ID{a.self})
		if err := a.Send(context.Background(), b.Self(), []byte("x")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		frames, _, _ := rb.snapshot()
		_, unr, _ := ra.snapshot()
		if len(frames) != 0 || len(unr) != 0 {
			t.Fatalf("across a partition: b got %d frames, a got %d Unreachable", len(frames), len(unr))
		}
	})
}

func TestTransportOversizeAndLifecycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New(Config{Realtime: true})
		a := n.Transport(nodes(1)[0])
		ctx := context.Background()
		if err := a.Send(ctx, a.Self(), []byte("x")); !errors.Is(err, ErrNotStarted) {
			t.Fatalf("Send before Start = %v, want ErrNotStarted", err)
		}
		if err := a.Start(nil); err == nil {
			t.Fatal("Start(nil) succeeded")
		}
		r := newFrameRecv()
		if err := a.Start(r); err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		if err := a.Start(r); !errors.Is(err, ErrStarted) {
			t.Fatalf("second Start = %v, want ErrStarted", err)
		}
		big := make([]byte, transport.DefaultMaxFrame+1)
		if err := a.Send(ctx, a.Self(), big); !errors.Is(err, transport.ErrFrameTooLarge) {
			t.Fatalf("Send of %d bytes = %v, want ErrFrameTooLarge", len(big), err)
		}
		if err := a.Send(ctx, a.Self(), big[:transport.DefaultMaxFrame]); err != nil {
			t.Fatalf("Send of exactly DefaultMaxFrame = %v", err)
		}
		<-r.got
		if frames, _, _ := r.snapshot(); len(frames) != 1 || len(frames[0].data) != transport.DefaultMaxFrame {
			t.Fatal("the largest allowed frame did not arrive whole")
		}
	})
}

func TestTransportDuplicatesAreOwned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Duplicate = 0.999
		n, a, b, _, rb := pair(t, cfg)
		if err := a.Send(context.Background(), b.Self(), []byte("same")); err != nil {
			t.Fatal(err)
		}
		<-rb.got
		<-rb.got
		frames, _, _ := rb.snapshot()
		if len(frames) != 2 || n.Stats().Duplicated != 1 {
			t.Fatalf("got %d frames, stats %+v; want a duplicate", len(frames), n.Stats())
		}
		frames[0].data[0] = 'X' // the receiver owns its slice
		if !bytes.Equal(frames[1].data, []byte("same")) {
			t.Fatalf("duplicates share memory: %q", frames[1].data)
		}
	})
}

func TestRealtimeNetwork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lo, hi = 20 * time.Millisecond, 40 * time.Millisecond
		n := New(Config{Realtime: true, Seed: 4, MinLatency: lo, MaxLatency: hi})
		ids := nodes(2)
		var mu sync.Mutex
		var lats []time.Duration
		n.Attach(ids[0], nil)
		n.Attach(ids[1], func(from id.ID, msg any) {
			mu.Lock()
			lats = append(lats, time.Since(msg.(time.Time)))
			mu.Unlock()
		})
		for range 100 {
			n.Send(ids[0], ids[1], time.Now())
		}
		fired := false
		const crashAt = 30 * time.Millisecond
		n.After(crashAt, func() { mu.Lock(); fired = true; mu.Unlock(); n.Crash(ids[1]) })
		if n.Step() {
			t.Fatal("Step did something in realtime mode")
		}
		time.Sleep(time.Second)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		if !fired {
			t.Fatal("After callback did not run")
		}
		for _, l := range lats {
			if l < lo || l > crashAt {
				t.Fatalf("delivered after %v; want within [%v, %v] (crash at %v)", l, lo, hi, crashAt)
			}
		}
		s := n.Stats()
		if len(lats) == 0 || s.Blocked == 0 || s.Delivered+s.Blocked != 100 || n.Pending() != 0 {
			t.Fatalf("%d delivered before the crash, stats %+v, pending %d", len(lats), s, n.Pending())
		}
	})
}

func TestTransportInDiscreteMode(t *testing.T) {
	n := New(DefaultConfig())
	ids := nodes(2)
	a, b := n.Transport(ids[0]), n.Transport(ids[1])
	ra, rb := newFrameRecv(), newFrameRecv()
	a.Start(ra)
	b.Start(rb)
	a.Send(context.Background(), b.Self(), []byte("sim"))
	a.Send(context.Background(), transport.Peer{ID: id.HashString("ghost")}, []byte("boo"))
	if _, unr, _ := ra.snapshot(); len(unr) != 0 {
		t.Fatal("Unreachable called inside Send")
	}
	n.RunFor(time.Second)
	frames, _, _ := rb.snapshot()
	_, unr, _ := ra.snapshot()
	if len(frames) != 1 || string(frames[0].data) != "sim" || len(unr) != 1 {
		t.Fatalf("discrete mode: frames %v, unreachable %v", frames, unr)
	}
}
