package pubsub_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/pubsub"
	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/transport"
	"github.com/shoal-p2p/shoal/transport/memnet"
)

// startRing starts n nodes with pubsub on an in-memory network.
func startRing(n int) ([]*node.Node, []*pubsub.PubSub) {
	net := memnet.New(memnet.Config{Realtime: true})
	var nodes []*node.Node
	var pss []*pubsub.PubSub
	for i := 0; i < n; i++ {
		cfg := node.DefaultConfig()
		cfg.Ring = ring.LocalConfig()
		cfg.Transport = net.Transport(id.HashString(fmt.Sprint("example-node-", i)))
		if i > 0 {
			cfg.Bootstrap = []transport.Peer{nodes[0].Self()}
		}
		nd, err := node.Start(context.Background(), cfg)
		if err != nil {
			panic(err)
		}
		ps, err := pubsub.New(nd, pubsub.LocalConfig())
		if err != nil {
			panic(err)
		}
		nodes, pss = append(nodes, nd), append(pss, ps)
	}
	return nodes, pss
}

func Example() {
	nodes, pss := startRing(3)
	defer func() {
		for i := range nodes {
			pss[i].Close()
			nodes[i].Close()
		}
	}()
	ctx := context.Background()
	got := make(chan string, 1)
	sub, err := pss[1].Subscribe(ctx, "news", func(d *pubsub.Delivery) bool {
		got <- fmt.Sprintf("%s #%d gap=%d: %s", d.Topic, d.Seq&0x3fffff, d.Gap, d.Data)
		return true
	})
	if err != nil {
		panic(err)
	}
	defer sub.Close()
	if _, err := pss[2].Publish(ctx, "news", []byte("hello")); err != nil {
		panic(err)
	}
	fmt.Println(<-got)

	// Anycast: one subscriber takes it and Anycast says which node.
	who, err := pss[0].Anycast(ctx, "news", []byte("job"))
	fmt.Println(who.ID == nodes[1].ID(), err)

	// No subscribers: a quick, clear error.
	_, err = pss[0].Anycast(ctx, "nobody-listens", []byte("job"))
	fmt.Println(errors.Is(err, pubsub.ErrNoSubscribers))
	// Output:
	// news #1 gap=0: hello
	// true <nil>
	// true
}
