package p2p_test

import (
	"context"
	"fmt"
	"log"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
	"github.com/shoal-p2p/shoal/transport/p2p"
)

// A peer's node ID follows from its address: the peer ID embeds the key.
func ExampleParsePeer() {
	p, err := p2p.ParsePeer(
		"/ip4/192.0.2.7/tcp/4001/p2p/12D3KooWH61peWtUPhGcNqutEFcHnRw92SHgnUNQdDRPvDs3NJpX",
		"/ip4/192.0.2.7/udp/4001/quic-v1/p2p/12D3KooWH61peWtUPhGcNqutEFcHnRw92SHgnUNQdDRPvDs3NJpX",
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.ID)
	fmt.Println(len(p.Addrs))
	// Output:
	// 2e0d1521e81c81dec14d96da59b288f3dbab6428
	// 2
}

type printer struct{}

func (printer) Receive(from transport.Peer, data []byte) {
	fmt.Printf("%s: %q\n", from.ID.Short(), data)
}

func (printer) Unreachable(to id.ID, err error) {
	fmt.Printf("%s unreachable: %v\n", to.Short(), err)
}

// A node that keeps its identity in a directory and sends one frame to a
// peer given by address.
func ExampleNew() {
	cfg := p2p.DefaultConfig()
	cfg.DataDir = "/var/lib/shoal"
	cfg.Listen = []string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"}
	t, err := p2p.New(context.Background(), cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer t.Close()
	if err := t.Start(printer{}); err != nil {
		log.Fatal(err)
	}
	fmt.Println("I am", t.Self().ID, "at", t.Self().Addrs)

	peer, err := p2p.ParsePeer("/ip4/192.0.2.7/tcp/4001/p2p/12D3KooWH61peWtUPhGcNqutEFcHnRw92SHgnUNQdDRPvDs3NJpX")
	if err != nil {
		log.Fatal(err)
	}
	if err := t.Send(context.Background(), peer, []byte("hello")); err != nil {
		log.Fatal(err)
	}
}
