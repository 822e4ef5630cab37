package resource

import (
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.Holder = "node1"
	if err := ok.Validate(); err != nil {
		t.Fatalf("default config with a holder: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no holder", func(c *Config) { c.Holder = "" }, "Holder is required"},
		{"bad holder", func(c *Config) { c.Holder = "a/b" }, "bad name"},
		{"short TTL", func(c *Config) { c.TTL = time.Millisecond }, "TTL must be at least"},
		{"negative drift", func(c *Config) { c.DriftMargin = -1 }, "DriftMargin must be >= 0"},
		{"drift over TTL", func(c *Config) { c.DriftMargin = c.TTL }, "must be below TTL"},
	} {
		c := ok
		tc.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate() = %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := New(nil, ok); err == nil {
		t.Errorf("New(nil) accepted")
	}
}

func TestCheckName(t *testing.T) {
	for _, good := range []string{"a", "10.0.0.1", "fe80::1", "gpu-0", "A_b.c@d", strings.Repeat("x", maxName)} {
		if err := checkName("resource", good, maxName); err != nil {
			t.Errorf("checkName(%q) = %v", good, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", "{x}", "a b", "a\x00", "é", "10.0.0.0/24", strings.Repeat("x", maxName+1)} {
		if err := checkName("resource", bad, maxName); !errors.Is(err, ErrBadName) {
			t.Errorf("checkName(%q) = %v, want ErrBadName", bad, err)
		}
	}
}

// TestBadInput: unknown pools and names, bad names, renewals and releases
// by non-holders or with old tokens, corrupt records, a record deleted
// behind the package's back.
func TestBadInput(t *testing.T) {
	const seed = 3
	synctest.Test(t, func(t *testing.T) {
		c := ring(t, seed, 5, nil)
		defer c.Close()
		ctx := tctx(t)
		live := c.Live()
		a, b := mgr(live[0]), mgr(live[1])

		// Unknown pool.
		if _, err := a.Acquire(ctx, "nopool"); !errors.Is(err, ErrUnknownPool) {
			t.Errorf("Acquire(unknown pool) = %v", err)
		}
		if _, err := a.AcquireName(ctx, "nopool", "x"); !errors.Is(err, ErrUnknownPool) {
			t.Errorf("AcquireName(unknown pool) = %v", err)
		}
		if _, err := a.List(ctx, "nopool"); !errors.Is(err, ErrUnknownPool) {
			t.Errorf("List(unknown pool) = %v", err)
		}
		if err := a.ReleaseToken(ctx, "nopool", "x", 1); !errors.Is(err, ErrUnknownPool) {
			t.Errorf("ReleaseToken(unknown pool) = %v", err)
		}
		if _, err := a.RenewToken(ctx, "nopool", "x", 1); !errors.Is(err, ErrUnknownPool) {
			t.Errorf("RenewToken(unknown pool) = %v", err)
		}

		// Bad names everywhere; a bad name in a definition defines nothing.
		if err := a.DefinePool(ctx, "p", []string{"ok", "not ok"}); !errors.Is(err, ErrBadName) {
			t.Errorf("DefinePool(bad resource name) = %v", err)
		}
		if _, err := a.List(ctx, "p"); !errors.Is(err, ErrUnknownPool) {
			t.Errorf("a rejected definition created the pool: %v", err)
		}
		for _, bad := range []string{"", "a/b", "{p}", "..", strings.Repeat("p", maxPool+1)} {
			if err := a.DefinePool(ctx, bad, []string{"x"}); !errors.Is(err, ErrBadName) {
				t.Errorf("DefinePool(%q) = %v", bad, err)
			}
			if _, err := a.Acquire(ctx, bad); !errors.Is(err, ErrBadName) {
				t.Errorf("Acquire(%q) = %v", bad, err)
			}
		}
		if err := a.DefinePool(ctx, "p", []string{"r1", "r2"}); err != nil {
			t.Fatalf("seed %d: define: %v", seed, err)
		}
		for _, bad := range []string{"", "r1/x", "}", strings.Repeat("r", maxName+1)} {
			if _, err := a.AcquireName(ctx, "p", bad); !errors.Is(err, ErrBadName) {
				t.Errorf("AcquireName(%q) = %v", bad, err)
			}
			if err := a.ReleaseToken(ctx, "p", bad, 1); !errors.Is(err, ErrBadName) {
				t.Errorf("ReleaseToken(%q) = %v", bad, err)
			}
		}
		if _, err := a.Acquire(ctx, "p", As("a/b")); !errors.Is(err, ErrBadName) {
			t.Errorf("Acquire(As(bad label)) = %v", err)
		}
		if _, err := a.AcquireName(ctx, "p", "r3"); !errors.Is(err, ErrUnknownName) {
			t.Errorf("AcquireName(unknown name) = %v", err)
		}
		if err := a.ReleaseToken(ctx, "p", "r3", 1); !errors.Is(err, ErrUnknownName) {
			t.Errorf("ReleaseToken(unknown name) = %v", err)
		}

		// Release and renew by a non-holder, with an old token.
		l1, err := a.AcquireName(ctx, "p", "r1")
		if err != nil {
			t.Fatalf("seed %d: acquire: %v", seed, err)
		}
		if err := a.Release(ctx, l1); err != nil {
			t.Fatalf("seed %d: release: %v", seed, err)
		}
		l2, err := a.AcquireName(ctx, "p", "r1", As("second"))
		if err != nil || l2.Token != 2 {
			t.Fatalf("seed %d: acquire again: %+v %v", seed, l2, err)
		}
		for _, tok := range []uint64{0, 1, 3, 1 << 63} {
			err := b.ReleaseToken(ctx, "p", "r1", tok)
			var nh *NotHolderError
			if !errors.As(err, &nh) || !errors.Is(err, ErrNotHolder) || nh.Current.Token != 2 || nh.Current.Holder != l2.Holder {
				t.Errorf("ReleaseToken(token %d) by a non-holder = %v", tok, err)
			}
			if _, err := b.RenewToken(ctx, "p", "r1", tok); !errors.Is(err, ErrNotHolder) {
				t.Errorf("RenewToken(token %d) by a non-holder = %v", tok, err)
			}
		}
		for _, tok := range []uint64{0, 1} {
			if err := b.ReleaseToken(ctx, "p", "r2", tok); !errors.Is(err, ErrNotHolder) {
				t.Errorf("ReleaseToken(token %d) on a never-held resource = %v", tok, err)
			}
			if _, err := b.RenewToken(ctx, "p", "r2", tok); !errors.Is(err, ErrNotHolder) {
				t.Errorf("RenewToken(token %d) on a never-held resource = %v", tok, err)
			}
		}
		if err := a.Release(ctx, l1); !errors.Is(err, ErrLeaseLost) {
			t.Errorf("Release of a released lease = %v", err)
		}
		if err := a.Renew(ctx, l1); !errors.Is(err, ErrLeaseLost) {
			t.Errorf("Renew of a released lease = %v", err)
		}
		if st, _ := b.List(ctx, "p"); st[0].State != StateHeld || st[0].Token != 2 {
			t.Fatalf("seed %d: refused calls changed the record: %+v", seed, st[0])
		}
		// The holder's token works from any node (an HTTP client's path).
		time.Sleep(time.Second)
		rl, err := b.RenewToken(ctx, "p", "r1", 2)
		if err != nil || rl.Token != 2 || rl.Holder != l2.Holder || !rl.Expires.After(l2.Expires) {
			t.Fatalf("seed %d: RenewToken by the holder's token: %+v %v", seed, rl, err)
		}
		// l2's own Renew must notice the record moved on (another renewal)
		// and still succeed: the grant is the same.
		if err := a.Renew(ctx, l2); err != nil {
			t.Fatalf("seed %d: renew after a RenewToken: %v", seed, err)
		}
		if err := b.ReleaseToken(ctx, "p", "r1", 2); err != nil {
			t.Fatalf("seed %d: ReleaseToken by the holder's token: %v", seed, err)
		}
		if err := b.ReleaseToken(ctx, "p", "r1", 2); err != nil {
			t.Fatalf("seed %d: ReleaseToken repeated: %v", seed, err)
		}
		if err := a.Renew(ctx, l2); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("seed %d: renew after release by token: %v", seed, err)
		}

		// A corrupt record: AcquireName reports it, Acquire skips it, List
		// shows it as unknown.
		for _, garbage := range []string{`{"state":"held"}`, `{"token":1,"Token":9,"state":"free"}`, `{"state":"free","token":1}{}`, `[]`, `null`, `{"state":"free","token":-1}`} {
			if _, err := c.Any().KV.Put(ctx, resKey("p", "r2"), []byte(garbage)); err != nil {
				t.Fatalf("seed %d: put garbage: %v", seed, err)
			}
			if _, err := a.AcquireName(ctx, "p", "r2"); !errors.Is(err, ErrCorrupt) {
				t.Errorf("AcquireName on %s = %v", garbage, err)
			}
		}
		l3, err := a.Acquire(ctx, "p")
		if err != nil || l3.Name != "r1" {
			t.Fatalf("seed %d: Acquire beside a corrupt record: %+v %v", seed, l3, err)
		}
		st, err := a.List(ctx, "p")
		if !errors.Is(err, ErrCorrupt) || len(st) != 2 || st[1].State != StateUnknown || st[0].Token != 3 {
			t.Fatalf("seed %d: List with a corrupt record: %+v %v", seed, st, err)
		}

		// A record deleted behind our back: the next token still grows.
		if _, err := c.Any().KV.Delete(ctx, resKey("p", "r1")); err != nil {
			t.Fatalf("seed %d: delete: %v", seed, err)
		}
		l4, err := b.AcquireName(ctx, "p", "r1")
		if err != nil || l4.Token <= l3.Token {
			t.Fatalf("seed %d: acquire after delete: %+v %v (previous token %d)", seed, l4, err, l3.Token)
		}
		// A corrupt pool definition.
		if _, err := c.Any().KV.Put(ctx, metaKey("q"), []byte(`{"names":["b","a"]}`)); err != nil {
			t.Fatalf("seed %d: put: %v", seed, err)
		}
		if _, err := a.Acquire(ctx, "q"); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Acquire on a corrupt pool = %v", err)
		}
		if err := a.DefinePool(ctx, "q", []string{"c"}); !errors.Is(err, ErrCorrupt) {
			t.Errorf("DefinePool on a corrupt pool = %v", err)
		}
	})
}
