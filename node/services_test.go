package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/service"
	"github.com/shoal-p2p/shoal/transport"
	"github.com/shoal-p2p/shoal/transport/memnet"
)

// The tests here prove issue 3's list on memnet inside testing/synctest:
// time is virtual (every time.Sleep is), each run has a fixed seed, and
// every failure names it.

// svcRing is a ring of nodes for service tests, in ID order.
type svcRing struct {
	t     *testing.T
	seed  int64
	net   *memnet.Network
	nodes []*Node
	rng   *rand.Rand
}

// newSvcRing starts n nodes on memnet; cfg, if set, adjusts node i's
// configuration. It returns once the leaf sets have settled.
func newSvcRing(t *testing.T, seed int64, n int, lat time.Duration, cfg func(i int, c *Config)) *svcRing {
	t.Helper()
	r := &svcRing{t: t, seed: seed, rng: rand.New(rand.NewSource(seed))}
	r.net = memnet.New(memnet.Config{Seed: seed, Realtime: true, MinLatency: lat, MaxLatency: 5 * lat})
	var boot []transport.Peer
	for i := 0; i < n; i++ {
		var x id.ID
		r.rng.Read(x[:])
		c := DefaultConfig()
		c.Ring = ring.LocalConfig()
		c.Transport = r.net.Transport(x)
		c.Bootstrap = boot
		if cfg != nil {
			cfg(i, &c)
		}
		nd, err := Start(context.Background(), c)
		if err != nil {
			t.Fatalf("seed %d: start node %d: %v", seed, i, err)
		}
		r.nodes = append(r.nodes, nd)
		if i == 0 {
			boot = []transport.Peer{nd.Self()}
		}
	}
	sort.Slice(r.nodes, func(i, j int) bool { return r.nodes[i].ID().Less(r.nodes[j].ID()) })
	time.Sleep(3 * time.Second) // virtual: let leaf sets settle
	return r
}

func (r *svcRing) close() {
	r.net.SetLoss(0)
	r.net.SetDuplicate(0)
	for _, n := range r.nodes {
		n.Close()
	}
}

// owner is the node whose ID is closest to key: the true owner.
func (r *svcRing) owner(key id.ID) *Node {
	ids := make([]id.ID, len(r.nodes))
	for i, n := range r.nodes {
		ids[i] = n.ID()
	}
	return r.nodes[id.Closest(key, ids)]
}

// handle registers the service built by mk on every node.
func (r *svcRing) handle(mk func(i int, n *Node) *service.Service) {
	r.t.Helper()
	for i, n := range r.nodes {
		if err := n.Handle(mk(i, n)); err != nil {
			r.t.Fatalf("seed %d: handle on node %d: %v", r.seed, i, err)
		}
	}
}

// rawCall is the test hook for envelopes made by hand: it sends frame as a
// service call to a node (or, with key set, to the key's owner) and decodes
// the reply.
func rawCall(ctx context.Context, from *Node, key *id.ID, to *transport.Peer, frame []byte) (service.Reply, error) {
	b, err := from.exchange(ctx, key, to, kindSvcCall, frame)
	if err != nil {
		return service.Reply{}, err
	}
	return service.DecodeReply(b)
}

// serviceError unwraps a *service.Error or fails.
func serviceError(t *testing.T, err error, code string) *service.Error {
	t.Helper()
	var se *service.Error
	if !errors.As(err, &se) {
		t.Fatalf("want a *service.Error %q, got %T %v", code, err, err)
	}
	if se.Code != code {
		t.Fatalf("want code %q, got %v", code, se)
	}
	return se
}

type addReq struct {
	Caller int `json:"caller"`
	N      int `json:"n"`
}

type addResp struct {
	ID     string `json:"id"`
	Double int    `json:"double"`
	Node   string `json:"node"`
}

// On memnet with duplication and loss, retried calls to a deduplicated
// service run the handler exactly once per request ID, and each caller gets
// the one answer.
//
// Routed duplicates are mostly suppressed by the overlay (it remembers the
// messages it delivered); what reaches the dedupe window are retries after a
// lost request or reply, retries of a call still running (every fifth call's
// work outlasts an attempt), and duplicated frames of calls sent straight to
// a node with CallNode.
func TestExactlyOnceUnderDuplicationAndLoss(t *testing.T) {
	for _, seed := range []int64{31, 62, 93} {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { exactlyOnce(t, seed) })
		})
	}
}

func exactlyOnce(t *testing.T, seed int64) {
	r := newSvcRing(t, seed, 6, time.Millisecond, nil)
	defer r.close()

	var mu sync.Mutex
	execs := map[string]int{}      // request ID -> handler runs, on any node
	where := map[string][]string{} // request ID -> nodes that ran it
	r.handle(func(i int, n *Node) *service.Service {
		name := n.ID().Short()
		return service.New("ledger").Dedupe(100000, time.Hour).Method("add", func(c *service.Call) {
			var q addReq
			if err := c.Decode(&q); err != nil {
				c.Fail(err)
				return
			}
			mu.Lock()
			execs[c.ID()]++
			where[c.ID()] = append(where[c.ID()], name)
			mu.Unlock()
			// The effect takes a while: duplicates arriving meanwhile join it.
			work := 20 * time.Millisecond
			if q.N%5 == 0 {
				work = 500 * time.Millisecond // longer than an attempt
			}
			c.Go(func(ctx context.Context) (any, error) {
				time.Sleep(work)
				return addResp{ID: c.ID(), Double: 2 * q.N, Node: name}, nil
			}, func(v any, err error) { c.Reply(v) })
		})
	})
	r.net.SetDuplicate(0.2)
	r.net.SetLoss(0.1)

	const callers, perCaller = 6, 40 // callers 0-3 route to keys, 4-5 call nodes directly
	policy := service.RetryPolicy{Attempts: 30, PerAttempt: 300 * time.Millisecond, Backoff: 20 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond, Jitter: 0.2, Overall: time.Minute}
	type outcome struct {
		id   string
		n    int
		resp addResp
		err  error
	}
	out := make(chan outcome, callers*perCaller)
	var wg sync.WaitGroup
	for c := 0; c < callers; c++ {
		from := r.nodes[c%len(r.nodes)]
		keys := make([]id.ID, perCaller)
		for i := range keys {
			r.rng.Read(keys[i][:])
		}
		for i := 0; i < perCaller; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				reqID := fmt.Sprintf("c%d-r%d", c, i)
				n := c*1000 + i
				var resp addResp
				var err error
				opts := []CallOption{WithRetry(policy), WithRequestID(reqID)}
				if c < 4 {
					err = from.Call(context.Background(), keys[i], "ledger", "add", addReq{Caller: c, N: n}, &resp, opts...)
				} else {
					to := r.owner(keys[i]).Self()
					err = from.CallNode(context.Background(), to, "ledger", "add", addReq{Caller: c, N: n}, &resp, opts...)
				}
				out <- outcome{reqID, n, resp, err}
			}()
		}
	}
	wg.Wait()
	close(out)

	mu.Lock()
	defer mu.Unlock()
	calls := 0
	for o := range out {
		calls++
		if o.err != nil {
			t.Errorf("seed %d: %s: %v", seed, o.id, o.err)
			continue
		}
		if o.resp.ID != o.id || o.resp.Double != 2*o.n {
			t.Errorf("seed %d: %s got the answer %+v, want double %d", seed, o.id, o.resp, 2*o.n)
		}
		if execs[o.id] != 1 {
			t.Errorf("seed %d: %s ran %d times, on %v", seed, o.id, execs[o.id], where[o.id])
		}
	}
	if calls != callers*perCaller || len(execs) != calls {
		t.Errorf("seed %d: %d calls, %d request IDs executed", seed, calls, len(execs))
	}
	var handled, replayed, joined uint64
	for _, n := range r.nodes {
		st := n.ServiceStats().Services["ledger"]
		handled += st.Handled
		replayed += st.Replayed
		joined += st.Joined
	}
	ns := r.net.Stats()
	t.Logf("seed %d: %d calls, %d handler runs; the dedupe window absorbed %d duplicate requests (%d replayed, %d joined a running one); memnet %+v",
		seed, calls, handled, replayed+joined, replayed, joined, ns)
	if handled != uint64(calls) {
		t.Errorf("seed %d: %d handler runs for %d calls", seed, handled, calls)
	}
	if replayed == 0 || joined == 0 {
		t.Errorf("seed %d: duplicates reached the dedupe windows %d times as replays, %d as joins: the test proves too little", seed, replayed, joined)
	}
}

// A disk-heavy service past its limit is refused with Overloaded while a
// cpu-light service on the same node answers exactly as fast as before.
func TestOverloadRefusesOnlyTheResource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 32
		r := newSvcRing(t, seed, 3, time.Millisecond, nil)
		defer r.close()
		r.net.SetLatency(2*time.Millisecond, 2*time.Millisecond) // fixed: latency in virtual time is exact
		server, client := r.nodes[0], r.nodes[1]
		server.SetLimit("disk", service.Limits{MaxInFlight: 2})
		release := make(chan struct{})
		heavy := service.New("disk-heavy").Uses("disk").Method("write", func(c *service.Call) {
			var blk int
			if err := c.Decode(&blk); err != nil {
				c.Fail(err)
				return
			}
			c.Go(func(ctx context.Context) (any, error) {
				select { // the slow disk write, finished when the test says
				case <-release:
					return blk, nil
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}, func(v any, err error) {
				if err != nil {
					c.Fail(err)
					return
				}
				c.Reply(v)
			})
		})
		light := service.New("cpu-light").Uses("cpu").Method("ping", func(c *service.Call) { c.Reply("pong") })
		for _, s := range []*service.Service{heavy, light} {
			if err := server.Handle(s); err != nil {
				t.Fatal(err)
			}
		}
		ctx := context.Background()
		ping := func() time.Duration {
			t.Helper()
			start := time.Now()
			var s string
			if err := client.CallNode(ctx, server.Self(), "cpu-light", "ping", nil, &s, WithRetry(service.NoRetry())); err != nil || s != "pong" {
				t.Fatalf("seed %d: cpu-light: %q, %v", seed, s, err)
			}
			return time.Since(start)
		}
		normal := ping()
		if normal != 4*time.Millisecond {
			t.Fatalf("seed %d: a round trip of two 2ms hops took %v", seed, normal)
		}

		// Saturate the disk: two writes in flight, each waiting for release.
		long := service.RetryPolicy{Attempts: 1, PerAttempt: time.Minute, Backoff: 0, MaxBackoff: 0, Overall: time.Minute}
		held := make(chan error, 2)
		for i := 0; i < 2; i++ {
			go func() {
				var v int
				held <- client.CallNode(ctx, server.Self(), "disk-heavy", "write", 100+i, &v, WithRetry(long))
			}()
		}
		time.Sleep(50 * time.Millisecond)
		if st := server.ServiceStats().Services["disk-heavy"]; st.InFlight != 2 {
			t.Fatalf("seed %d: disk-heavy in flight %d, want 2", seed, st.InFlight)
		}

		const refusals = 5
		for i := 0; i < refusals; i++ {
			start := time.Now()
			err := client.CallNode(ctx, server.Self(), "disk-heavy", "write", i, nil, WithRetry(service.NoRetry()))
			if !errors.Is(err, service.ErrOverloaded) {
				t.Fatalf("seed %d: write %d past the limit: %v", seed, i, err)
			}
			se := serviceError(t, err, service.CodeOverloaded)
			if se.Resource != "disk" || se.RetryAfter() <= 0 {
				t.Fatalf("seed %d: refusal should name disk and a retry-after: %+v", seed, se)
			}
			if el := time.Since(start); el != normal {
				t.Fatalf("seed %d: refusal took %v: it should come at once (%v)", seed, el, normal)
			}
			// Meanwhile the cpu-light service answers in its normal time,
			// routed through the ring too.
			if got := ping(); got != normal {
				t.Fatalf("seed %d: cpu-light took %v during the overload, %v before", seed, got, normal)
			}
			var s string
			if err := client.Call(ctx, server.ID(), "cpu-light", "ping", nil, &s, WithRetry(service.NoRetry())); err != nil {
				t.Fatalf("seed %d: routed cpu-light during overload: %v", seed, err)
			}
		}
		st := server.ServiceStats()
		if st.Refused["disk"] != refusals || st.Services["disk-heavy"].Refused != refusals || st.Refused["cpu"] != 0 || st.Services["cpu-light"].Refused != 0 {
			t.Fatalf("seed %d: refusals counted %+v", seed, st)
		}
		close(release)
		for i := 0; i < 2; i++ {
			if err := <-held; err != nil {
				t.Fatalf("seed %d: a write admitted before the overload failed: %v", seed, err)
			}
		}
		// Capacity is back.
		if err := client.CallNode(ctx, server.Self(), "disk-heavy", "write", 7, nil, WithRetry(service.NoRetry())); err != nil {
			t.Fatalf("seed %d: after release: %v", seed, err)
		}
	})
}

// The two versions of one service in a mixed ring.
type reserveV1 struct {
	SKU string `json:"sku"`
	N   int    `json:"n"`
}

type reservationV1 struct {
	SKU     string `json:"sku"`
	N       int    `json:"n"`
	Version string `json:"version"`
}

// v1.1 adds request and reply fields whose zero values mean "as before",
// and a method "hold".
type reserveV11 struct {
	SKU      string `json:"sku"`
	N        int    `json:"n"`
	Priority int    `json:"priority,omitempty"`
	Note     string `json:"note,omitempty"`
}

type reservationV11 struct {
	SKU     string   `json:"sku"`
	N       int      `json:"n"`
	Version string   `json:"version"`
	ETA     int      `json:"eta_ms,omitempty"`
	Tags    []string `json:"tags,omitempty"`
}

func inventoryV1() *service.Service {
	return service.New("inventory").Method("reserve", func(c *service.Call) {
		var q reserveV1
		if err := c.Decode(&q); err != nil {
			c.Fail(err)
			return
		}
		c.Reply(reservationV1{SKU: q.SKU, N: q.N, Version: "1.0"})
	})
}

func inventoryV11() *service.Service {
	return service.New("inventory").
		Method("reserve", func(c *service.Call) {
			var q reserveV11
			if err := c.Decode(&q); err != nil {
				c.Fail(err)
				return
			}
			eta := 10
			if q.Priority > 0 {
				eta = 1
			}
			c.Reply(reservationV11{SKU: q.SKU, N: q.N, Version: "1.1", ETA: eta, Tags: []string{"new"}})
		}).
		Method("hold", func(c *service.Call) {
			var q reserveV11
			if err := c.Decode(&q); err != nil {
				c.Fail(err)
				return
			}
			c.Reply(reservationV11{SKU: q.SKU, N: q.N, Version: "1.1", Tags: []string{"held"}})
		})
}

// A ring where half the nodes run v1.1 of a service and half v1.0: calls
// work both ways, extra fields are ignored, the old nodes answer the new
// method with unknown_method at once, and a v2 envelope is refused.
func TestMixedVersions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 33
		r := newSvcRing(t, seed, 6, time.Millisecond, nil)
		defer r.close()
		isNew := func(i int) bool { return i%2 == 0 }
		r.handle(func(i int, _ *Node) *service.Service {
			if isNew(i) {
				return inventoryV11()
			}
			return inventoryV1()
		})
		ctx := context.Background()
		for i, from := range r.nodes {
			for j, to := range r.nodes {
				sku := fmt.Sprintf("sku-%d-%d", i, j)
				var err error
				var got reservationV11 // the fields both versions have, and the new ones
				if isNew(i) {
					q := reserveV11{SKU: sku, N: j, Priority: 1, Note: "rush"}
					err = from.CallNode(ctx, to.Self(), "inventory", "reserve", q, &got)
					if err == nil {
						var routed reservationV11
						err = from.Call(ctx, to.ID(), "inventory", "reserve", q, &routed)
						if err == nil && routed.Version != got.Version {
							err = fmt.Errorf("routed call reached version %s, direct %s", routed.Version, got.Version)
						}
					}
				} else {
					var old reservationV1 // an old caller decodes a new reply into its old type
					err = from.Call(ctx, to.ID(), "inventory", "reserve", reserveV1{SKU: sku, N: j}, &old)
					got = reservationV11{SKU: old.SKU, N: old.N, Version: old.Version}
				}
				if err != nil {
					t.Fatalf("seed %d: node %d (new=%v) -> node %d (new=%v): %v", seed, i, isNew(i), j, isNew(j), err)
				}
				wantVer := map[bool]string{true: "1.1", false: "1.0"}[isNew(j)]
				if got.SKU != sku || got.N != j || got.Version != wantVer {
					t.Fatalf("seed %d: node %d -> node %d: got %+v, want %s/%d from v%s", seed, i, j, got, sku, j, wantVer)
				}
				if isNew(i) && isNew(j) && (got.ETA != 1 || len(got.Tags) != 1) {
					t.Fatalf("seed %d: new fields lost between new nodes: %+v", seed, got)
				}
				if isNew(i) && !isNew(j) && (got.ETA != 0 || got.Tags != nil) {
					t.Fatalf("seed %d: an old node's reply has new fields? %+v", seed, got)
				}
			}
		}

		// The new method: new nodes serve it, old nodes say unknown_method
		// at once, not after the deadline.
		newNode, oldNode := r.nodes[0], r.nodes[1]
		for _, to := range r.nodes {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			start := time.Now()
			var got reservationV11
			err := newNode.CallNode(cctx, to.Self(), "inventory", "hold", reserveV11{SKU: "h", N: 1}, &got, WithRetry(service.NoRetry()))
			el := time.Since(start)
			cancel()
			if to.ID() == newNode.ID() || isNew(indexOf(r.nodes, to)) {
				if err != nil || len(got.Tags) != 1 || got.Tags[0] != "held" {
					t.Fatalf("seed %d: hold on a new node: %+v %v", seed, got, err)
				}
				continue
			}
			if !errors.Is(err, service.ErrUnknownMethod) {
				t.Fatalf("seed %d: hold on an old node: want unknown_method, got %v", seed, err)
			}
			if se := serviceError(t, err, service.CodeUnknownMethod); !strings.Contains(se.Message, `"hold"`) || !strings.Contains(se.Message, "[reserve]") {
				t.Fatalf("seed %d: the error should name the method and the ones there are: %q", seed, se.Message)
			}
			if el > 100*time.Millisecond {
				t.Fatalf("seed %d: unknown_method took %v of a 30s deadline", seed, el)
			}
		}

		// Envelopes from a newer node: extra envelope fields are ignored;
		// a new major version is refused with a reason.
		dl := time.Now().Add(10 * time.Second).UnixMilli()
		for _, to := range []*Node{newNode, oldNode} {
			peer := to.Self()
			frame := fmt.Sprintf(`{"v":1,"svc":"inventory","m":"reserve","id":"raw-%s","dl":%d,`+
				`"trace":{"span":"9f2","sampled":true},"prio":3,"route_hint":["a","b"],"p":{"sku":"raw","n":4,"priority":2,"gift_wrap":{"paper":"red"}}}`,
				to.ID().Short(), dl)
			rep, err := rawCall(ctx, oldNode, nil, &peer, []byte(frame))
			if err != nil || rep.Err != nil {
				t.Fatalf("seed %d: envelope with extra fields to %s: %v %v", seed, to.ID().Short(), err, rep.Err)
			}
			var got reservationV11
			if err := json.Unmarshal(rep.Payload, &got); err != nil || got.SKU != "raw" || got.N != 4 || rep.ID != "raw-"+to.ID().Short() {
				t.Fatalf("seed %d: reply %+v %s %v", seed, rep, rep.Payload, err)
			}
			key := to.ID()
			v2 := fmt.Sprintf(`{"v":2,"svc":"inventory","m":"reserve","id":"v2-%s","dl":%d,"p":{"sku":"x"},"sig":"new-in-v2"}`, to.ID().Short(), dl)
			rep, err = rawCall(ctx, newNode, &key, nil, []byte(v2))
			if err != nil {
				t.Fatalf("seed %d: v2 envelope: %v", seed, err)
			}
			if !errors.Is(rep.Err, service.ErrUnsupportedVersion) || !strings.Contains(rep.Err.Message, "newer than this node's 1") || rep.ID != "v2-"+to.ID().Short() {
				t.Fatalf("seed %d: v2 envelope answered %+v", seed, rep.Err)
			}
		}

		// Nothing was dropped or crashed.
		for i, n := range r.nodes {
			st, m := n.ServiceStats(), n.Metrics()
			if st.BadRequest != 0 || m.DeliverDrops != 0 || m.InboxDrops != 0 || st.Services["inventory"].Panics != 0 {
				t.Fatalf("seed %d: node %d: stats %+v metrics %+v", seed, i, st, m)
			}
		}
		if got := r.nodes[0].ServiceStats().Unsupported + r.nodes[1].ServiceStats().Unsupported; got != 2 {
			t.Fatalf("seed %d: unsupported_version counted %d times, want 2", seed, got)
		}
	})
}

func indexOf(nodes []*Node, n *Node) int {
	for i, m := range nodes {
		if m == n {
			return i
		}
	}
	return -1
}

// Bad input gets a clear *service.Error and a counter; the node goes on.
func TestBadServiceInput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 34
		const small = 4096
		maxSender := transport.DefaultMaxFrame - 32<<10
		r := newSvcRing(t, seed, 4, time.Millisecond, nil)
		defer r.close()
		target, sender := r.nodes[0], r.nodes[1]
		// A sender that may send more than the target accepts, and a node
		// configured with a small limit.
		var bigID, smallID id.ID
		bigID[0], smallID[0] = 0x42, 0x43
		mk := func(x id.ID, max int) *Node {
			c := DefaultConfig()
			c.Ring = ring.LocalConfig()
			c.Transport = r.net.Transport(x)
			c.Bootstrap = []transport.Peer{target.Self()}
			c.MaxMessage = max
			n, err := Start(context.Background(), c)
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			return n
		}
		bigSender, smallNode := mk(bigID, maxSender), mk(smallID, small)
		r.nodes = append(r.nodes, bigSender, smallNode)
		time.Sleep(2 * time.Second)

		type order struct {
			SKU string `json:"sku"`
			N   int    `json:"n"`
		}
		r.handle(func(int, *Node) *service.Service {
			return service.New("shop").Method("buy", func(c *service.Call) {
				var o order
				if err := c.Decode(&o); err != nil {
					c.Fail(err)
					return
				}
				c.Reply(o)
			})
		})
		target.ServicesRegistered() // "unknown service" at once, not "not yet"
		ctx := context.Background()
		tp := target.Self()
		good := func(n *Node) {
			t.Helper()
			var o order
			if err := sender.CallNode(ctx, n.Self(), "shop", "buy", order{"ok", 1}, &o, WithRetry(service.NoRetry())); err != nil || o.N != 1 {
				t.Fatalf("seed %d: a good call right after bad input: %+v %v", seed, o, err)
			}
		}
		before := target.ServiceStats()
		cases := []struct {
			name   string
			frame  string
			code   string
			id     string
			msgHas string
			count  func(service.Stats) uint64
		}{
			{"malformed JSON", `{"v":1,"svc":"shop","m":"buy","id":"m1","p":{"sku":`, service.CodeBadRequest, "", "malformed envelope",
				func(s service.Stats) uint64 { return s.BadRequest }},
			{"not JSON at all", "\x00\xffGET / HTTP/1.1\r\n", service.CodeBadRequest, "", "malformed envelope",
				func(s service.Stats) uint64 { return s.BadRequest }},
			{"wrong field type", `{"v":1,"svc":["shop"],"m":"buy","id":"w1"}`, service.CodeBadRequest, "w1", "svc",
				func(s service.Stats) uint64 { return s.BadRequest }},
			{"wrong deadline type", `{"v":1,"svc":"shop","m":"buy","id":"w2","dl":"tomorrow"}`, service.CodeBadRequest, "w2", "dl",
				func(s service.Stats) uint64 { return s.BadRequest }},
			{"two JSON values", `{"v":1,"svc":"shop","m":"buy","id":"t1"}{"v":1,"svc":"shop","m":"buy","id":"t2"}`, service.CodeBadRequest, "t1", "more than one JSON value",
				func(s service.Stats) uint64 { return s.BadRequest }},
			{"missing version", `{"svc":"shop","m":"buy","id":"v0"}`, service.CodeBadRequest, "v0", `"v"`,
				func(s service.Stats) uint64 { return s.BadRequest }},
			{"unknown version", `{"v":7,"svc":"shop","m":"buy","id":"v7"}`, service.CodeUnsupportedVersion, "v7", "envelope version 7 is newer than this node's 1",
				func(s service.Stats) uint64 { return s.Unsupported }},
			{"unknown service", `{"v":1,"svc":"bank","m":"buy","id":"u1"}`, service.CodeUnknownService, "u1", `no service "bank"`,
				func(s service.Stats) uint64 { return s.UnknownService }},
			{"over the default 1 MiB", `{"v":1,"svc":"shop","m":"buy","id":"big","p":"` + strings.Repeat("x", 1<<20) + `"}`,
				service.CodeTooLarge, "big", "exceeds the limit of 1048576", func(s service.Stats) uint64 { return s.TooLarge }},
		}
		for _, tc := range cases {
			from := sender
			if len(tc.frame) > 1<<20 {
				from = bigSender
			}
			pre := tc.count(target.ServiceStats())
			rep, err := rawCall(ctx, from, nil, &tp, []byte(tc.frame))
			if err != nil {
				t.Fatalf("seed %d: %s: no reply: %v", seed, tc.name, err)
			}
			if rep.Err == nil || rep.Err.Code != tc.code || rep.ID != tc.id || !strings.Contains(rep.Err.Message, tc.msgHas) {
				t.Fatalf("seed %d: %s: reply %+v (err %+v), want code %s, id %q, message with %q", seed, tc.name, rep, rep.Err, tc.code, tc.id, tc.msgHas)
			}
			if got := tc.count(target.ServiceStats()); got != pre+1 {
				t.Fatalf("seed %d: %s: counter went %d -> %d", seed, tc.name, pre, got)
			}
			good(target)
		}
		// The same refusals through the ring, routed to the target's key.
		key := target.ID()
		rep, err := rawCall(ctx, sender, &key, nil, []byte(`{"v":1,"svc":"shop","m":"buy","id":"r1","p":[`))
		if err != nil || rep.Err == nil || rep.Err.Code != service.CodeBadRequest {
			t.Fatalf("seed %d: routed malformed envelope: %+v %v", seed, rep, err)
		}

		// A payload of the wrong type is refused by the handler's Decode.
		err = sender.Call(ctx, key, "shop", "buy", map[string]any{"sku": "a", "n": "three"}, nil, WithRetry(service.NoRetry()))
		if se := serviceError(t, err, service.CodeBadRequest); !strings.Contains(se.Message, "shop.buy: bad payload") {
			t.Fatalf("seed %d: payload type error: %v", seed, se)
		}
		// Over the sender's own limit: refused before sending, same error.
		err = sender.Call(ctx, key, "shop", "buy", order{SKU: strings.Repeat("x", 1<<20)}, nil)
		if se := serviceError(t, err, service.CodeTooLarge); !strings.Contains(se.Message, "limit of 1048576") {
			t.Fatalf("seed %d: %v", seed, se)
		}
		// A node configured with a smaller limit refuses what its peers accept.
		pre := smallNode.ServiceStats().TooLarge
		err = bigSender.CallNode(ctx, smallNode.Self(), "shop", "buy", order{SKU: strings.Repeat("x", 2*small)}, nil)
		if se := serviceError(t, err, service.CodeTooLarge); !strings.Contains(se.Message, fmt.Sprintf("limit of %d", small)) {
			t.Fatalf("seed %d: small node: %v", seed, se)
		}
		if got := smallNode.ServiceStats().TooLarge; got != pre+1 {
			t.Fatalf("seed %d: small node counted %d -> %d", seed, pre, got)
		}
		good(smallNode)
		var o order
		if err := bigSender.CallNode(ctx, target.Self(), "shop", "buy", order{SKU: strings.Repeat("x", 2*small)}, &o); err != nil {
			t.Fatalf("seed %d: the default node takes what the small one refused: %v", seed, err)
		}

		after := target.ServiceStats()
		t.Logf("seed %d: target stats before %+v after %+v", seed, before, after)
		if after.Services["shop"].Panics != 0 {
			t.Fatalf("seed %d: %+v", seed, after)
		}
	})
}

// CallNode reaches a known node (itself included), Notify reaches the
// key's owner one way, NotifyNode a known node one way, and a call whose deadline passes while it waits
// behind a slow request is never run.
func TestCallNodeNotifyAndDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 35
		r := newSvcRing(t, seed, 4, time.Millisecond, nil)
		defer r.close()
		var mu sync.Mutex
		notes := map[string][]string{} // node -> notes received
		quickRuns := 0
		gate := make(chan struct{})
		slowStarted := make(chan struct{}, 1)
		r.handle(func(i int, n *Node) *service.Service {
			name := n.ID().Short()
			return service.New("misc").
				Method("who", func(c *service.Call) { c.Reply(name) }).
				Method("note", func(c *service.Call) {
					var s string
					_ = c.Decode(&s)
					mu.Lock()
					notes[name] = append(notes[name], s)
					mu.Unlock()
					c.Reply(nil) // ignored for a one-way message
				}).
				Method("slow", func(c *service.Call) {
					slowStarted <- struct{}{}
					<-gate // blocks this service's loop: the next request queues
					c.Reply("slow done")
				}).
				Method("quick", func(c *service.Call) {
					mu.Lock()
					quickRuns++
					mu.Unlock()
					c.Reply("quick done")
				})
		})
		ctx := context.Background()
		a := r.nodes[0]
		for _, to := range r.nodes {
			var who string
			if err := a.CallNode(ctx, to.Self(), "misc", "who", nil, &who); err != nil || who != to.ID().Short() {
				t.Fatalf("seed %d: CallNode to %s: %q %v", seed, to.ID().Short(), who, err)
			}
		}

		for i := 0; i < 10; i++ {
			var key id.ID
			r.rng.Read(key[:])
			if err := r.nodes[i%len(r.nodes)].Notify(ctx, key, "misc", "note", fmt.Sprint("note-", i)); err != nil {
				t.Fatalf("seed %d: Notify: %v", seed, err)
			}
			time.Sleep(100 * time.Millisecond)
			owner := r.owner(key).ID().Short()
			mu.Lock()
			got := notes[owner]
			total := 0
			for _, ns := range notes {
				total += len(ns)
			}
			mu.Unlock()
			if len(got) == 0 || got[len(got)-1] != fmt.Sprint("note-", i) || total != i+1 {
				t.Fatalf("seed %d: note %d for %s should be at its owner %s once: %v", seed, i, key.Short(), owner, notes)
			}
		}

		// NotifyNode reaches the node named, itself included, once.
		for i, to := range r.nodes {
			note := fmt.Sprint("direct-", i)
			if err := a.NotifyNode(ctx, to.Self(), "misc", "note", note); err != nil {
				t.Fatalf("seed %d: NotifyNode: %v", seed, err)
			}
			time.Sleep(100 * time.Millisecond)
			mu.Lock()
			got := notes[to.ID().Short()]
			mu.Unlock()
			if len(got) == 0 || got[len(got)-1] != note {
				t.Fatalf("seed %d: NotifyNode %q to %s: it has %v", seed, note, to.ID().Short(), got)
			}
		}

		// Deadline propagation: "quick" waits behind "slow" past its
		// caller's deadline, so it is dropped, not run.
		b := r.nodes[1]
		slow := make(chan error, 1)
		go func() {
			var s string
			slow <- a.CallNode(ctx, b.Self(), "misc", "slow", nil, &s,
				WithRetry(service.RetryPolicy{Attempts: 1, PerAttempt: time.Minute, Overall: time.Minute}))
		}()
		<-slowStarted
		qctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		err := a.CallNode(qctx, b.Self(), "misc", "quick", nil, nil, WithRetry(service.NoRetry()))
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("seed %d: queued call: want the deadline, got %v", seed, err)
		}
		time.Sleep(100 * time.Millisecond)
		close(gate)
		if err := <-slow; err != nil {
			t.Fatalf("seed %d: slow call: %v", seed, err)
		}
		time.Sleep(50 * time.Millisecond)
		st := b.ServiceStats()
		mu.Lock()
		runs := quickRuns
		mu.Unlock()
		if runs != 0 || st.Services["misc"].Expired != 1 || st.Expired != 1 {
			t.Fatalf("seed %d: expired call ran %d times; stats %+v", seed, runs, st)
		}

		// A call that arrives after its deadline is not started either.
		lctx, cancel := context.WithTimeout(ctx, 500*time.Microsecond) // shorter than one hop
		err = a.CallNode(lctx, b.Self(), "misc", "quick", nil, nil, WithRetry(service.NoRetry()))
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("seed %d: late call: %v", seed, err)
		}
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		runs = quickRuns
		mu.Unlock()
		if runs != 0 || b.ServiceStats().Expired != 2 {
			t.Fatalf("seed %d: late call ran %d times; stats %+v", seed, runs, b.ServiceStats())
		}
		if err := a.CallNode(ctx, b.Self(), "misc", "quick", nil, nil); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	})
}

// TestServiceRegisteredLate: a node that owns a key before its service is
// registered (a restart joins the ring first) answers "unavailable", which
// the caller's retry policy waits out; once the node declares its services
// registered, a service it lacks is "unknown service" at once.
func TestServiceRegisteredLate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seed = 41
		r := newSvcRing(t, seed, 3, time.Millisecond, nil)
		defer r.close()
		key := id.HashString("late-service")
		owner := r.owner(key)
		var caller *Node
		for _, n := range r.nodes {
			if n != owner {
				caller = n
				break
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done := make(chan error, 1)
		var got string
		go func() {
			done <- caller.Call(ctx, key, "late", "who", nil, &got, WithRetry(service.RetryPolicy{Attempts: 20, PerAttempt: time.Second, Backoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Overall: 10 * time.Second}))
		}()
		time.Sleep(500 * time.Millisecond) // virtual: the call has been refused a few times
		synctest.Wait()
		if before := owner.ServiceStats().UnknownService; before == 0 {
			t.Fatalf("seed %d: the owner was never asked for the missing service", seed)
		}
		select {
		case err := <-done:
			t.Fatalf("seed %d: the call ended before the service existed: %v", seed, err)
		default:
		}
		for _, n := range r.nodes {
			if err := n.Handle(service.New("late").Method("who", func(c *service.Call) { c.Reply("here") })); err != nil {
				t.Fatal(err)
			}
			n.ServicesRegistered()
		}
		if err := <-done; err != nil || got != "here" {
			t.Fatalf("seed %d: call to a service registered late: %q %v", seed, got, err)
		}
		err := caller.Call(ctx, key, "absent", "who", nil, nil, WithRetry(service.RetryPolicy{Attempts: 5, PerAttempt: time.Second, Backoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Overall: 5 * time.Second}))
		serviceError(t, err, service.CodeUnknownService)
	})
}
