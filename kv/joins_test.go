package kv

import (
	"fmt"
	"math/rand"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport/memnet"
)

// TestQuickJoins: nodes that join one right after another (as when a
// script starts a ring) must end up serving every key. A node new to a
// range synchronises it from a majority of the range's previous replicas;
// when those joined moments before and have not synchronised either, no
// one may ever become a source.
func TestQuickJoins(t *testing.T) {
	for _, gap := range []time.Duration{0, 50 * time.Millisecond, 200 * time.Millisecond} {
		t.Run(gap.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const seed = 5
				c := &cluster{t: t, seed: seed, rng: rand.New(rand.NewSource(seed)), members: map[id.ID]*member{}}
				c.net = memnet.New(memnet.Config{Seed: seed, Realtime: true, MinLatency: time.Millisecond, MaxLatency: 3 * time.Millisecond})
				for i := 0; i < 8; i++ {
					c.add()
					time.Sleep(gap)
				}
				defer c.close()
				time.Sleep(20 * time.Second) // virtual: ten anti-entropy rounds
				for i := 0; i < 8; i++ {
					ctx, cancel := ctxT(5 * time.Second)
					_, err := c.any().kv.Put(ctx, fmt.Sprint("k", i), []byte("x"))
					cancel()
					if err != nil {
						t.Fatalf("seed %d, joins %v apart: a healthy 8-node ring cannot store k%d 20s later: %v", seed, gap, i, err)
					}
				}
			})
		})
	}
}
