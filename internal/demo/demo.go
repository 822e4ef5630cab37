// Package demo is what `shoal demo` runs: a ring of real libp2p nodes on
// loopback in one process, exercised step by step with the results checked.
// It lives in a package so that `go test` runs exactly what users see.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/internal/effect"
	"github.com/shoal-p2p/shoal/kv"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/pubsub"
	"github.com/shoal-p2p/shoal/resource"
	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/taskq"
	"github.com/shoal-p2p/shoal/transport"
	"github.com/shoal-p2p/shoal/transport/p2p"
)

// Options tune the demo.
type Options struct {
	Nodes int      // ring size; default 8
	Keys  []string // sample keys; default a few names
	Out   io.Writer
}

// member is one node of the demo ring.
type member struct {
	n      *node.Node
	tr     *p2p.Transport
	ps     *pubsub.PubSub
	kv     *kv.KV
	tq     *taskq.Queues
	res    *resource.Manager
	sink   *effect.Sink
	killed bool
}

// answer is what every node replies to a demo request.
type answer struct {
	Node string `json:"node"`
	Hops int    `json:"hops"`
}

type app struct{ self id.ID }

func (a app) Deliver(m *node.Message) {
	b, _ := json.Marshal(answer{Node: a.self.String(), Hops: m.Hops})
	m.Reply(b)
}

func (app) Forward(id.ID, []byte, id.ID) bool { return true }

// Ring is a running demo ring.
type Ring struct {
	members []*member
	out     io.Writer
}

// Start brings up n nodes on 127.0.0.1: the first starts the ring, the
// others join through it.
func Start(ctx context.Context, n int, out io.Writer) (*Ring, error) {
	r := &Ring{out: out}
	var boot []transport.Peer
	for i := 0; i < n; i++ {
		tcfg := p2p.DefaultConfig()
		tcfg.Listen = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
		tr, err := p2p.New(ctx, tcfg)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("start libp2p host %d: %w", i+1, err)
		}
		cfg := node.DefaultConfig()
		cfg.Ring = ring.LocalConfig()
		cfg.Transport = tr
		cfg.Bootstrap = boot
		cfg.App = app{self: tr.Self().ID}
		nd, err := node.Start(ctx, cfg)
		if err != nil {
			tr.Close()
			r.Close()
			return nil, fmt.Errorf("start node %d: %w", i+1, err)
		}
		ps, err := pubsub.New(nd, pubsub.LocalConfig())
		if err != nil {
			nd.Close()
			r.Close()
			return nil, fmt.Errorf("start pubsub on node %d: %w", i+1, err)
		}
		k, err := kv.New(nd, kvConfig(i == 0))
		if err != nil {
			ps.Close()
			nd.Close()
			r.Close()
			return nil, fmt.Errorf("start the key-value store on node %d: %w", i+1, err)
		}
		tq, err := taskq.New(nd, k, taskq.Config{})
		if err != nil {
			k.Close()
			ps.Close()
			nd.Close()
			r.Close()
			return nil, fmt.Errorf("start the task queues on node %d: %w", i+1, err)
		}
		res, err := resource.New(k, resourceConfig(nd.ID().String()))
		if err != nil {
			tq.Close()
			k.Close()
			ps.Close()
			nd.Close()
			r.Close()
			return nil, fmt.Errorf("start shared resources on node %d: %w", i+1, err)
		}
		r.members = append(r.members, &member{n: nd, tr: tr, ps: ps, kv: k, tq: tq, res: res, sink: effect.New(k)})
		if i == 0 {
			boot = []transport.Peer{nd.Self()}
		}
		if i < n-1 {
			// The store of a node that joins takes over the ranges it now
			// replicates from their previous replicas; nodes joining
			// faster than that can leave ranges no one may serve (a kv
			// bug, see kv/joins_test.go), so joins are spaced.
			select {
			case <-ctx.Done():
				r.Close()
				return nil, ctx.Err()
			case <-time.After(joinGap):
			}
		}
	}
	return r, nil
}

// Close stops every node.
func (r *Ring) Close() {
	for _, m := range r.members {
		m.res.Close()
		m.tq.Close()
		m.kv.Close()
		m.ps.Close()
		m.n.Close()
	}
}

func (r *Ring) live() []*member {
	var out []*member
	for _, m := range r.members {
		if !m.killed {
			out = append(out, m)
		}
	}
	return out
}

// Owner is the live node closest to key, from the demo's global view.
func (r *Ring) Owner(key id.ID) *member {
	live := r.live()
	ids := make([]id.ID, len(live))
	for i, m := range live {
		ids[i] = m.n.ID()
	}
	return live[id.Closest(key, ids)]
}

// WaitConverged waits until every live node's leaf set holds exactly the
// other live nodes (the demo ring is smaller than a leaf set).
func (r *Ring) WaitConverged(ctx context.Context) error {
	for {
		ok := true
		live := r.live()
		for _, m := range live {
			st, err := m.n.Status(ctx)
			if err != nil {
				return err
			}
			seen := map[id.ID]bool{}
			for _, p := range append(st.Left, st.Right...) {
				seen[p.ID] = true
			}
			if !st.Ready || !st.Sure || len(seen) != len(live)-1 {
				ok = false
				break
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ring did not converge: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// WaitStores waits until the ring has converged on its live nodes and every
// live node's store has copied every range it replicates (kv.Synchronised),
// so that the next kill leaves every range a majority of synchronised
// replicas. Killing a second replica of a range before the range's new
// replicas have copied it can leave the range with none: it stays
// unavailable (correctly: its data may be gone). It returns how long it
// waited, or an error naming the nodes still copying.
func (r *Ring) WaitStores(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := r.WaitConverged(wctx); err != nil {
		return time.Since(start), err
	}
	for {
		var behind []string
		for _, m := range r.live() {
			if !m.kv.Synchronised() {
				behind = append(behind, m.n.ID().Short())
			}
		}
		if len(behind) == 0 {
			return time.Since(start), nil
		}
		select {
		case <-wctx.Done():
			return time.Since(start), fmt.Errorf("the stores of %s are still copying ranges after %.0fs", strings.Join(behind, ", "), time.Since(start).Seconds())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitStores is WaitStores for a step: it prints how long the stores took
// after what happened ("the two crashes"), or records a failure.
func (r *Ring) waitStores(ctx context.Context, out io.Writer, fail func(string, ...any), after string) {
	took, err := r.WaitStores(ctx)
	if err != nil {
		fail("%s: %v", after, err)
		return
	}
	fmt.Fprintf(out, "   %s, every store has copied the ranges it now replicates (%.1fs)\n", after, took.Seconds())
}

// Ask sends a request for key from a node and returns who answered.
func (r *Ring) Ask(ctx context.Context, from *member, key id.ID) (answer, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	b, err := from.n.Request(cctx, key, []byte("who owns this key?"))
	if err != nil {
		return answer{}, err
	}
	var a answer
	if err := json.Unmarshal(b, &a); err != nil {
		return answer{}, fmt.Errorf("bad answer %q: %w", b, err)
	}
	return a, nil
}

// Kill crashes a node: its transport closes at once, without telling anyone.
func (r *Ring) Kill(m *member) {
	m.killed = true
	m.tr.Close()
}

// Run is `shoal demo`: it prints what it does and returns an error if any
// check failed.
func Run(ctx context.Context, opts Options) error {
	if opts.Nodes == 0 {
		opts.Nodes = 8
	}
	if len(opts.Keys) == 0 {
		opts.Keys = []string{"alice", "bob", "carol", "dave", "erin", "frank"}
	}
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	var failures []string
	fail := func(format string, a ...any) {
		msg := fmt.Sprintf(format, a...)
		failures = append(failures, msg)
		fmt.Fprintf(out, "  FAILED: %s\n", msg)
	}
	t0 := time.Now()
	fmt.Fprintf(out, "Shoal demo: a ring of %d nodes over libp2p (TCP and QUIC, encrypted) on 127.0.0.1\n\n", opts.Nodes)
	fmt.Fprintf(out, "1. Starting %d nodes; node 1 starts the ring, the others join through it…\n", opts.Nodes)
	r, err := Start(ctx, opts.Nodes, out)
	if err != nil {
		return err
	}
	defer r.Close()
	ids := make([]string, 0, opts.Nodes)
	for i, m := range r.members {
		ids = append(ids, fmt.Sprintf("     node %d  %s  %s", i+1, m.n.ID(), m.n.Self().Addrs[0]))
	}
	fmt.Fprintln(out, strings.Join(ids, "\n"))
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	err = r.WaitConverged(cctx)
	cancel()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "   every node knows all %d others and holds leases from both neighbours (%.1fs)\n", opts.Nodes-1, time.Since(t0).Seconds())
	r.waitStores(ctx, out, fail, "after the joins")
	fmt.Fprintln(out)

	fmt.Fprintln(out, "2. Routing a request to each sample key from a different node; the owner answers:")
	type row struct {
		key   string
		owner *member
	}
	var rows []row
	for i, k := range opts.Keys {
		key := id.HashString(k)
		from := r.members[i%len(r.members)]
		want := r.Owner(key)
		a, err := r.Ask(ctx, from, key)
		switch {
		case err != nil:
			fail("key %q: %v", k, err)
		case a.Node != want.n.ID().String():
			fail("key %q answered by %s, but its owner is %s", k, a.Node[:8], want.n.ID().Short())
		default:
			fmt.Fprintf(out, "   %-6s → key %s  from node %s  answered by owner %s  (%s)  ok\n", k, key.Short(), from.n.ID().Short(), want.n.ID().Short(), plural(a.Hops, "hop"))
		}
		rows = append(rows, row{k, want})
	}
	fmt.Fprintln(out)

	victimKey := opts.Keys[0]
	key := id.HashString(victimKey)
	victim := r.Owner(key)
	fmt.Fprintf(out, "3. Killing node %s, the owner of %q, without warning…\n", victim.n.ID().Short(), victimKey)
	r.Kill(victim)
	heir := r.Owner(key)
	fmt.Fprintf(out, "   its neighbour %s is now the closest live node to %q\n", heir.n.ID().Short(), victimKey)
	start := time.Now()
	var last error
	took := time.Duration(0)
	asker := r.live()[0]
	for time.Since(start) < 20*time.Second {
		a, err := r.Ask(ctx, asker, key)
		if err == nil && a.Node == heir.n.ID().String() {
			took = time.Since(start)
			break
		}
		if err == nil {
			err = fmt.Errorf("answered by %s", a.Node[:8])
		}
		last = err
	}
	if took == 0 {
		fail("after killing %s, %q was not served by its neighbour within 20s (last: %v)", victim.n.ID().Short(), victimKey, last)
	} else {
		fmt.Fprintf(out, "   %q is answered by %s after %.2fs (failed sends and probes expose a dead peer; silence alone takes the 'local' profile's 1.2s keep-alive timeout)\n\n", victimKey, heir.n.ID().Short(), took.Seconds())
	}

	fmt.Fprintln(out, "4. Every other key still reaches its owner:")
	ok := 0
	for _, rw := range rows[1:] {
		k := id.HashString(rw.key)
		want := r.Owner(k)
		a, err := r.Ask(ctx, asker, k)
		if err != nil || a.Node != want.n.ID().String() {
			fail("key %q after the crash: %v (answer %+v, owner %s)", rw.key, err, a, want.n.ID().Short())
			continue
		}
		ok++
	}
	fmt.Fprintf(out, "   %d of %d keys answered by their owners\n", ok, len(rows)-1)
	r.waitStores(ctx, out, fail, "after the crash")
	fmt.Fprintln(out)

	topicRepair := r.topicStep(ctx, out, fail)

	kvr, kvOK := r.kvStep(ctx, out, opts.Keys, fail)

	qr, qOK := r.queueStep(ctx, out, fail)

	pr, pOK := r.poolStep(ctx, out, fail)

	topicNote := ""
	if topicRepair > 0 {
		topicNote = fmt.Sprintf(", topic root crash repaired in %.2fs", topicRepair.Seconds())
	}
	if kvOK {
		topicNote += fmt.Sprintf(", counter = %d after %d acknowledged increments (%d failed) across its owner's crash", kvr.final, kvr.acked, kvr.unknown)
	}
	if qOK {
		topicNote += fmt.Sprintf(", %d queued tasks done once in effect across a worker's crash (%d raw duplicates)", qr.tasks, qr.duplicates)
	}
	if pOK {
		topicNote += fmt.Sprintf(", a dead node's address re-leased after %.1fs with no two holders", pr.takeover.Seconds())
	}
	sort.Strings(failures)
	fmt.Fprintf(out, "Summary: %d nodes, %d keys routed to their owners, owner crash taken over in %.2fs%s, %d problems, %.1fs in all.\n",
		opts.Nodes, len(opts.Keys), took.Seconds(), topicNote, len(failures), time.Since(t0).Seconds())
	if len(failures) > 0 {
		return errors.New("demo: " + strings.Join(failures, "; "))
	}
	return nil
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
