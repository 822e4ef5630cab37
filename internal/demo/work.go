package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/shoal-p2p/shoal/internal/effect"
	"github.com/shoal-p2p/shoal/kv"
	"github.com/shoal-p2p/shoal/resource"
	"github.com/shoal-p2p/shoal/taskq"
)

const (
	demoQueue = "demo-jobs"
	demoTasks = 120
	demoPool  = "demo-ips"
)

// resourceConfig is the shared-resource configuration on demo nodes: short
// leases, so a dead holder's addresses come back within seconds.
func resourceConfig(holder string) resource.Config {
	c := resource.DefaultConfig()
	c.Holder = holder
	c.TTL = 2 * time.Second
	c.DriftMargin = 300 * time.Millisecond
	return c
}

// queueResult is what the queue step reports in the summary.
type queueResult struct {
	tasks, duplicates int
	took              time.Duration
}

// queueStep is step 7: a work queue spread over the ring. Workers on every
// node take tasks; one worker is killed while it runs a task; every task
// must end done with its effect applied exactly once.
func (r *Ring) queueStep(ctx context.Context, out io.Writer, fail func(string, ...any)) (queueResult, bool) {
	var res queueResult
	live := r.live()
	if len(live) < 4 {
		fmt.Fprintf(out, "7. Task queue: skipped, too few live nodes left.\n\n")
		return res, false
	}
	owner := r.Owner(kv.KeyID("{q/" + demoQueue + "}"))
	fmt.Fprintf(out, "7. Task queue %q (its tasks live on its owner %s and 2 replicas; workers on all %d live nodes):\n", demoQueue, owner.n.ID().Short(), len(live))
	r.waitStores(ctx, out, fail, "after the counter owner's crash")
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	qc := taskq.QueueConfig{Visibility: 1500 * time.Millisecond, MaxAttempts: 5, Backoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	if err := createRetrying(cctx, live[0].tq, qc); err != nil {
		fail("create queue %q: %v", demoQueue, err)
		return res, false
	}

	// The victim: the first worker other than the queue's owner to start a
	// task once a third of the tasks are done; it is killed while it runs it.
	type started struct {
		m    *member
		task string
	}
	var (
		completed atomic.Int64
		chosen    atomic.Bool
		victimCh  = make(chan started, 1)
		perNode   sync.Map // node short ID → *atomic.Int64
	)
	work := func(m *member) func(ctx context.Context, t taskq.Task) error {
		return func(ctx context.Context, t taskq.Task) error {
			c, _ := perNode.LoadOrStore(m.n.ID().Short(), new(atomic.Int64))
			c.(*atomic.Int64).Add(1)
			d := time.Duration(10+rand.IntN(30)) * time.Millisecond
			// The victim is chosen by the worker itself, so no task can
			// slip past between the count reaching a third and the choice.
			if m != owner && completed.Load() >= demoTasks/3 && chosen.CompareAndSwap(false, true) {
				victimCh <- started{m, t.ID}
				d = 10 * time.Second // killed long before this ends
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d):
			}
			return nil
		}
	}
	start := time.Now()
	ids := make([]string, demoTasks)
	ectx, ecancel := context.WithTimeout(ctx, 60*time.Second)
	defer ecancel()
	var enqErr atomic.Value
	var ewg sync.WaitGroup
	for p := range 8 {
		ewg.Go(func() {
			for i := p; i < demoTasks; i += 8 {
				from := live[i%len(live)]
				id, err := from.tq.Enqueue(ectx, demoQueue, fmt.Appendf(nil, "job %d", i), taskq.IdempotencyKey(fmt.Sprintf("job-%d", i)))
				if err != nil {
					enqErr.CompareAndSwap(nil, fmt.Errorf("enqueue job %d from %s: %w", i, from.n.ID().Short(), err))
					return
				}
				ids[i] = id
			}
		})
	}
	ewg.Wait()
	if err, _ := enqErr.Load().(error); err != nil {
		fail("%v", err)
		return res, false
	}
	again, err := live[1].tq.Enqueue(ectx, demoQueue, []byte("job 0"), taskq.IdempotencyKey("job-0"))
	switch {
	case err != nil:
		fail("enqueue job 0 again: %v", err)
	case again != ids[0]:
		fail("enqueue with a used idempotency key made a second task %s (first %s)", again, ids[0])
	default:
		fmt.Fprintf(out, "   enqueued %d tasks from all nodes with idempotency keys; enqueueing job-0 again returned its first ID %s\n", demoTasks, short(ids[0]))
	}

	// Workers start once every task is queued: started earlier, they keep
	// pace with a slow enqueue and may finish the tasks before a worker
	// other than the owner's can be picked as the victim.
	var workers []*taskq.Worker
	for _, m := range live {
		h := m.sink.Handler(work(m))
		w, err := m.tq.Work(demoQueue, func(ctx context.Context, t taskq.Task) error {
			err := h(ctx, t)
			if err == nil {
				completed.Add(1)
			}
			return err
		}, taskq.Concurrency(3))
		if err != nil {
			fail("start a worker on %s: %v", m.n.ID().Short(), err)
			return res, false
		}
		workers = append(workers, w)
	}
	defer func() {
		for _, w := range workers {
			w.Stop()
		}
	}()

	vctx, vcancel := context.WithTimeout(ctx, 30*time.Second)
	defer vcancel()
	var v started
	select {
	case v = <-victimCh:
	case <-vctx.Done():
		fail("no worker besides the queue's owner started a task after the first %d were done, within 30s (%d done; runs per node: %s)", demoTasks/3, completed.Load(), runsPerNode(&perNode))
		return res, false
	}
	killedTask := v.task
	fmt.Fprintf(out, "   after %d tasks: killing node %s while its worker runs task %s…\n", completed.Load(), v.m.n.ID().Short(), short(killedTask))
	r.Kill(v.m)

	// Wait until the queue reports every task done.
	var st taskq.Stats
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	reader := r.live()[0]
	for {
		st, err = reader.tq.Stats(wctx, demoQueue)
		if err == nil && st.Done >= demoTasks {
			break
		}
		if wctx.Err() != nil {
			fail("the queue did not finish: %+v (last error %v)", st, err)
			return res, false
		}
		time.Sleep(100 * time.Millisecond)
	}
	res.took = time.Since(start)
	res.tasks = st.Done

	// Every task's effect is recorded exactly once; count raw duplicates.
	missing := 0
	for _, id := range ids {
		rec, _, ok, err := effect.Read(wctx, reader.kv, demoQueue, id)
		switch {
		case err != nil:
			fail("reading the effect of %s: %v", id, err)
		case !ok:
			missing++
		default:
			res.duplicates += rec.Runs - 1
			if id == killedTask {
				fmt.Fprintf(out, "   task %s, whose worker was killed, was delivered again after its %s lease ran out; its effect was applied at delivery %d\n",
					short(id), qc.Visibility, rec.First)
			}
		}
	}
	fmt.Fprintf(out, "   runs per node: %s\n", runsPerNode(&perNode))
	if missing > 0 {
		fail("%d tasks have no effect recorded", missing)
		return res, false
	}
	fmt.Fprintf(out, "   all %d tasks done in %.1fs, each effect applied exactly once (create-only writes keyed by task ID); %d raw duplicate execution(s) absorbed  ok\n\n",
		demoTasks, res.took.Seconds(), res.duplicates)
	return res, true
}

// runsPerNode formats how many task runs each node started.
func runsPerNode(perNode *sync.Map) string {
	var spread []string
	perNode.Range(func(k, v any) bool {
		spread = append(spread, fmt.Sprintf("%s:%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	sort.Strings(spread)
	return strings.Join(spread, " ")
}

// createRetrying creates the queue, retrying while the ring settles.
func createRetrying(ctx context.Context, q *taskq.Queues, qc taskq.QueueConfig) error {
	for {
		err := q.Create(ctx, demoQueue, qc)
		if err == nil || ctx.Err() != nil || !errors.Is(err, taskq.ErrUnavailable) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// grant is one holding of an address, as its holder saw it.
type grant struct {
	name, holder string
	token        uint64
	from, to     time.Time
}

// poolResult is what the pool step reports in the summary.
type poolResult struct {
	takeover time.Duration
	refused  int
}

// poolStep is step 8: an IP pool shared by the nodes. Each node holds one
// address and renews it; one holder is killed; another node takes its
// address only after the lease expires, with a higher fencing token; a late
// action with the old token is refused; no address ever has two holders.
func (r *Ring) poolStep(ctx context.Context, out io.Writer, fail func(string, ...any)) (poolResult, bool) {
	var res poolResult
	live := r.live()
	if len(live) < 3 {
		fmt.Fprintf(out, "8. Shared resources: skipped, too few live nodes left.\n\n")
		return res, false
	}
	names := make([]string, len(live))
	for i := range names {
		names[i] = fmt.Sprintf("10.0.0.%d", i+1)
	}
	fmt.Fprintf(out, "8. Shared resources: pool %q of %d addresses, each held by exactly one node at a time (leases of %s, renewed every %s):\n",
		demoPool, len(names), live[0].res.Config().TTL, (live[0].res.Config().TTL / 3).Round(time.Millisecond))
	r.waitStores(ctx, out, fail, "after the worker's crash")
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := live[0].res.DefinePool(cctx, demoPool, names); err != nil {
		fail("define pool: %v", err)
		return res, false
	}

	guard := resource.NewGuard() // the "router" that acts on addresses
	var (
		mu     sync.Mutex
		grants []*grant
	)
	record := func(l *resource.Lease) *grant {
		g := &grant{name: l.Name, holder: l.Holder, token: l.Token, from: time.Now(), to: l.Until()}
		mu.Lock()
		grants = append(grants, g)
		mu.Unlock()
		return g
	}
	hold := func(m *member, l *resource.Lease, g *grant) {
		// Act on the address while the lease is valid; stop when lost.
		lost := m.res.KeepAlive(cctx, l)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-lost:
				return
			case <-cctx.Done():
				return
			case <-tick.C:
			}
			now := time.Now()
			if !l.Valid(now) {
				continue
			}
			if guard.Check(l.Pool, l.Name, l.Token) == nil {
				mu.Lock()
				if u := l.Until(); u.After(g.to) {
					g.to = u
				}
				mu.Unlock()
			}
		}
	}
	leases := map[*member]*resource.Lease{}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, m := range live {
		l, err := m.res.Acquire(cctx, demoPool)
		if err != nil {
			fail("node %s acquiring an address: %v", m.n.ID().Short(), err)
			return res, false
		}
		leases[m] = l
		g := record(l)
		wg.Add(1)
		go func() { defer wg.Done(); hold(m, l, g) }()
	}
	r.printPool(cctx, out, live[0])

	// Kill a holder that is not the last node; another node wants its
	// address and tries until the lease has expired.
	victim, taker := live[1], live[2]
	vl := leases[victim]
	fmt.Fprintf(out, "   killing node %s, holder of %s (token %d); node %s asks for that address until it is free…\n",
		victim.n.ID().Short(), vl.Name, vl.Token, taker.n.ID().Short())
	killed := time.Now()
	r.Kill(victim)
	var tl *resource.Lease
	held := 0
	for cctx.Err() == nil {
		l, err := taker.res.AcquireName(cctx, demoPool, vl.Name, resource.As("failover"))
		if err == nil {
			tl = l
			break
		}
		if errors.Is(err, resource.ErrHeld) {
			held++
		}
		time.Sleep(100 * time.Millisecond)
	}
	if tl == nil {
		fail("node %s never got %s after its holder died", taker.n.ID().Short(), vl.Name)
		return res, false
	}
	res.takeover = time.Since(killed)
	g := record(tl)
	wg.Add(1)
	go func() { defer wg.Done(); hold(taker, tl, g) }()
	fmt.Fprintf(out, "   refused %d time(s) while the old lease could still be valid; taken %.1fs after the kill with token %d (> %d)\n",
		held, res.takeover.Seconds(), tl.Token, vl.Token)
	if tl.Token <= vl.Token {
		fail("the new token %d does not exceed the old %d", tl.Token, vl.Token)
	}
	// The new holder acts on the address at once (the router learns its
	// token); then the dead holder's late action (say, a delayed packet) carries its
	// old token: the fencing check refuses it.
	if err := guard.Check(demoPool, tl.Name, tl.Token); err != nil {
		fail("the guard refused the new holder's token %d: %v", tl.Token, err)
	}
	if err := guard.Check(demoPool, vl.Name, vl.Token); err == nil {
		fail("the guard accepted an action with the superseded token %d", vl.Token)
	} else {
		res.refused++
		fmt.Fprintf(out, "   a late action from the dead holder with token %d is refused by the fencing check: %v\n", vl.Token, err)
	}
	r.printPool(cctx, out, taker)

	// No address ever had two holders whose leases were valid at once.
	mu.Lock()
	defer mu.Unlock()
	byName := map[string][]*grant{}
	for _, g := range grants {
		byName[g.name] = append(byName[g.name], g)
	}
	overlaps := 0
	for _, gs := range byName {
		sort.Slice(gs, func(i, j int) bool { return gs[i].from.Before(gs[j].from) })
		for i := 1; i < len(gs); i++ {
			if gs[i].token <= gs[i-1].token || gs[i].from.Before(gs[i-1].to) {
				overlaps++
				fail("%s: %s (token %d, valid to %s) and %s (token %d, from %s) overlap", gs[i].name,
					short(gs[i-1].holder), gs[i-1].token, gs[i-1].to.Format("15:04:05.000"), short(gs[i].holder), gs[i].token, gs[i].from.Format("15:04:05.000"))
			}
		}
	}
	if overlaps == 0 {
		fmt.Fprintf(out, "   %d grants of %d addresses: no address ever had two holders with valid leases, tokens only grew  ok\n\n", len(grants), len(names))
	}
	return res, overlaps == 0
}

// printPool prints `shoal resources POOL` as seen from m.
func (r *Ring) printPool(ctx context.Context, out io.Writer, m *member) {
	sts, err := m.res.List(ctx, demoPool)
	if err != nil {
		fmt.Fprintf(out, "   (listing the pool failed: %v)\n", err)
		return
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "     ADDRESS\tSTATE\tHOLDER\tTOKEN\tEXPIRES IN")
	now := time.Now()
	for _, s := range sts {
		exp := "-"
		if !s.Expires.IsZero() && s.State != resource.StateFree {
			exp = s.Expires.Sub(now).Round(10 * time.Millisecond).String()
		}
		h := "-"
		if s.Holder != "" {
			h = short(s.Holder)
		}
		fmt.Fprintf(tw, "     %s\t%s\t%s\t%d\t%s\n", s.Name, s.State, h, s.Token, exp)
	}
	tw.Flush()
}

// short abbreviates IDs (40 hex digits and longer) for the demo's lines.
func short(s string) string {
	if len(s) > 12 {
		if i := strings.IndexByte(s, '/'); i >= 0 && i > 8 {
			return s[:8] + s[i:]
		}
		return s[:12]
	}
	return s
}
