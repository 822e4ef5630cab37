package resource_test

import (
	"context"
	"log"
	"time"

	"github.com/shoal-p2p/shoal/kv"
	"github.com/shoal-p2p/shoal/resource"
)

// A holder's loop: acquire, keep the lease alive, act only while it is
// valid and always with its token, stop before releasing.
func Example_holder() {
	var store *kv.KV // the node's store
	m, err := resource.New(store, resource.Config{Holder: "node-id-in-hex"})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	l, err := m.Acquire(ctx, "ips")
	if err != nil {
		log.Fatal(err) // ErrPoolExhausted, ErrUnknownPool, ErrUnavailable...
	}
	kctx, stop := context.WithCancel(ctx)
	lost := m.KeepAlive(kctx, l)
	for range 10 {
		select {
		case err := <-lost:
			log.Printf("stop using %s: %v", l.Name, err)
			stop()
			return
		case <-time.After(time.Second):
		}
		if !l.Valid(time.Now()) {
			continue // not renewed yet: do nothing until it is, or is lost
		}
		configure(l.Name, l.Token) // the service checks the token with a resource.Guard
	}
	stop()
	if err := m.Release(ctx, l); err != nil {
		log.Print(err)
	}
}

func configure(addr string, token uint64) {}
