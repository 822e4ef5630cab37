package node_test

import (
	"context"
	"fmt"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/service"
	"github.com/shoal-p2p/shoal/transport"
	"github.com/shoal-p2p/shoal/transport/memnet"
)

// Reserve asks for N units of a SKU.
type Reserve struct {
	SKU string `json:"sku"`
	N   int    `json:"n"`
}

// Reservation is the answer.
type Reservation struct {
	SKU  string `json:"sku"`
	N    int    `json:"n"`
	Left int    `json:"left"`
}

// newInventory is a service with state of its own and no locks: its
// handler and continuations run one at a time on the service's loop.
func newInventory() *service.Service {
	stock := map[string]int{"sku-42": 10}
	return service.New("inventory").
		Uses("disk").                  // admission control: the request needs the disk
		Dedupe(10000, 10*time.Minute). // a retried request runs once
		Method("reserve", func(c *service.Call) {
			var req Reserve
			if err := c.Decode(&req); err != nil {
				c.Fail(err) // bad_request, back to the caller
				return
			}
			if stock[req.SKU] < req.N {
				c.Fail(service.AppError("only %d of %s left", stock[req.SKU], req.SKU))
				return
			}
			stock[req.SKU] -= req.N // held while the write is out
			left := stock[req.SKU]
			// The slow step (a disk write, a call to another node) runs on a
			// goroutine of its own; the loop serves other requests meanwhile.
			c.Go(func(ctx context.Context) (any, error) {
				return nil, saveReservation(ctx, req)
			}, func(_ any, err error) { // back on the loop
				if err != nil {
					stock[req.SKU] += req.N
					c.Fail(service.AppError("cannot reserve %s: %v", req.SKU, err))
					return
				}
				c.Reply(Reservation{SKU: req.SKU, N: req.N, Left: left})
			})
		})
}

// saveReservation stands for slow work: it honours the caller's deadline.
func saveReservation(ctx context.Context, r Reserve) error { return ctx.Err() }

// Writing a service: register it on every node, then call it by key from
// any node; the key's owner answers.
func ExampleNode_Handle() {
	ctx := context.Background()
	net := memnet.New(memnet.Config{Seed: 1, Realtime: true, MinLatency: 100 * time.Microsecond, MaxLatency: 500 * time.Microsecond})
	var nodes []*node.Node
	var boot []transport.Peer
	for _, name := range []string{"a", "b"} {
		cfg := node.DefaultConfig()
		cfg.Ring = ring.LocalConfig()
		cfg.Transport = net.Transport(id.HashString(name))
		cfg.Bootstrap = boot
		n, err := node.Start(ctx, cfg)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer n.Close()
		if err := n.Handle(newInventory()); err != nil {
			fmt.Println(err)
			return
		}
		nodes = append(nodes, n)
		boot = []transport.Peer{n.Self()}
	}

	var out Reservation
	err := nodes[1].Call(ctx, id.HashString("sku-42"), "inventory", "reserve", Reserve{SKU: "sku-42", N: 3}, &out)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("reserved %d of %s, %d left\n", out.N, out.SKU, out.Left)

	err = nodes[0].Call(ctx, id.HashString("sku-42"), "inventory", "reserve", Reserve{SKU: "sku-42", N: 8}, &out)
	fmt.Println(err)
	// Output:
	// reserved 3 of sku-42, 7 left
	// service: app: only 7 of sku-42 left
}
