package kv

import (
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestConcurrentWritesToOneKey: writes to one key that reach its owner while
// the owner is busy with another write of that key wait their turn. None may
// fail: the ring is healthy.
func TestConcurrentWritesToOneKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 11
		c := newCluster(t, seed, 5)
		defer c.close()
		ctx, cancel := ctxT(30 * time.Second)
		defer cancel()
		var wg sync.WaitGroup
		errs := make(chan error, 32)
		for g := 0; g < 8; g++ {
			m := c.live()[g%5]
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 4; i++ {
					if _, err := m.kv.Put(ctx, "hot", []byte(fmt.Sprint(g, i))); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("seed %d: concurrent Put on a healthy ring failed: %v", seed, err)
		}
	})
}

// TestLargestValue: a value of exactly MaxValue bytes (the documented limit)
// is stored and read back on a ring with default node settings.
func TestLargestValue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 12
		c := newCluster(t, seed, 4)
		defer c.close()
		ctx, cancel := ctxT(30 * time.Second)
		defer cancel()
		big := make([]byte, DefaultConfig().MaxValue)
		for i := range big {
			big[i] = byte('a' + i%26)
		}
		m := c.live()[0]
		if _, err := m.kv.Put(ctx, "big", big); err != nil {
			t.Fatalf("seed %d: Put of %d bytes (MaxValue): %v", seed, len(big), err)
		}
		it, err := c.live()[1].kv.Get(ctx, "big")
		if err != nil || len(it.Value) != len(big) {
			t.Fatalf("seed %d: Get: %d bytes, %v", seed, len(it.Value), err)
		}
	})
}
