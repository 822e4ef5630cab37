package testring

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/kv"
)

// TestCrashRestartKeepsData: a value written before the owner crashes is
// read back after its restart, and Attach runs on every incarnation.
func TestCrashRestartKeepsData(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		starts := 0
		c := New(t, Options{Seed: 7, Nodes: 4, Attach: func(m *Member) (any, func()) {
			starts++
			return starts, nil
		}})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := c.Any().KV.Put(ctx, "k", []byte("v")); err != nil {
			t.Fatalf("seed 7: put: %v", err)
		}
		own := c.Owner(kv.KeyID("k"))
		c.Crash(own)
		it, err := c.Any().KV.Get(ctx, "k")
		if err != nil || string(it.Value) != "v" {
			t.Fatalf("seed 7: get after crash: %+v %v", it, err)
		}
		c.Restart(own)
		time.Sleep(3 * time.Second)
		if starts != 5 || own.Extra.(int) != 5 {
			t.Fatalf("Attach ran %d times, member has %v; want 5", starts, own.Extra)
		}
		if it, err := own.KV.Get(ctx, "k"); err != nil || string(it.Value) != "v" {
			t.Fatalf("seed 7: get after restart: %+v %v", it, err)
		}
	})
}
