package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/transport"
	"github.com/shoal-p2p/shoal/transport/p2p"
)

type whoApp struct{ self id.ID }

func (a whoApp) Deliver(m *node.Message)         { b, _ := json.Marshal(a.self); m.Reply(b) }
func (whoApp) Forward(id.ID, []byte, id.ID) bool { return true }

// Five real libp2p nodes on loopback join through one bootstrap node and
// route to the true owner; a killed node's keys are then delivered at its
// neighbour once the failure timeout has passed.
func TestFiveNodesOverLibp2p(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type member struct {
		n  *node.Node
		tr *p2p.Transport
	}
	var ms []member
	var boot []transport.Peer
	for i := 0; i < 5; i++ {
		tcfg := p2p.DefaultConfig()
		tcfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
		tr, err := p2p.New(ctx, tcfg)
		if err != nil {
			t.Fatal(err)
		}
		cfg := node.DefaultConfig()
		cfg.Ring = ring.LocalConfig()
		cfg.Transport = tr
		cfg.Bootstrap = boot
		cfg.App = whoApp{tr.Self().ID}
		n, err := node.Start(ctx, cfg)
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		defer n.Close()
		ms = append(ms, member{n, tr})
		if i == 0 {
			boot = []transport.Peer{n.Self()}
		}
	}
	owner := func(key id.ID, live []member) id.ID {
		ids := make([]id.ID, len(live))
		for i, m := range live {
			ids[i] = m.n.ID()
		}
		return ids[id.Closest(key, ids)]
	}
	ask := func(from member, key id.ID) (id.ID, error) {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		b, err := from.n.Request(c, key, []byte("?"))
		if err != nil {
			return id.ID{}, err
		}
		var got id.ID
		err = json.Unmarshal(b, &got)
		return got, err
	}
	// Wait until every node is sure of its range (bounded).
	for _, m := range ms {
		for deadline := time.Now().Add(10 * time.Second); ; {
			st, err := m.n.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Sure && st.LeafSetCount == len(ms)-1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s did not converge: %+v", m.n.ID().Short(), st)
			}
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			}
		}
	}
	for i := 0; i < 40; i++ {
		key := id.HashString("key-" + string(rune('a'+i)))
		from := ms[i%len(ms)]
		got, err := ask(from, key)
		if err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
		if want := owner(key, ms); got != want {
			t.Fatalf("key %d routed to %s, owner is %s", i, got.Short(), want.Short())
		}
	}
	// Kill node 2 (not the bootstrap): its transport goes away silently.
	victim := ms[2]
	victim.tr.Close()
	live := append(append([]member(nil), ms[:2]...), ms[3:]...)
	key := victim.n.ID()
	want := owner(key, live)
	var got id.ID
	var err error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		got, err = ask(live[0], key)
		if err == nil && got == want {
			return
		}
	}
	t.Fatalf("after the kill, key of %s answered by %s (err %v), want neighbour %s", victim.n.ID().Short(), got.Short(), err, want.Short())
}

// A node that closes tells its neighbours, over libp2p, and they take over
// at once: with the 'lan' profile a silent node would only be noticed after
// its 11s failure timeout, so seeing the leaf set shrink within a few seconds
// proves the Leave arrived.
func TestGracefulLeaveOverLibp2p(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var nodes []*node.Node
	var boot []transport.Peer
	for i := 0; i < 3; i++ {
		tcfg := p2p.DefaultConfig()
		tcfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
		tr, err := p2p.New(ctx, tcfg)
		if err != nil {
			t.Fatal(err)
		}
		cfg := node.DefaultConfig()
		cfg.Transport = tr
		cfg.Bootstrap = boot
		n, err := node.Start(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
		if i == 0 {
			boot = []transport.Peer{n.Self()}
		}
	}
	defer nodes[0].Close()
	defer nodes[1].Close()
	waitLeaf := func(n *node.Node, want int, within time.Duration) error {
		deadline := time.Now().Add(within)
		for {
			st, err := n.Status(ctx)
			if err != nil {
				return err
			}
			if st.LeafSetCount == want {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("leaf set has %d members after %v, want %d", st.LeafSetCount, within, want)
			}
			select {
			case <-time.After(10 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if err := waitLeaf(nodes[0], 2, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	if err := waitLeaf(nodes[0], 1, 3*time.Second); err != nil {
		t.Fatalf("the leave did not arrive: %v", err)
	}
}
