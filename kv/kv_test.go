package kv

import (
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

func TestBasicOperations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 1
		c := newCluster(t, seed, 6)
		defer c.close()
		ctx, cancel := ctxT(30 * time.Second)
		defer cancel()
		a, b := c.any(), c.any()
		if _, err := a.kv.Get(ctx, "missing"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("seed %d: get missing: %v", seed, err)
		}
		v1, err := a.kv.Put(ctx, "k", []byte("one"))
		if err != nil || v1 != 1 {
			t.Fatalf("seed %d: put: v=%d err=%v", seed, v1, err)
		}
		it, err := b.kv.Get(ctx, "k")
		if err != nil || string(it.Value) != "one" || it.Version != 1 {
			t.Fatalf("seed %d: get: %+v %v", seed, it, err)
		}
		if _, err := b.kv.Put(ctx, "k", []byte("x"), IfVersion(7)); !errors.Is(err, ErrVersionMismatch) {
			t.Fatalf("seed %d: CAS at wrong version: %v", seed, err)
		} else {
			var vm *VersionMismatchError
			if !errors.As(err, &vm) || vm.Have != 1 {
				t.Fatalf("seed %d: mismatch error lacks the current version: %v", seed, err)
			}
		}
		v2, err := b.kv.Put(ctx, "k", []byte("two"), IfVersion(1))
		if err != nil || v2 != 2 {
			t.Fatalf("seed %d: CAS: %d %v", seed, v2, err)
		}
		if _, err := a.kv.Put(ctx, "k", []byte("three"), IfAbsent()); !errors.Is(err, ErrVersionMismatch) {
			t.Fatalf("seed %d: create-only on existing key: %v", seed, err)
		}
		vd, err := a.kv.Delete(ctx, "k", IfVersion(2))
		if err != nil || vd != 3 {
			t.Fatalf("seed %d: delete: %d %v", seed, vd, err)
		}
		if _, err := b.kv.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("seed %d: get after delete: %v", seed, err)
		}
		v4, err := b.kv.Put(ctx, "k", []byte("again"), IfAbsent())
		if err != nil || v4 != 4 {
			t.Fatalf("seed %d: re-create continues versions: %d %v", seed, v4, err)
		}
		for i := 0; i < 30; i++ {
			key := fmt.Sprintf("key-%d", i)
			if _, err := c.any().kv.Put(ctx, key, []byte(key)); err != nil {
				t.Fatalf("seed %d: put %s: %v", seed, key, err)
			}
		}
		for i := 0; i < 30; i++ {
			key := fmt.Sprintf("key-%d", i)
			it, err := c.any().kv.Get(ctx, key)
			if err != nil || string(it.Value) != key {
				t.Fatalf("seed %d: get %s: %+v %v", seed, key, it, err)
			}
		}
		it, err = a.kv.Update(ctx, "counter", func(old []byte, exists bool) ([]byte, error) {
			return []byte("1"), nil
		})
		if err != nil || it.Version != 1 {
			t.Fatalf("seed %d: update: %+v %v", seed, it, err)
		}
	})
}

// TestHashTagsAndLocal: keys sharing a "{tag}" prefix live on one owner,
// and that owner's Local listing shows them with their versions.
func TestHashTagsAndLocal(t *testing.T) {
	if KeyID("{q}a") != KeyID("{q}b") || KeyID("{q}a") != KeyID("{q}") {
		t.Fatal("keys with one hash tag have different IDs")
	}
	if KeyID("{}a") == KeyID("{}b") || KeyID("q}a") == KeyID("q}b") {
		t.Fatal("an empty or unopened tag grouped keys")
	}
	synctest.Test(t, func(t *testing.T) {
		const seed = 2
		c := newCluster(t, seed, 5)
		defer c.close()
		ctx, cancel := ctxT(30 * time.Second)
		defer cancel()
		for i := range 20 {
			if _, err := c.any().kv.Put(ctx, fmt.Sprintf("{grp}%02d", i), []byte{byte(i)}); err != nil {
				t.Fatalf("seed %d: put: %v", seed, err)
			}
		}
		if _, err := c.any().kv.Delete(ctx, "{grp}00"); err != nil {
			t.Fatalf("seed %d: delete: %v", seed, err)
		}
		if _, err := c.any().kv.Put(ctx, "other", []byte("x")); err != nil {
			t.Fatalf("seed %d: put: %v", seed, err)
		}
		own := c.owner("{grp}")
		items, err := own.kv.Local(ctx, "{grp}")
		if err != nil {
			t.Fatalf("seed %d: local: %v", seed, err)
		}
		if len(items) != 20 {
			t.Fatalf("seed %d: owner lists %d items, want 20", seed, len(items))
		}
		if !items[0].Deleted || items[0].Version != 2 || items[1].Deleted || items[1].Value[0] != 1 {
			t.Fatalf("seed %d: listing %+v %+v", seed, items[0], items[1])
		}
		if _, err := own.kv.Local(ctx, "other"); err != nil {
			t.Fatalf("seed %d: local: %v", seed, err)
		}
	})
}

// TestSyncLargeRange: a replica that lost its disk resynchronises a range
// holding more than one frame's worth of data (sync answers are paged).
func TestSyncLargeRange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 5
		c := newCluster(t, seed, 4)
		defer c.close()
		ctx, cancel := ctxT(2 * time.Minute)
		defer cancel()
		const keys = 300
		val := make([]byte, 16<<10) // 300 × 16 KiB, about 6.4 MB encoded: over the 4 MiB frame limit
		for i := range keys {
			if _, err := c.any().kv.Put(ctx, fmt.Sprintf("{big}%03d", i), val); err != nil {
				t.Fatalf("seed %d: put %d: %v", seed, i, err)
			}
		}
		// A replica of the range that is not its owner loses its disk.
		own := c.owner("{big}")
		var victim *member
		for _, m := range c.live() {
			if m == own {
				continue
			}
			if items, err := m.kv.Local(ctx, "{big}"); err == nil && len(items) == keys {
				victim = m
				break
			}
		}
		if victim == nil {
			t.Fatalf("seed %d: no replica besides the owner holds the range", seed)
		}
		c.crash(victim)
		victim.store = NewMemStore()
		c.restart(victim)
		time.Sleep(10 * time.Second) // virtual: a few sync rounds
		items, err := victim.kv.Local(ctx, "{big}")
		if err != nil {
			t.Fatalf("seed %d: local: %v", seed, err)
		}
		if len(items) != keys {
			t.Fatalf("seed %d: the replica resynchronised %d of %d keys", seed, len(items), keys)
		}
	})
}

// TestCommitNotices: a write is marked committed at once on its owner and,
// batched, within commitDelay on the other replicas.
func TestCommitNotices(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 4
		c := newCluster(t, seed, 5)
		defer c.close()
		ctx, cancel := ctxT(30 * time.Second)
		defer cancel()
		const n = 30
		for i := range n {
			if _, err := c.any().kv.Put(ctx, fmt.Sprintf("{cn}%02d", i), []byte{byte(i)}); err != nil {
				t.Fatalf("seed %d: put: %v", seed, err)
			}
		}
		own := c.owner("{cn}")
		committed := func(m *member) (holders, done int) {
			items, err := m.kv.Local(ctx, "{cn}")
			if err != nil {
				t.Fatalf("seed %d: local: %v", seed, err)
			}
			for _, it := range items {
				holders++
				if it.Committed {
					done++
				}
			}
			return holders, done
		}
		if h, d := committed(own); h != n || d != n {
			t.Fatalf("seed %d: owner holds %d, %d committed; want %d and %d", seed, h, d, n, n)
		}
		pending := 0
		for _, m := range c.members {
			if m != own {
				h, d := committed(m)
				pending += h - d
			}
		}
		if pending == 0 {
			t.Fatalf("seed %d: every replica already had its notices: nothing was batched", seed)
		}
		time.Sleep(commitDelay + 100*time.Millisecond)
		replicas := 0
		for _, m := range c.members {
			if m == own {
				continue
			}
			h, d := committed(m)
			if h > 0 {
				replicas++
			}
			if d != h {
				t.Fatalf("seed %d: a replica has %d of its %d records committed after %v", seed, d, h, commitDelay)
			}
		}
		if replicas < 2 {
			t.Fatalf("seed %d: %d other replicas hold the keys, want at least 2", seed, replicas)
		}
	})
}
