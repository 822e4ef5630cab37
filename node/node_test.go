package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/transport"
	"github.com/shoal-p2p/shoal/transport/memnet"
)

// echoApp answers every request with the ID of the node that handled it.
type echoApp struct {
	self id.ID
	mu   sync.Mutex
	got  []*Message
}

func (a *echoApp) Deliver(m *Message) {
	a.mu.Lock()
	a.got = append(a.got, m)
	a.mu.Unlock()
	m.Reply(a.self[:])
}

func (a *echoApp) Forward(id.ID, []byte, id.ID) bool { return true }

type cluster struct {
	t     *testing.T
	net   *memnet.Network
	nodes map[id.ID]*Node
	rng   *rand.Rand
}

func newCluster(t *testing.T, seed int64, n int) *cluster {
	t.Helper()
	c := &cluster{t: t, nodes: make(map[id.ID]*Node), rng: rand.New(rand.NewSource(seed))}
	c.net = memnet.New(memnet.Config{Seed: seed, Realtime: true, MinLatency: time.Millisecond, MaxLatency: 5 * time.Millisecond})
	var boot []transport.Peer
	for i := 0; i < n; i++ {
		nd := c.add(boot)
		if i == 0 {
			boot = []transport.Peer{nd.Self()}
		}
	}
	return c
}

func (c *cluster) add(boot []transport.Peer) *Node {
	c.t.Helper()
	var x id.ID
	c.rng.Read(x[:])
	app := &echoApp{self: x}
	cfg := DefaultConfig()
	cfg.Ring = ring.LocalConfig()
	cfg.Transport = c.net.Transport(x)
	cfg.Bootstrap = boot
	cfg.App = app
	nd, err := Start(context.Background(), cfg)
	if err != nil {
		c.t.Fatalf("start node %d: %v", len(c.nodes), err)
	}
	c.nodes[x] = nd
	return nd
}

func (c *cluster) ids() []id.ID {
	var out []id.ID
	for x := range c.nodes {
		out = append(out, x)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

func (c *cluster) owner(key id.ID) id.ID {
	ids := c.ids()
	return ids[id.Closest(key, ids)]
}

func (c *cluster) closeAll() {
	for _, n := range c.nodes {
		n.Close()
	}
}

// request asks a random node for the owner of key, retrying a few times:
// a request can be lost with a crashed hop.
func (c *cluster) request(key id.ID) (id.ID, error) {
	ids := c.ids()
	from := c.nodes[ids[c.rng.Intn(len(ids))]]
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		b, err := from.Request(ctx, key, []byte("who owns this?"))
		cancel()
		if err == nil {
			return id.FromBytes(b)
		}
		lastErr = err
	}
	return id.ID{}, lastErr
}

func TestRequestReachesOwner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 11
		c := newCluster(t, seed, 12)
		defer c.closeAll()
		time.Sleep(5 * time.Second) // virtual: let leaf sets settle
		for i := 0; i < 200; i++ {
			var key id.ID
			c.rng.Read(key[:])
			got, err := c.request(key)
			if err != nil {
				for _, x := range c.ids() {
					st, _ := c.nodes[x].Status(context.Background())
					t.Logf("node %s ready=%v sure=%v held=%d pending=%d leaf=%d range=%s..%s m=%+v", x.Short(), st.Ready, st.Sure, st.Held, st.Pending, st.LeafSetCount, st.Range.From.Short(), st.Range.To.Short(), c.nodes[x].Metrics())
				}
				t.Fatalf("seed %d: request %d for %s (owner %s): %v", seed, i, key.Short(), c.owner(key).Short(), err)
			}
			if want := c.owner(key); got != want {
				t.Fatalf("seed %d: key %s handled by %s, owner is %s", seed, key.Short(), got.Short(), want.Short())
			}
		}
	})
}

func TestCrashedOwnerTakenOverByNeighbour(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 12
		c := newCluster(t, seed, 8)
		defer c.closeAll()
		time.Sleep(5 * time.Second)
		ids := c.ids()
		victim := ids[3]
		key := victim // its own ID: the clearest key it owns
		if got, err := c.request(key); err != nil || got != victim {
			t.Fatalf("seed %d: before crash: owner %s, err %v", seed, got.Short(), err)
		}
		c.net.Crash(victim)
		crashed := c.nodes[victim]
		delete(c.nodes, victim)
		defer crashed.Close()
		time.Sleep(5 * time.Second) // virtual: past the failure timeout
		got, err := c.request(key)
		if err != nil {
			t.Fatalf("seed %d: after crash: %v", seed, err)
		}
		if want := c.owner(key); got != want {
			t.Fatalf("seed %d: after crash key handled by %s, want neighbour %s", seed, got.Short(), want.Short())
		}
	})
}

func TestGracefulLeaveHandsOverAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 13
		c := newCluster(t, seed, 6)
		defer c.closeAll()
		time.Sleep(3 * time.Second)
		ids := c.ids()
		leaver := ids[2]
		c.nodes[leaver].Close()
		delete(c.nodes, leaver)
		time.Sleep(200 * time.Millisecond) // well under the failure timeout
		got, err := c.request(leaver)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if want := c.owner(leaver); got != want {
			t.Fatalf("seed %d: key handled by %s, want %s", seed, got.Short(), want.Short())
		}
	})
}

func TestDeadlinePassedIsNotStarted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 14, 3)
		defer c.closeAll()
		time.Sleep(2 * time.Second)
		ids := c.ids()
		from := c.nodes[ids[0]]
		target := ids[1]
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Microsecond) // shorter than the link latency
		_, err := from.Request(ctx, target, []byte("late"))
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("want deadline exceeded, got %v", err)
		}
		time.Sleep(time.Second)
		if m := c.nodes[target].Metrics(); m.Expired == 0 {
			t.Fatalf("owner started work whose caller had given up: %+v", m)
		}
	})
}

func TestBadFramesAreCountedAndIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 15, 3)
		defer c.closeAll()
		time.Sleep(2 * time.Second)
		ids := c.ids()
		var evil id.ID
		evil[0] = 0xee
		tr := c.net.Transport(evil)
		if err := tr.Start(nopReceiver{}); err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		victim := c.nodes[ids[0]]
		frames := [][]byte{
			{},
			{0x01},             // ring frame cut short
			{0x01, 0x63, 0x00}, // unknown kind
			{0xA1, 0x09},       // direct frame of unknown kind
			{0x42, 1, 2, 3},    // unknown channel
		}
		// A ring frame that claims to come from someone else.
		liar, _ := ring.Encode(transport.Peer{ID: ids[1]}, &ring.Probe{Nonce: 1})
		frames = append(frames, liar)
		for _, f := range frames {
			if err := tr.Send(context.Background(), victim.Self(), f); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Second)
		if m := victim.Metrics(); m.BadFrames < uint64(len(frames)) {
			t.Fatalf("bad frames counted %d, want >= %d", m.BadFrames, len(frames))
		}
		// The node still serves.
		if got, err := c.request(ids[0]); err != nil || got != ids[0] {
			t.Fatalf("node stopped serving after garbage: %v %v", got.Short(), err)
		}
	})
}

type nopReceiver struct{}

func (nopReceiver) Receive(transport.Peer, []byte) {}
func (nopReceiver) Unreachable(id.ID, error)       {}

func TestOwnerChangeEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := memnet.New(memnet.Config{Seed: 16, Realtime: true, MinLatency: time.Millisecond, MaxLatency: 2 * time.Millisecond})
		var mu sync.Mutex
		var events []OwnerChange
		mk := func(b byte, boot []transport.Peer, cb func(OwnerChange)) *Node {
			var x id.ID
			x[0] = b
			cfg := DefaultConfig()
			cfg.Ring = ring.LocalConfig()
			cfg.Transport = net.Transport(x)
			cfg.Bootstrap = boot
			cfg.OnOwnerChange = cb
			nd, err := Start(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			return nd
		}
		a := mk(0x10, nil, func(oc OwnerChange) { mu.Lock(); events = append(events, oc); mu.Unlock() })
		defer a.Close()
		b := mk(0x80, []transport.Peer{a.Self()}, nil)
		time.Sleep(2 * time.Second)
		mu.Lock()
		if len(events) < 2 || !events[0].Range.Whole || events[len(events)-1].Range.Whole {
			t.Fatalf("want whole ring then a half, got %+v", events)
		}
		last := events[len(events)-1]
		mu.Unlock()
		var k id.ID
		k[0] = 0x20
		if !last.Range.Contains(k) || !last.Sure {
			t.Fatalf("range %+v should contain %s and be sure", last.Range, k.Short())
		}
		b.Close()
		time.Sleep(time.Second)
		mu.Lock()
		defer mu.Unlock()
		if !events[len(events)-1].Range.Whole {
			t.Fatalf("after the other node left, want the whole ring: %+v", events[len(events)-1])
		}
		_ = fmt.Sprint()
	})
}
