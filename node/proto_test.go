package node

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
)

type recProto struct {
	self     id.ID
	mu       sync.Mutex
	forwards []ProtoMessage
	delivers []ProtoMessage
	consume  bool
}

func (p *recProto) Forward(m *ProtoMessage, next id.ID) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forwards = append(p.forwards, *m)
	return !p.consume
}

func (p *recProto) Deliver(m *ProtoMessage) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delivers = append(p.delivers, *m)
}

func TestProtocolHook(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 21, 20)
		defer c.closeAll()
		time.Sleep(3 * time.Second)
		protos := map[id.ID]*recProto{}
		for x, n := range c.nodes {
			p := &recProto{self: x}
			protos[x] = p
			if err := n.RegisterProtocol("test", p); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.nodes[c.ids()[0]].RegisterProtocol("test", &recProto{}); err == nil {
			t.Fatal("duplicate registration accepted")
		}
		ids := c.ids()
		src := c.nodes[ids[0]]
		var forwarded, delivered int
		for i := 0; i < 30; i++ {
			var key id.ID
			c.rng.Read(key[:])
			if err := src.RouteProto(context.Background(), "test", key, []byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			owner := protos[c.owner(key)]
			owner.mu.Lock()
			got := len(owner.delivers) > 0 && owner.delivers[len(owner.delivers)-1].Key == key
			owner.mu.Unlock()
			if !got {
				t.Fatalf("message %d for %s not delivered at owner %s", i, key.Short(), c.owner(key).Short())
			}
			delivered++
		}
		for _, p := range protos {
			p.mu.Lock()
			for _, f := range p.forwards {
				if f.From.ID != ids[0] {
					t.Fatalf("forward at %s names source %s, want %s", p.self.Short(), f.From.ID.Short(), ids[0].Short())
				}
				forwarded++
			}
			p.mu.Unlock()
		}
		if forwarded == 0 {
			t.Fatal("Forward was never called on a 20-node ring")
		}
		// A protocol that consumes at the first hop stops the message there.
		for _, p := range protos {
			p.mu.Lock()
			p.consume, p.delivers, p.forwards = true, nil, nil
			p.mu.Unlock()
		}
		far := c.owner(ids[0].Add(id.MustParse("8000000000000000000000000000000000000000")))
		_ = src.RouteProto(context.Background(), "test", far, []byte("x"))
		time.Sleep(time.Second)
		total := 0
		for _, p := range protos {
			p.mu.Lock()
			total += len(p.forwards)
			if len(p.delivers) > 0 && p.self != ids[0] {
				t.Fatalf("consumed message still delivered at %s", p.self.Short())
			}
			p.mu.Unlock()
		}
		if total != 1 {
			t.Fatalf("consumed message was forwarded %d times, want 1", total)
		}
		// Direct.
		dst := c.nodes[ids[5]]
		if err := src.SendProto(context.Background(), "test", transport.Peer{ID: ids[5], Addrs: dst.Self().Addrs}, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		p := protos[ids[5]]
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.delivers) != 1 || !p.delivers[0].Direct || string(p.delivers[0].Payload) != "hi" || p.delivers[0].From.ID != ids[0] {
			t.Fatalf("direct delivery: %+v", p.delivers)
		}
		t.Logf("delivered %d, forwarded %d", delivered, forwarded)
	})
}
