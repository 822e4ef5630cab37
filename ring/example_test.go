package ring_test

import (
	"fmt"
	"math/rand"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/transport"
)

func ExampleEncode() {
	from := transport.Peer{ID: id.MustParse("00112233445566778899aabbccddeeff00112233")}
	frame, err := ring.Encode(from, &ring.Probe{Nonce: 7})
	if err != nil {
		panic(err)
	}
	// Version, kind, then length-prefixed JSON for the sender and the message.
	fmt.Printf("%d %d %q\n", frame[0], frame[1], frame[2:])

	sender, m, err := ring.Decode(frame)
	fmt.Println(sender.ID.Short(), m.Kind(), m.(*ring.Probe).Nonce, err)

	_, _, err = ring.Decode(frame[:len(frame)-1])
	fmt.Println(err)
	// Output:
	// 1 7 "1{\"id\":\"00112233445566778899aabbccddeeff00112233\"}\v{\"nonce\":7}"
	// 00112233 probe 7 <nil>
	// ring: bad message: probe: length 11 exceeds frame (10 bytes left, limit 262144)
}

func ExampleNode() {
	self := transport.Peer{ID: id.HashString("node-1")}
	n, err := ring.New(self, ring.DefaultConfig(), rand.New(rand.NewSource(1)))
	if err != nil {
		panic(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n.Start(now, nil) // no seeds: a new ring of one
	fmt.Println(n.Ready(), n.IsOwner(id.HashString("any key")))

	n.Route(now, id.HashString("k"), []byte("hello"))
	out := n.TakeOutput() // the runtime sends out.Messages and hands out.Deliveries to the application
	fmt.Println(len(out.Messages), string(out.Deliveries[0].Payload))
	// Output:
	// true true
	// 0 hello
}
