package kv

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/service"
)

// TestGracefulLeaveReleasesLeases: an owner whose store is closed before
// its node leaves gives back the read leases its replicas granted it, so
// another node can prepare the key at once instead of waiting them out;
// the leaving owner answers no operation from then on; and a release that
// names another incarnation of the owner drops nothing.
func TestGracefulLeaveReleasesLeases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed, key = 11, "handed-over"
		c := newCluster(t, seed, 5)
		defer c.close()
		ctx, cancel := ctxT(30 * time.Second)
		defer cancel()
		owner, reps, prepare := leasedKey(ctx, t, c, seed, key)
		a, b := reps[0], reps[1]
		// A read through the owner renews its lease.
		if _, err := owner.kv.Get(ctx, key); err != nil {
			t.Fatalf("seed %d: get: %v", seed, err)
		}
		if prepare() {
			t.Fatalf("seed %d: a replica promised another node while the owner held a read lease", seed)
		}
		var resp releaseResp
		if err := owner.n.CallNode(ctx, b, ServiceName, "release", releaseReq{Inc: owner.kv.r.inc + 2}, &resp, node.WithRetry(service.NoRetry())); err != nil || resp.Dropped != 0 {
			t.Fatalf("seed %d: a release naming another incarnation dropped %d grants (%v), want none", seed, resp.Dropped, err)
		}
		if prepare() {
			t.Fatalf("seed %d: a replica promised another node after a release from another incarnation", seed)
		}

		left := time.Now()
		owner.kv.Close()
		if !prepare() {
			t.Fatalf("seed %d: the owner's store closed, and a replica still refuses to promise another node: its lease was not given back", seed)
		}
		var op opResp
		err := c.members[a.ID].n.CallNode(ctx, owner.n.Self(), ServiceName, "op", opReq{Op: "get", Key: key}, &op, node.WithRetry(service.NoRetry()))
		var se *service.Error
		if !errors.As(err, &se) || se.Code != service.CodeUnavailable {
			t.Fatalf("seed %d: the owner, after giving its leases back, answered a read: %+v, %v", seed, op, err)
		}
		owner.n.Close()
		c.mu.Lock()
		owner.down = true
		c.mu.Unlock()
		other := c.any()
		if _, err := other.kv.Put(ctx, key, []byte("v2")); err != nil {
			t.Fatalf("seed %d: put after the owner left: %v", seed, err)
		}
		t.Logf("seed %d: the first write after the owner left was acknowledged %v later", seed, time.Since(left))
		it, err := other.kv.Get(ctx, key)
		if err != nil || string(it.Value) != "v2" {
			t.Fatalf("seed %d: read %+v, %v; want v2", seed, it, err)
		}
	})
}
