package memnet_test

import (
	"fmt"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport/memnet"
)

// Two nodes play ping-pong on the virtual clock; a cut then silences them.
func Example() {
	n := memnet.New(memnet.Config{Seed: 1, MinLatency: 5 * time.Millisecond, MaxLatency: 5 * time.Millisecond})
	a, b := id.HashString("a"), id.HashString("b")
	start := n.Now()
	n.Attach(a, func(from id.ID, msg any) {
		fmt.Printf("%v a got %v\n", n.Now().Sub(start), msg)
		if k := msg.(int); k < 4 {
			n.Send(a, from, k+1)
		}
	})
	n.Attach(b, func(from id.ID, msg any) {
		fmt.Printf("%v b got %v\n", n.Now().Sub(start), msg)
		n.Send(b, from, msg.(int)+1)
	})
	n.Send(a, b, 0)
	n.RunFor(time.Second)

	n.Cut(a, b)
	n.Send(a, b, 100)
	n.RunFor(time.Second)
	fmt.Printf("%+v\n", n.Stats())
	// Output:
	// 5ms b got 0
	// 10ms a got 1
	// 15ms b got 2
	// 20ms a got 3
	// 25ms b got 4
	// 30ms a got 5
	// {Sent:7 Delivered:6 Dropped:0 Blocked:1 Duplicated:0 Held:0}
}
