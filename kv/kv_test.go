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
