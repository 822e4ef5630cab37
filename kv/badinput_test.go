package kv

import (
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/service"
)

// A replica update (prepare or accept) from a node that is not one of the
// key's replicas is refused, and so is a ballot naming another node; nothing
// is stored. Oversized values and bad keys get clear errors.
func TestBadReplicaUpdatesAndInput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 41
		c := newCluster(t, seed, 6)
		defer c.close()
		ctx, cancel := ctxT(30 * time.Second)
		defer cancel()
		const key = "guarded"
		if _, err := c.any().kv.Put(ctx, key, []byte("good")); err != nil {
			t.Fatalf("seed %d: put: %v", seed, err)
		}
		owner := c.owner(key)
		rs, _ := owner.kv.r.lay.replicaSet(KeyID(key))
		inSet := map[string]bool{}
		for _, p := range rs {
			inSet[p.ID.String()] = true
		}
		var outsider *member
		for _, m := range c.live() {
			if !inSet[m.id.String()] {
				outsider = m
				break
			}
		}
		if outsider == nil {
			t.Fatalf("seed %d: every node is a replica", seed)
		}
		evil := ballotReq{Key: key, Ballot: Ballot{Round: 1 << 40, Node: outsider.id}, State: State{Version: 99, Value: []byte("evil")}}
		var resp ballotResp
		err := outsider.n.CallNode(ctx, owner.n.Self(), ServiceName, "accept", evil, &resp, node.WithRetry(service.NoRetry()))
		if err == nil || !strings.Contains(err.Error(), "not a replica") {
			t.Fatalf("seed %d: accept from a non-replica: err %v resp %+v", seed, err, resp)
		}
		err = outsider.n.CallNode(ctx, owner.n.Self(), ServiceName, "prepare", evil, &resp, node.WithRetry(service.NoRetry()))
		if err == nil || !strings.Contains(err.Error(), "not a replica") {
			t.Fatalf("seed %d: prepare from a non-replica: err %v", seed, err)
		}
		// A replica sending a ballot that names someone else.
		var other *member
		for _, m := range c.live() {
			if inSet[m.id.String()] && m.id != owner.id {
				other = m
				break
			}
		}
		liar := ballotReq{Key: key, Ballot: Ballot{Round: 1 << 40, Node: owner.id}, State: State{Version: 99, Value: []byte("evil")}}
		err = other.n.CallNode(ctx, owner.n.Self(), ServiceName, "accept", liar, &resp, node.WithRetry(service.NoRetry()))
		if !errors.Is(err, service.ErrBadRequest) {
			t.Fatalf("seed %d: ballot naming another node: %v", seed, err)
		}
		it, err := c.any().kv.Get(ctx, key)
		if err != nil || string(it.Value) != "good" || it.Version != 1 {
			t.Fatalf("seed %d: refused updates changed the key: %+v %v", seed, it, err)
		}
		// Bad input through the API.
		k := c.any().kv
		if _, err := k.Put(ctx, "", []byte("x")); !errors.Is(err, ErrBadKey) {
			t.Fatalf("empty key: %v", err)
		}
		if _, err := k.Put(ctx, strings.Repeat("k", 1025), []byte("x")); !errors.Is(err, ErrBadKey) {
			t.Fatalf("over-long key: %v", err)
		}
		if _, err := k.Put(ctx, "big", make([]byte, 1<<20+1)); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("oversized value: %v", err)
		}
		if _, err := k.Get(ctx, "big"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("oversized value was stored: %v", err)
		}
	})
}
