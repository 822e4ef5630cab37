package kv

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/service"
	"github.com/shoal-p2p/shoal/transport"
)

// TestReadLease: after a write, the key's replicas refuse to promise any
// other node for ReadLease; the owner answers reads from its state without
// a round meanwhile (even cut off from everyone), and not after.
func TestReadLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed, key = 5, "leased"
		c := newCluster(t, seed, 5)
		defer c.close()
		ctx, cancel := ctxT(30 * time.Second)
		defer cancel()
		owner, _, prepare := leasedKey(ctx, t, c, seed, key)
		if prepare() {
			t.Fatalf("seed %d: a replica promised another node while the owner held a read lease", seed)
		}

		var others []id.ID
		for _, m := range c.live() {
			if m.id != owner.id {
				others = append(others, m.id)
			}
		}
		c.net.Partition([]id.ID{owner.id}, others)
		gctx, gcancel := context.WithTimeout(ctx, 100*time.Millisecond)
		it, err := owner.kv.Get(gctx, key)
		gcancel()
		if err != nil || string(it.Value) != "v1" {
			t.Fatalf("seed %d: the owner, cut off but holding a lease, read %+v, %v; want v1 without a round", seed, it, err)
		}
		time.Sleep(DefaultConfig().ReadLease)
		gctx, gcancel = context.WithTimeout(ctx, time.Second)
		it, err = owner.kv.Get(gctx, key)
		gcancel()
		if err == nil {
			t.Fatalf("seed %d: the owner, cut off, answered %+v after its lease ran out", seed, it)
		}
		c.net.Heal()
		if !prepare() {
			t.Fatalf("seed %d: a replica still refused to promise after the lease ran out", seed)
		}
	})
}

// TestGracefulLeaveReleasesLeases: an owner whose store is closed before
// its node leaves gives back the read leases its replicas granted it, so
// another node can prepare the key at once instead of waiting them out
// (the next write is acknowledged in less than a lease: 0.64 s here, 1.07 s
// without the release); the leaving owner answers no operation from then
// on; and a release that names another incarnation of the owner drops
// nothing.
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
		took := time.Since(left) // virtual time: the same in every run of this seed
		t.Logf("seed %d: the first write after the owner left was acknowledged %v later", seed, took)
		if lease := owner.kv.cfg.ReadLease; took >= lease {
			t.Fatalf("seed %d: the first write after the owner left took %v, no less than a read lease (%v): the new owner waited the lease out", seed, took, lease)
		}
		it, err := other.kv.Get(ctx, key)
		if err != nil || string(it.Value) != "v2" {
			t.Fatalf("seed %d: read %+v, %v; want v2", seed, it, err)
		}
	})
}

// leasedKey writes key, so that its owner holds a read lease, and returns
// the owner, its two other replicas a and b, and a prepare for the key that
// a sends b (each with a higher ballot): it reports whether b promised.
func leasedKey(ctx context.Context, t *testing.T, c *cluster, seed int64, key string) (*member, [2]transport.Peer, func() bool) {
	t.Helper()
	if _, err := c.any().kv.Put(ctx, key, []byte("v1")); err != nil {
		t.Fatalf("seed %d: put: %v", seed, err)
	}
	owner := c.owner(key)
	p, err := owner.kv.Placement(ctx, key)
	if err != nil || len(p.Replicas) != 3 || p.Replicas[0].ID != owner.id {
		t.Fatalf("seed %d: placement %+v: %v", seed, p, err)
	}
	a, b := p.Replicas[1], p.Replicas[2]
	round := uint64(1 << 40)
	return owner, [2]transport.Peer{a, b}, func() bool {
		round++
		var resp ballotResp
		req := ballotReq{Key: key, Ballot: Ballot{Round: round, Node: a.ID}}
		if err := c.members[a.ID].n.CallNode(ctx, b, ServiceName, "prepare", req, &resp, node.WithRetry(service.NoRetry())); err != nil {
			t.Fatalf("seed %d: prepare: %v", seed, err)
		}
		return resp.OK
	}
}
