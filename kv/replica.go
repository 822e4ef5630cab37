package kv

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/service"
	"github.com/shoal-p2p/shoal/transport"
)

// replica is the store's state on one node. Everything here runs on the kv
// service's loop, one message at a time; disk writes and network rounds run
// through Call.Go and continue on the loop.
type replica struct {
	k    *KV
	self id.ID

	recs    map[string]*Record
	leaders map[string]*leader

	lay      *layout
	layGen   uint64
	init     arcSet // ranges synchronised since this process started
	restored arcSet // ranges synchronised before the last restart (a sync source, not an acceptor)
	// prior are ranges this node had synchronised and still replicates,
	// but under a replica set that has since changed: a sync source, not
	// an acceptor, until a sync round under the new set (layout).
	prior arcSet
	// departed are ranges this node stopped replicating (the ring changed):
	// for DepartGrace they remain a sync source, so the nodes that took them
	// over can copy them; they never make this node an acceptor again.
	departed   arcSet
	departedAt time.Time
	// hist is the replica sets this node served under and has not yet read
	// back from a majority of their members (hist.go); persisted.
	hist     cfgHist
	trimAt   time.Time     // next sync round for trimming the history
	trimWait time.Duration // its backoff
	syncing  bool          // a sync round is running
	lastFull time.Time
	maxSeen  int // largest ring seen, capped at r (persisted)
	stuck    int // consecutive sync rounds that left a range unsynchronised

	grants  map[string]grant // read leases this acceptor gave (lease.go)
	started time.Time
	// inc is this incarnation of the store (drawn at start, never 0): it
	// goes with each accept and confirm, so that grants and releases name
	// it (lease.go).
	inc uint64
	// released: the store is leaving; it has given its leases back and
	// trusts none again, and answers no operation (handleLeave).
	released bool
	// lastRound is when this node last started an accept or confirm round
	// (each may win it grants): a store that leaves longer than a lease
	// after it has none to give back.
	lastRound time.Time

	refused      map[string]opResp // answers to refused conditional writes, by request ID
	refusedOrder []string          // their IDs, oldest first

	suspect map[id.ID]time.Time // replicas that lately missed a vote they were relied on for

	commitMu sync.Mutex
	commitQ  map[id.ID]*commitBatch // commit notices waiting to go, by replica
}

// commitBatch is the commit notices for one replica sent together.
type commitBatch struct {
	to    transport.Peer
	items []commitItem
}

// commitItem says that a key's state of this ballot and version is
// committed (on a majority).
type commitItem struct {
	Key     string `json:"k"`
	Ballot  Ballot `json:"b"`
	Version uint64 `json:"v"`
}

type commitsReq struct {
	Items []commitItem `json:"items"`
}

// commitDelay is how long a commit notice waits for others to the same
// replica. The flag is informational (a new leader re-accepts whatever it
// finds; kv.Local reports it), so it may lag: batching takes the notices,
// a quarter of a Put's messages, off the network almost entirely.
const commitDelay = 200 * time.Millisecond

// leader is this node's state as owner of one key.
type leader struct {
	key    string
	ballot Ballot // zero: no promises held
	maxObs uint64 // highest round seen from anyone
	state  State  // latest state a majority holds
	lease  lease  // while valid, reads need no round (lease.go)
	busy   bool
	queue  []*pendingOp
}

type pendingOp struct {
	c   *service.Call
	req opReq
}

func newReplica(k *KV) (*replica, error) {
	r := &replica{k: k, self: k.n.ID(), recs: make(map[string]*Record), leaders: make(map[string]*leader),
		grants: make(map[string]grant), started: time.Now(), inc: rand.Uint64() | 1, refused: make(map[string]opResp), commitQ: make(map[id.ID]*commitBatch), suspect: make(map[id.ID]time.Time)}
	recs, meta, err := k.cfg.Store.Load()
	if err != nil {
		return nil, err
	}
	for i := range recs {
		rec := recs[i]
		r.recs[rec.Key] = &rec
	}
	r.restored.s = append([]span(nil), meta.Init...)
	r.restored.normalize()
	r.maxSeen = meta.MaxSeen
	r.hist = newHist(meta.Hist)
	if r.maxSeen < 1 {
		r.maxSeen = 1
	}
	if k.cfg.Genesis && len(recs) == 0 && r.restored.empty() {
		// The first node of a new ring holds every range, all empty.
		r.init.add(arc{From: r.self, To: r.self})
		if err := k.cfg.Store.PutMeta(r.meta()); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (r *replica) service() *service.Service {
	// No dedupe window: client writes are made idempotent by the request IDs
	// kept in each key's state (durable and replicated), and the replica
	// methods are idempotent themselves. No admission resource: a leader
	// waits on acceptor calls to itself, which must not be refused.
	return service.New(ServiceName).
		QueueLen(1<<14).
		MaxRequest(2<<20). // a 1 MiB value, base64-encoded, in an envelope
		Method("op", r.handleOp).
		Method("placement", r.handlePlacement).
		Method("local", r.handleLocal).
		Method("prepare", r.handlePrepare).
		Method("accept", r.handleAccept).
		Method("confirm", r.handleConfirm).
		Method("commit", r.handleCommit).
		Method("commits", r.handleCommits).
		Method("sync", r.handleSync).
		Method("tick", r.handleTick).
		Method("leave", r.handleLeave).
		Method("release", r.handleRelease)
}

// layout refreshes the view of the ring when the leaf set changed, and
// drops initialisation of ranges this node no longer replicates.
func (r *replica) layout() *layout {
	v := r.k.n.View()
	if r.lay == nil || v.Gen != r.layGen {
		prev := r.lay
		r.lay = newLayout(v, r.k.cfg.Replicas)
		r.layGen = v.Gen
		if n := min(r.lay.n(), r.k.cfg.Replicas); n > r.maxSeen && v.Ready {
			// Persist before any quorum relies on it (at most r-1 times ever).
			r.maxSeen = n
			if err := r.k.cfg.Store.PutMeta(r.meta()); err != nil {
				r.k.log.Error("persisting the ring size failed", "err", err)
			}
		}
		arcs := r.lay.replicaArcs()
		if prev != nil {
			// Where a range's replica set changed, this node stops vouching
			// for it until a sync round under the new set has read every
			// replica set reported for it (invariant 6): writes may have
			// gone to a set its old view did not name. Its records stay a
			// source meanwhile.
			moved := arcSet{s: r.init.list()}
			moved.subtract(sameCfgSpans(prev, r.lay))
			if !moved.empty() {
				r.init.subtract(moved.list())
				r.prior.addSpans(moved.list())
			}
		}
		keep := arcSet{s: r.init.list()}
		keep.intersect(arcs)
		keepPrior := arcSet{s: r.prior.list()}
		keepPrior.intersect(arcs)
		if !sameSpans(keep.s, r.init.s) || !sameSpans(keepPrior.s, r.prior.s) {
			r.departed.addSpans(r.init.list())
			r.departed.addSpans(r.prior.list())
			r.departedAt = time.Now()
		}
		r.init = keep
		r.prior = keepPrior
		if r.noteHist(r.lay) {
			// Durable before this node acts as an acceptor under a new
			// replica set, so a restart cannot forget it served there.
			if err := r.k.cfg.Store.PutMeta(r.meta()); err != nil {
				r.k.log.Error("persisting the replica-set history failed", "err", err)
			}
		}
	}
	return r.lay
}

// noteHist records, for the parts of the ranges of l this node has
// synchronised (where it is an acceptor), the replica set it serves them
// under. It reports whether the history changed.
func (r *replica) noteHist(l *layout) bool {
	changed := false
	for _, p := range l.pieces() {
		if sp := r.init.clip(p.arc); len(sp) > 0 {
			changed = r.hist.add(peerIDList(p.replicas), sp) || changed
		}
	}
	return changed
}

// expireDeparted ends the grace of ranges this node stopped replicating,
// and forgets the history of the parts it no longer holds in any way.
func (r *replica) expireDeparted() {
	if r.departedAt.IsZero() || time.Since(r.departedAt) <= 3*r.k.cfg.SyncInterval {
		return
	}
	r.departed = arcSet{}
	r.departedAt = time.Time{}
	r.hist.keepOnly(r.held()) // forgetting needs no sync: the next meta write carries it
}

func idSet(m map[id.ID]bool) []string {
	var out []string
	for x := range m {
		out = append(out, x.Short())
	}
	sort.Strings(out)
	return out
}

func spanSummary(sp []span) []string {
	var out []string
	for _, x := range sp {
		out = append(out, x.Lo.Short()+"-"+x.Hi.Short())
	}
	return out
}

func histSpans(es []HistEntry) []string {
	var out []string
	for _, e := range es {
		var ids []string
		for _, x := range e.Cfg {
			ids = append(ids, x.Short())
		}
		out = append(out, strings.Join(ids, ",")+":"+strings.Join(spanSummary(e.Spans), "+"))
	}
	return out
}

func peerIDList(ps []transport.Peer) []id.ID {
	out := make([]id.ID, len(ps))
	for i, p := range ps {
		out[i] = p.ID
	}
	return out
}

// eligible: this node may act as an acceptor for key only while its own
// view puts it in the key's replica set and it has synchronised the range.
func (r *replica) eligible(key string) bool {
	kid := KeyID(key)
	l := r.layout()
	return l.isReplica(kid) && r.init.contains(kid)
}

func (r *replica) record(key string) *Record {
	rec := r.recs[key]
	if rec == nil {
		rec = &Record{Key: key}
		r.recs[key] = rec
	}
	return rec
}

// persist writes a copy of the record durably, then runs then on the loop.
func (r *replica) persist(c *service.Call, rec Record, then func(err error)) {
	wait := r.submit(rec)
	c.Go(func(context.Context) (any, error) { return nil, wait() }, func(_ any, err error) {
		if err != nil {
			r.k.log.Error("persisting a record failed", "key", rec.Key, "err", err)
		}
		then(err)
	})
}

// submit hands records to the store in the order the loop changed them and
// returns a wait for their durability, to call off the loop. A store that
// cannot order submissions (no Append) gets copies written by the wait.
func (r *replica) submit(recs ...Record) (wait func() error) {
	if a, ok := r.k.cfg.Store.(appender); ok {
		return a.Append(recs...)
	}
	cp := make([]Record, len(recs))
	for i, rec := range recs {
		rec.State.Value = append([]byte(nil), rec.State.Value...)
		rec.State.Recent = append([]ReqVer(nil), rec.State.Recent...)
		cp[i] = rec
	}
	return func() error { return r.k.cfg.Store.Put(cp...) }
}

// submitLazy is submit for a write whose vote the leader does not wait for
// (ballotReq.Lazy): it may wait a few milliseconds to share a sync.
func (r *replica) submitLazy(rec Record) (wait func() error) {
	if a, ok := r.k.cfg.Store.(lazyAppender); ok {
		return a.AppendLazy(rec)
	}
	return r.submit(rec)
}

// ---- acceptor -------------------------------------------------------------

type ballotReq struct {
	Key    string `json:"key"`
	Ballot Ballot `json:"ballot"`
	State  State  `json:"state,omitempty"`
	// Lazy (accept only): the leader has a majority without this vote
	// unless another replica fails, so the acceptor may let its write wait
	// a few milliseconds to share a sync (it still answers only once the
	// write is durable).
	Lazy bool `json:"lazy,omitempty"`
	// Inc (accept and confirm) is the leader's incarnation, which the read
	// lease an acceptor grants with its yes is recorded under (lease.go).
	Inc uint64 `json:"inc,omitempty"`
}

type ballotResp struct {
	Eligible  bool   `json:"eligible"`
	OK        bool   `json:"ok"`
	Promised  Ballot `json:"promised"`
	Accepted  Ballot `json:"accepted"`
	State     State  `json:"state"`
	Committed bool   `json:"committed,omitempty"`
}

func (r *replica) handlePrepare(c *service.Call) {
	var q ballotReq
	if err := c.Decode(&q); err != nil {
		c.Fail(err)
		return
	}
	if err := r.checkProposer(c, q); err != nil {
		c.Fail(err)
		return
	}
	resp, wait := r.prepareHere(q)
	r.answerDurable(c, q.Key, resp, wait)
}

// answerDurable answers an acceptor's vote once the record behind it is on
// disk (wait), straight from the goroutine that waited; a failed write is
// answered "unavailable" (the vote does not count).
func (r *replica) answerDurable(c *service.Call, key string, resp ballotResp, wait func() error) {
	if wait == nil {
		c.Reply(resp)
		return
	}
	c.ReplyAfter(func(context.Context) error {
		if err := wait(); err != nil {
			r.k.log.Error("persisting a record failed", "key", key, "err", err)
			return service.Unavailable(100*time.Millisecond, "replica could not write to disk")
		}
		return nil
	}, resp)
}

// prepareHere is this node's acceptor taking a prepare: the answer, and if
// it promised, the wait for the promise's durability.
func (r *replica) prepareHere(q ballotReq) (ballotResp, func() error) {
	elig := r.eligible(q.Key)
	rec := r.record(q.Key)
	if q.Ballot.Less(rec.Promised) || r.leaseBlocks(q.Key, q.Ballot) {
		return ballotResp{Eligible: elig, Promised: rec.Promised}, nil
	}
	rec.Promised = q.Ballot
	snap := *rec
	return ballotResp{Eligible: elig, OK: true, Promised: snap.Promised, Accepted: snap.Accepted, State: snap.State, Committed: snap.Committed}, r.submit(snap)
}

// here runs this node's own part of a round on the loop, at once, instead
// of sending itself a message: it returns targets without this node and
// the vote to count with the others' (waiting for durability, off the
// loop), or targets unchanged and nil if this node is not among them.
func (r *replica) here(targets []transport.Peer, f func() (ballotResp, func() error)) ([]transport.Peer, func() vote) {
	i := slices.IndexFunc(targets, func(p transport.Peer) bool { return p.ID == r.self })
	if i < 0 {
		return targets, nil
	}
	rest := slices.Delete(slices.Clone(targets), i, i+1)
	resp, wait := f()
	self := r.self
	return rest, func() vote {
		if wait != nil {
			if err := wait(); err != nil {
				return vote{from: self, err: err}
			}
		}
		return vote{from: self, resp: resp}
	}
}

func (r *replica) handleAccept(c *service.Call) {
	var q ballotReq
	if err := c.Decode(&q); err != nil {
		c.Fail(err)
		return
	}
	if err := r.checkProposer(c, q); err != nil {
		c.Fail(err)
		return
	}
	resp, wait := r.acceptHere(q, r.sender(c))
	r.answerDurable(c, q.Key, resp, wait)
}

// acceptHere is this node's acceptor taking an accept: the answer, and if
// the record changed, the wait for its durability (the answer may be given
// only once it returns nil).
func (r *replica) acceptHere(q ballotReq, from id.ID) (ballotResp, func() error) {
	rec := r.record(q.Key)
	if q.Ballot.Less(rec.Promised) {
		return ballotResp{Eligible: true, Promised: rec.Promised}, nil
	}
	r.grantLease(q.Key, q.Ballot, from, q.Inc)
	if !newer(q.Ballot, q.State.Version, rec.Accepted, rec.State.Version) && !(q.Ballot == rec.Accepted && q.State.Version == rec.State.Version) {
		// A duplicate of an older accept from this leader: we already hold
		// something at least as new.
		return ballotResp{Eligible: true, OK: true, Promised: rec.Promised}, nil
	}
	r.checkRegression("accept", from, rec, q.Ballot, q.State.Version)
	rec.Promised = q.Ballot
	rec.Accepted = q.Ballot
	rec.State = q.State
	rec.Committed = false
	if q.Lazy {
		return ballotResp{Eligible: true, OK: true, Promised: rec.Promised}, r.submitLazy(*rec)
	}
	return ballotResp{Eligible: true, OK: true, Promised: rec.Promised}, r.submit(*rec)
}

func (r *replica) handleConfirm(c *service.Call) {
	var q ballotReq
	if err := c.Decode(&q); err != nil {
		c.Fail(err)
		return
	}
	c.Reply(r.confirmHere(q, r.sender(c)))
}

// confirmHere is this node's acceptor answering a confirm.
func (r *replica) confirmHere(q ballotReq, from id.ID) ballotResp {
	rec := r.record(q.Key)
	ok := !q.Ballot.Less(rec.Promised)
	if ok {
		r.grantLease(q.Key, q.Ballot, from, q.Inc)
	}
	return ballotResp{Eligible: r.eligible(q.Key), OK: ok, Promised: rec.Promised}
}

// sender is the node a call came from (this node for calls from inside the
// process).
func (r *replica) sender(c *service.Call) id.ID {
	if from := c.From().ID; from != (id.ID{}) {
		return from
	}
	return r.self
}

func (r *replica) handleCommit(c *service.Call) {
	var q ballotReq
	if err := c.Decode(&q); err != nil {
		c.Fail(err)
		return
	}
	r.commitHere(q)
	c.Reply(struct{}{})
}

func (r *replica) handleCommits(c *service.Call) {
	var q commitsReq
	if err := c.Decode(&q); err != nil {
		c.Fail(err)
		return
	}
	for _, it := range q.Items {
		r.commitHere(ballotReq{Key: it.Key, Ballot: it.Ballot, State: State{Version: it.Version}})
	}
	c.Reply(struct{}{})
}

func (r *replica) commitHere(q ballotReq) {
	if rec := r.recs[q.Key]; rec != nil && rec.Accepted == q.Ballot && rec.State.Version == q.State.Version && !rec.Committed {
		rec.Committed = true // written lazily: losing it only costs a re-accept
	}
}

// ---- sync and anti-entropy ------------------------------------------------

type syncReq struct {
	Arc arc `json:"arc"`
	// Paged asks for the records in key order, one page of at most about
	// syncPageBytes at a time, from the first key after After. Without it
	// (nodes of earlier versions) the whole range comes in one answer.
	Paged bool   `json:"paged,omitempty"`
	After string `json:"after,omitempty"`
}

type syncResp struct {
	Covered []span `json:"covered"` // the parts of the arc synchronised here (now, or before a restart)
	// Hist is the replica sets this node served the arc under that it has
	// not yet read back from a majority of their members (hist.go). Older
	// nodes send none.
	Hist    []HistEntry `json:"hist,omitempty"`
	Records []Record    `json:"records"`
	// Next, on a paged answer, is the last key of this page when more
	// follow ("" on the last page).
	Next string `json:"next,omitempty"`
}

// syncPageBytes bounds one page of a sync answer (estimated encoded size),
// well under the 4 MiB frame limit; a page always holds at least one record.
const syncPageBytes = 1 << 20

// maxSyncPages bounds the pages one source may send for one range.
const maxSyncPages = 1 << 16

// syncSize estimates a record's encoded size in a sync answer.
func syncSize(rec *Record) int {
	return 256 + len(rec.Key) + len(rec.State.Value)*4/3 + 48*len(rec.State.Recent) + 160*(len(rec.State.Cfg)+len(rec.State.prevCfg()))
}

func (r *replica) handleSync(c *service.Call) {
	var q syncReq
	if err := c.Decode(&q); err != nil {
		c.Fail(err)
		return
	}
	r.layout()
	r.expireDeparted()
	both := unionOf(&r.init, &r.restored, &r.prior, &r.departed)
	resp := syncResp{Covered: both.clip(q.Arc), Hist: r.hist.clip(q.Arc)}
	var keys []string
	for key, rec := range r.recs {
		// Records that hold only a promise go too: a new replica inherits
		// the promises of the replicas it copies (merge).
		if (rec.Accepted.IsZero() && rec.Promised.IsZero()) || (q.Paged && key <= q.After) {
			continue
		}
		if q.Arc.contains(KeyID(key)) {
			keys = append(keys, key)
		}
	}
	if !q.Paged {
		for _, key := range keys {
			resp.Records = append(resp.Records, *r.recs[key])
		}
		c.Reply(resp)
		return
	}
	sort.Strings(keys)
	size := 0
	for i, key := range keys {
		rec := r.recs[key]
		if n := syncSize(rec); i > 0 && size+n > syncPageBytes {
			resp.Next = keys[i-1]
			break
		} else {
			size += n
		}
		resp.Records = append(resp.Records, *rec)
	}
	c.Reply(resp)
}

// merge adopts a peer's accepted state when it is newer than ours. Adopting
// a state some acceptor really accepted is safe in Paxos: a state newer
// than a committed one carries it forward, an older one is dominated.
//
// It also adopts the peer's promise when it is higher than ours. A node new
// to a range takes the place of a replica that may have promised a ballot
// its sources promised too; without their promise, its first round could
// run under a lower ballot than one a majority of the old replica set
// promised, and a state accepted under that higher ballot (by the old
// owner's own acceptor, just before it crashed) would later pass for newer
// than everything the new owner wrote. Promising more only makes this
// acceptor refuse more, which is always safe.
func (r *replica) merge(in Record) (Record, bool) {
	rec := r.record(in.Key)
	promised := false
	if rec.Promised.Less(in.Promised) {
		rec.Promised = in.Promised
		promised = true
	}
	if !newer(in.Accepted, in.State.Version, rec.Accepted, rec.State.Version) {
		if in.Accepted == rec.Accepted && in.State.Version == rec.State.Version && in.Committed && !rec.Committed {
			rec.Committed = true
		}
		return *rec, promised
	}
	r.checkRegression("anti-entropy", id.ID{}, rec, in.Accepted, in.State.Version)
	if rec.Promised.Less(in.Accepted) {
		rec.Promised = in.Accepted
	}
	rec.Accepted = in.Accepted
	rec.State = in.State
	rec.Committed = in.Committed
	return *rec, true
}

// checkRegression is a tripwire for the store's central invariant: once a
// state is committed, every state accepted under a higher ballot carries it
// forward, so its version is at least as high (docs/kv.md, invariants 1
// and 2). local is about to be replaced by the state (b, v) that arrived
// through where (from names an accept's leader; anti-entropy has none). A
// replacement that goes back from a committed version means two quorums
// failed to intersect somewhere: the acknowledged writes between the two
// versions are lost. Nothing in the protocol can repair that here, so the state is
// taken as Paxos says; the event is counted (Stats.VersionRegressions) and
// logged with what a person needs to trace it.
func (r *replica) checkRegression(where string, from id.ID, local *Record, b Ballot, v uint64) {
	if !local.Committed || v >= local.State.Version || !local.Accepted.Less(b) {
		return
	}
	r.k.regressions.Add(1)
	if from != (id.ID{}) {
		where += " from leader " + from.Short()
	}
	r.k.log.Error("kv invariant broken: a committed version is being replaced by a lower one under a higher ballot; acknowledged writes of this key may be lost",
		"key", local.Key, "via", where,
		"committed_version", local.State.Version, "committed_ballot", local.Accepted.String(),
		"new_version", v, "new_ballot", b.String())
}

// handleTick runs periodic work: synchronise ranges not yet initialised
// (often) and all ranges (every SyncInterval).
func (r *replica) handleTick(c *service.Call) {
	defer c.Reply(struct{}{})
	r.expireGrants()
	if !r.k.n.View().Ready {
		r.k.synced.Store(0)
		return
	}
	r.expireDeparted()
	r.noteSynced(r.layout())
	if r.syncing {
		return
	}
	l := r.layout()
	now := time.Now()
	full := now.Sub(r.lastFull) >= r.k.cfg.SyncInterval
	// A range whose history still holds an earlier replica set is read
	// again soon (backing off to SyncInterval while that fails): until
	// then, a second failure among that set's members could leave nobody
	// able to read it.
	due := !now.Before(r.trimAt)
	trim := false
	var todo []piece
	for _, p := range l.pieces() {
		stale := due && r.hist.stale(p.arc, peerIDList(p.replicas))
		trim = trim || stale
		if full || !r.init.covers(p.arc) || stale {
			todo = append(todo, p)
		}
	}
	if len(todo) == 0 {
		r.trimWait = 0
		return
	}
	if trim {
		r.trimWait = min(max(2*r.trimWait, r.k.cfg.SyncInterval/10), r.k.cfg.SyncInterval)
		r.trimAt = now.Add(r.trimWait)
	}
	if full {
		r.lastFull = now
	}
	r.syncing = true
	r.syncPieces(c, l, todo)
}

type syncResult struct {
	p        piece
	need     int
	covered  [][]span // one list per answering source
	recs     []Record
	hists    []HistEntry // every source's history for the piece, and this node's
	own      []HistEntry // this node's history for the piece when the round began
	answered map[id.ID]bool
}

// stuckRounds is how many sync rounds may leave a range unsynchronised
// before answering members of its previous replica set count for the parts
// of it another source holds.
const stuckRounds = 8

// maxHistPeers bounds the members of reported replica sets one round asks
// besides its usual sources.
const maxHistPeers = 32

func (r *replica) syncPieces(c *service.Call, l *layout, todo []piece) {
	old := l.withoutSelf()
	type job struct {
		p         piece
		sources   []transport.Peer
		need      int
		oldMember map[id.ID]bool
		own       []HistEntry
	}
	lenient := r.stuck >= stuckRounds
	book := r.addrBook()
	var jobs []job
	for _, p := range todo {
		selfCounts := r.restored.covers(p.arc) || r.init.covers(p.arc) || r.prior.covers(p.arc)
		// Sources: the piece's replicas and, for a node that was not one of
		// them before, the replicas the range had without it.
		srcs := map[id.ID]transport.Peer{}
		oldMember := map[id.ID]bool{}
		for _, q := range p.replicas {
			if q.ID != r.self {
				srcs[q.ID] = q
			}
		}
		// Also nodes nearby that may have just been displaced from the
		// range: they keep it as a sync source for a grace period.
		for k := -r.k.cfg.Replicas - 1; k <= r.k.cfg.Replicas+1; k++ {
			if q, ok := l.at(l.selfIdx + k); ok && q.ID != r.self {
				srcs[q.ID] = q
			}
		}
		if !selfCounts {
			for _, x := range []id.ID{p.arc.To, p.arc.From.Add(id.ID{19: 1})} {
				if rs, ok := old.replicaSet(x); ok {
					for _, q := range rs {
						if q.ID != r.self {
							srcs[q.ID] = q
							oldMember[q.ID] = true
						}
					}
				}
			}
		}
		// Enough sources to meet a majority of the range's replica set as it
		// stood: with this node if it held the range before (a restart),
		// without it if it is new to the range.
		floor := majority(min(r.maxSeen, r.k.cfg.Replicas))
		need := max(majority(len(p.replicas)), floor) - 1
		if !selfCounts {
			need = 1
			for _, x := range []id.ID{p.arc.To, p.arc.From.Add(id.ID{19: 1})} {
				if rs, ok := old.replicaSet(x); ok && majority(len(rs)) > need {
					need = majority(len(rs))
				}
			}
			if old.n() == 0 {
				need = 1 << 30 // alone and new: nothing to learn from; only a genesis node starts initialised
			}
			// No floor here: write quorums were at least majorities of these
			// old replica sets, so this many sources meet every one of them.
		}
		var list []transport.Peer
		for _, q := range srcs {
			list = append(list, q)
		}
		jobs = append(jobs, job{p: p, sources: list, need: need, oldMember: oldMember, own: r.hist.clip(p.arc)})
	}
	c.Go(func(ctx context.Context) (any, error) {
		var out []syncResult
		for _, j := range jobs {
			res := syncResult{p: j.p, need: j.need, own: j.own, answered: map[id.ID]bool{r.self: true}}
			res.hists = append(res.hists, j.own...)
			unsyncedOld := 0
			var mu sync.Mutex
			var wg sync.WaitGroup
			asked := map[id.ID]bool{r.self: true}
			fetch := func(src transport.Peer) {
				defer wg.Done()
				// Page through the source's records; it counts as a
				// source only if every page arrived (the records of
				// the pages that did are merged either way).
				var resp syncResp
				var recs []Record
				complete := false
				after := ""
				for range maxSyncPages {
					cctx, cancel := context.WithTimeout(context.Background(), r.k.cfg.RoundTimeout)
					resp = syncResp{}
					err := r.k.n.CallNode(cctx, src, ServiceName, "sync", syncReq{Arc: j.p.arc, Paged: true, After: after}, &resp, node.WithRetry(service.NoRetry()))
					cancel()
					if err != nil {
						break
					}
					recs = append(recs, resp.Records...)
					if resp.Next == "" {
						complete = true
						break
					}
					if resp.Next <= after {
						break // a cursor that does not advance: not a source
					}
					after = resp.Next
				}
				mu.Lock()
				defer mu.Unlock()
				res.recs = append(res.recs, recs...)
				if !complete {
					return
				}
				res.answered[src.ID] = true
				res.hists = append(res.hists, resp.Hist...)
				cov := clipSpans(resp.Covered, j.p.arc)
				if lenient && j.oldMember[src.ID] && len(cov) == 0 {
					// Stuck: a member of the range's previous replica set
					// that has not synchronised it, counted below.
					unsyncedOld++
					return
				}
				res.covered = append(res.covered, cov)
			}
			for _, src := range j.sources {
				asked[src.ID] = true
				wg.Add(1)
				go fetch(src)
			}
			wg.Wait()
			// Members of the replica sets the sources reported that were
			// not asked yet: their records are what a read of those sets
			// needs (twice: their own answers may name more).
			extra := 0
			for range 2 {
				var more []transport.Peer
				for _, e := range res.hists {
					for _, m := range e.Cfg {
						if !asked[m] && extra < maxHistPeers {
							asked[m] = true
							extra++
							more = append(more, transport.Peer{ID: m})
						}
					}
				}
				if len(more) == 0 {
					break
				}
				for _, src := range book(more) {
					wg.Add(1)
					go fetch(src)
				}
				wg.Wait()
			}
			// Stuck (nodes that joined together, each waiting for the
			// others): a member of the previous replica set that answers
			// counts for the parts of the range another source really
			// holds (its records are merged either way). Never for parts
			// nobody answering holds: in a partition the range's real
			// replicas may be on the other side, and counting empty nodes
			// would vouch that their keys are absent (see docs/kv.md).
			if unsyncedOld > 0 {
				if held := coveredBy(res.covered, 1); len(held) > 0 {
					for range unsyncedOld {
						res.covered = append(res.covered, held)
					}
				}
			}
			out = append(out, res)
		}
		return out, nil
	}, func(v any, _ error) {
		r.syncing = false
		results, _ := v.([]syncResult)
		var changed []Record
		initChanged := false
		histChanged := false
		for _, res := range results {
			for _, in := range res.recs {
				if rec, ok := r.merge(in); ok {
					changed = append(changed, rec)
				}
			}
			// The replica sets of this node's history that the round read
			// from enough members: their writes are all merged above.
			cur := peerIDList(res.p.replicas)
			for _, e := range res.own {
				if cfgKey(cfgIDs(e.Cfg)) == cfgKey(cfgIDs(cur)) {
					continue
				}
				read := arcSet{s: slices.Clone(e.Spans)}
				read.subtract(histShort(res.p.arc, []HistEntry{e}, res.answered))
				if !read.empty() {
					histChanged = r.hist.remove(e.Cfg, read.list()) || histChanged
				}
			}
			if r.init.covers(res.p.arc) {
				continue
			}
			// Initialised: the parts of the range that enough sources hold,
			// less those where a replica set some source (or this node)
			// served under was not read from enough of its members.
			got := arcSet{s: clipSpans(coveredBy(res.covered, res.need), res.p.arc)}
			short := histShort(res.p.arc, res.hists, res.answered)
			got.subtract(short)
			if !got.empty() {
				r.init.addSpans(got.list())
				r.prior.subtract(got.list())
				initChanged = true
				r.k.log.Debug("range synchronised", "from", res.p.arc.From.Short(), "to", res.p.arc.To.Short(), "sources", len(res.covered), "need", res.need, "complete", r.init.covers(res.p.arc), "answered", idSet(res.answered), "hists", histSpans(res.hists))
			}
			if len(short) > 0 {
				r.k.log.Debug("range short of a past replica set", "from", res.p.arc.From.Short(), "to", res.p.arc.To.Short(), "answered", len(res.answered), "short", spanSummary(short), "got", spanSummary(got.list()), "hists", histSpans(res.hists))
			}
		}
		// This node serves its ranges under the replica sets it now has:
		// recorded again, in case a trim above removed one of them.
		histChanged = r.noteHist(r.layout()) || histChanged
		complete := true
		for _, res := range results {
			if !r.init.covers(res.p.arc) {
				complete = false
			}
		}
		r.noteSynced(r.layout())
		if complete {
			r.stuck = 0
		} else {
			r.stuck++
		}
		// Durable before the range counts as initialised for others.
		meta := r.meta()
		var wait func() error
		if len(changed) > 0 {
			wait = r.submit(changed...)
		}
		c.Go(func(context.Context) (any, error) {
			if wait != nil {
				if err := wait(); err != nil {
					return nil, err
				}
			}
			if initChanged || histChanged {
				return nil, r.k.cfg.Store.PutMeta(meta)
			}
			return nil, nil
		}, func(_ any, err error) {
			if err != nil {
				r.k.log.Error("persisting synchronised records failed", "err", err)
			}
		})
	})
}

// noteSynced records for KV.Synchronised whether every range this node
// replicates in layout l (of view generation r.layGen) is initialised, and
// read back from a majority of every replica set it served it under before.
func (r *replica) noteSynced(l *layout) {
	for _, p := range l.pieces() {
		if !r.init.covers(p.arc) || r.hist.stale(p.arc, peerIDList(p.replicas)) {
			r.k.synced.Store(0)
			return
		}
	}
	r.k.synced.Store(r.layGen + 1)
}

// held are the ranges this node holds synchronised copies of: as an
// acceptor (init), or as a source only (restored, prior). All of them are
// valid sources after a restart.
func (r *replica) held() arcSet { return unionOf(&r.init, &r.restored, &r.prior) }

// meta is what to persist: the ranges held and the ring size.
func (r *replica) meta() Meta {
	both := r.held()
	return Meta{Init: both.list(), MaxSeen: r.maxSeen, Hist: r.hist.list()}
}

// quorum is how many eligible replicas must agree: a majority of the
// replica set, and never less than a majority of the largest ring this node
// has been part of (capped at r), however few nodes it can see now.
func (r *replica) quorum(rs []transport.Peer) int {
	return max(majority(len(rs)), majority(min(r.maxSeen, r.k.cfg.Replicas)))
}

// ---- owner (leader) --------------------------------------------------------

func (r *replica) handlePlacement(c *service.Call) {
	var q opReq
	if err := c.Decode(&q); err != nil {
		c.Fail(err)
		return
	}
	l := r.layout()
	kid := KeyID(q.Key)
	p := Placement{Key: q.Key, ID: kid}
	if rs, ok := l.replicaSet(kid); ok {
		p.Owner = rs[0]
		p.Replicas = rs
	}
	c.Reply(p)
}

// handleLocal lists this replica's records under a prefix, for the node
// itself only (KV.Local).
func (r *replica) handleLocal(c *service.Call) {
	var q localReq
	if err := c.Decode(&q); err != nil {
		c.Fail(err)
		return
	}
	if c.From().ID != r.self {
		c.Fail(&service.Error{Code: service.CodeBadRequest, Message: "local listings are for the node itself"})
		return
	}
	var resp localResp
	for key, rec := range r.recs {
		if !strings.HasPrefix(key, q.Prefix) || rec.State.Version == 0 {
			continue
		}
		resp.Items = append(resp.Items, localItem{Key: key, Value: rec.State.Value, Version: rec.State.Version, Deleted: rec.State.Deleted, Committed: rec.Committed})
	}
	sort.Slice(resp.Items, func(i, j int) bool { return resp.Items[i].Key < resp.Items[j].Key })
	c.Reply(resp)
}

func (r *replica) handleOp(c *service.Call) {
	var q opReq
	if err := c.Decode(&q); err != nil {
		c.Fail(err)
		return
	}
	switch q.Op {
	case "get", "put", "del":
	default:
		c.Fail(&service.Error{Code: service.CodeBadRequest, Message: fmt.Sprintf("unknown op %q", q.Op)})
		return
	}
	if q.Key == "" || len(q.Key) > r.k.cfg.MaxKey {
		c.Fail(&service.Error{Code: service.CodeBadRequest, Message: fmt.Sprintf("key must be 1 to %d bytes", r.k.cfg.MaxKey)})
		return
	}
	if len(q.Value) > r.k.cfg.MaxValue {
		c.Fail(&service.Error{Code: service.CodeTooLarge, Message: fmt.Sprintf("value of %d bytes exceeds the limit of %d", len(q.Value), r.k.cfg.MaxValue)})
		return
	}
	if r.released {
		c.Fail(errLeaving())
		return
	}
	kid := KeyID(q.Key)
	l := r.layout()
	rs, ok := l.replicaSet(kid)
	if !ok || rs[0].ID != r.self {
		c.Fail(service.Unavailable(50*time.Millisecond, "this node is not the owner of %q by its view; the ring is changing", q.Key))
		return
	}
	if q.Op == "get" && q.Stale {
		rec := r.recs[q.Key]
		if rec == nil {
			c.Reply(opResp{})
			return
		}
		c.Reply(opResp{Exists: rec.State.Exists(), Version: rec.State.Version, Value: rec.State.Value})
		return
	}
	ld := r.leaders[q.Key]
	if ld == nil {
		ld = &leader{key: q.Key}
		r.leaders[q.Key] = ld
	}
	c.Hold() // answered when its turn comes, from another op's continuation
	ld.queue = append(ld.queue, &pendingOp{c: c, req: q})
	r.advance(c, ld)
}

// advance starts the next step for a key whose leader is idle.
func (r *replica) advance(c *service.Call, ld *leader) {
	if ld.busy || len(ld.queue) == 0 {
		return
	}
	if r.released {
		for _, op := range ld.queue {
			op.c.Fail(errLeaving())
		}
		ld.queue = nil
		return
	}
	kid := KeyID(ld.key)
	rs, ok := r.layout().replicaSet(kid)
	if !ok || rs[0].ID != r.self {
		for _, op := range ld.queue {
			op.c.Fail(service.Unavailable(50*time.Millisecond, "ownership of %q moved", ld.key))
		}
		ld.queue = nil
		ld.ballot, ld.lease = Ballot{}, lease{}
		return
	}
	if ld.ballot.IsZero() {
		r.prepare(c, ld, rs)
		return
	}
	op := ld.queue[0]
	q := op.req
	if q.Op == "get" && r.leased(ld) {
		// The lease says no one else can have written: answer from here.
		ld.queue = ld.queue[1:]
		op.c.Reply(opResp{Exists: ld.state.Exists(), Version: ld.state.Version, Value: ld.state.Value})
		r.advance(c, ld)
		return
	}
	if q.Op == "get" {
		r.confirm(c, ld, rs, func() {
			op.c.Reply(opResp{Exists: ld.state.Exists(), Version: ld.state.Version, Value: ld.state.Value})
		})
		return
	}
	if resp, ok := r.refused[q.Req]; ok && q.Req != "" {
		// A copy of a conditional write this owner already refused (a
		// duplicate, or an attempt that was overtaken by its retry): the
		// same answer, never a late application.
		ld.queue = ld.queue[1:]
		op.c.Reply(resp)
		r.advance(c, ld)
		return
	}
	if v, seen := ld.state.lookup(q.Req); seen {
		// A retry of a write that already took effect: its first answer.
		ld.queue = ld.queue[1:]
		op.c.Reply(opResp{Exists: true, Version: v})
		r.advance(c, ld)
		return
	}
	mismatch := (q.IfAbsent && ld.state.Exists()) || (q.IfVersion != nil && (!ld.state.Exists() || ld.state.Version != *q.IfVersion))
	if mismatch && r.mayHaveApplied(ld.state, q) {
		// A retry of this very request may have taken effect before the
		// recent-writes window forgot it: "mismatch" could be a lie.
		ld.queue = ld.queue[1:]
		op.c.Fail(&service.Error{Code: service.CodeApp, Message: ambiguousMsg})
		r.advance(c, ld)
		return
	}
	if mismatch && r.leased(ld) {
		ld.queue = ld.queue[1:]
		op.c.Reply(r.refuse(q.Req, opResp{Mismatch: true, Exists: ld.state.Exists(), Version: ld.state.Version}))
		r.advance(c, ld)
		return
	}
	if mismatch {
		r.confirm(c, ld, rs, func() {
			op.c.Reply(r.refuse(q.Req, opResp{Mismatch: true, Exists: ld.state.Exists(), Version: ld.state.Version}))
		})
		return
	}
	next := ld.state.next(q.Req, q.Value, q.Op == "del")
	r.accept(c, ld, rs, next, func() { op.c.Reply(opResp{Exists: !next.Deleted, Version: next.Version}) })
}

// ---- leaving ---------------------------------------------------------------

// releaseTimeout bounds how long a leaving store waits for its replicas to
// drop its leases.
const releaseTimeout = 500 * time.Millisecond

// errLeaving answers operations that reach a store that is leaving.
func errLeaving() *service.Error {
	return service.Unavailable(50*time.Millisecond, "this node is leaving the ring; its keys move to their next owners")
}

type releaseReq struct {
	Inc uint64 `json:"inc"` // the incarnation whose grants to drop
}

type releaseResp struct {
	Dropped int `json:"dropped"` // grants dropped
}

// handleLeave gives this node's read leases back before it leaves the ring
// (KV.Close; for the node itself only): from now on it trusts no lease and
// answers no operation (the one a key's leader has in flight finishes),
// and it asks the replicas it may have had rounds with to drop the grants
// they gave it, so that the next owners need not wait them out (lease.go).
// It answers once they did, or after releaseTimeout.
func (r *replica) handleLeave(c *service.Call) {
	if c.From().ID != r.self {
		c.Fail(&service.Error{Code: service.CodeBadRequest, Message: "only the node itself can make its store leave"})
		return
	}
	if r.released {
		c.Reply(struct{}{})
		return
	}
	r.released = true
	for _, ld := range r.leaders {
		ld.lease = lease{}
		r.advance(c, ld) // refuses what is queued behind an idle leader
	}
	if r.k.cfg.ReadLease <= 0 || r.lastRound.IsZero() || time.Since(r.lastRound) > r.k.cfg.ReadLease+r.k.cfg.RoundTimeout {
		c.Reply(struct{}{}) // every grant it won has run out (a round's answers come within RoundTimeout)
		return
	}
	targets := r.releaseTargets()
	req := releaseReq{Inc: r.inc}
	c.Go(func(context.Context) (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
		defer cancel()
		var wg sync.WaitGroup
		var mu sync.Mutex
		dropped, reached := 0, 0
		for _, p := range targets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var resp releaseResp
				if err := r.k.n.CallNode(ctx, p, ServiceName, "release", req, &resp, node.WithRetry(service.NoRetry())); err != nil {
					return // an older node, or gone: its grants run out
				}
				mu.Lock()
				dropped += resp.Dropped
				reached++
				mu.Unlock()
			}()
		}
		wg.Wait()
		return [2]int{reached, dropped}, nil
	}, func(v any, _ error) {
		n := v.([2]int)
		r.k.log.Debug("gave read leases back before leaving", "replicas", len(targets), "reached", n[0], "grants", n[1])
		c.Reply(struct{}{})
	})
}

// releaseTargets is every node that may hold a lease grant from this one:
// the neighbours replica sets are drawn from, and the members of each
// led key's configuration and the one before it.
func (r *replica) releaseTargets() []transport.Peer {
	seen := map[id.ID]bool{r.self: true}
	var out []transport.Peer
	add := func(ps []transport.Peer) {
		for _, p := range ps {
			if !seen[p.ID] {
				seen[p.ID] = true
				out = append(out, p)
			}
		}
	}
	l := r.layout()
	add(l.nodes)
	for _, ld := range r.leaders {
		add(ld.state.Cfg)
		add(ld.state.prevCfg())
	}
	return r.addrBook()(out)
}

// handleRelease drops the grants this acceptor gave the incarnation of the
// sender named in the request (it is leaving).
func (r *replica) handleRelease(c *service.Call) {
	var q releaseReq
	if err := c.Decode(&q); err != nil {
		c.Fail(err)
		return
	}
	c.Reply(releaseResp{Dropped: r.dropGrants(r.sender(c), q.Inc)})
}

// maxRefused bounds the refused-requests memory.
const maxRefused = 4096

// refuse remembers the answer to a conditional write refused for its
// condition, by request ID, and returns it. Without this, a second copy of
// the request (a network duplicate, or a first attempt that arrives after
// the client's retry was answered) could find the condition true later and
// apply a write whose client was told it failed. (Found by the checker once
// clients sent their requests straight to the owner, where the overlay's
// duplicate suppression does not apply.)
func (r *replica) refuse(req string, resp opResp) opResp {
	if req == "" {
		return resp
	}
	if _, ok := r.refused[req]; !ok {
		if len(r.refusedOrder) >= maxRefused {
			delete(r.refused, r.refusedOrder[0])
			r.refusedOrder = r.refusedOrder[1:]
		}
		r.refusedOrder = append(r.refusedOrder, req)
	}
	r.refused[req] = resp
	return resp
}

// fail ends the op at the head of the queue (or all of them) with err.
func (r *replica) failHead(ld *leader, err *service.Error, all bool) {
	n := 1
	if all {
		n = len(ld.queue)
	}
	for _, op := range ld.queue[:n] {
		op.c.Fail(err)
	}
	ld.queue = ld.queue[n:]
}

type vote struct {
	from id.ID
	resp ballotResp
	err  error
}

// round sends req to every target in parallel, counts local (this node's
// own vote, if not nil) with theirs, and returns the votes once
// enough(votes) holds, every target answered, or the round timed out.
func (r *replica) round(method string, targets []transport.Peer, req ballotReq, enough func([]vote) bool, local func() vote) []vote {
	return r.roundLazy(method, targets, nil, req, enough, local)
}

// roundLazy is round with some targets sent req with Lazy set.
func (r *replica) roundLazy(method string, targets []transport.Peer, lazy map[id.ID]bool, req ballotReq, enough func([]vote) bool, local func() vote) []vote {
	n := len(targets)
	if local != nil {
		n++
	}
	if n == 0 {
		return nil
	}
	ch := make(chan vote, n)
	if local != nil {
		go func() { ch <- local() }()
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.k.cfg.RoundTimeout)
	var body, lazyBody any = req, nil
	if len(targets) > 1 {
		if raw, err := json.Marshal(req); err == nil {
			body = json.RawMessage(raw) // encode the state once, not once per target
		}
	}
	if len(lazy) > 0 {
		lr := req
		lr.Lazy = true
		lazyBody = lr
	}
	for _, p := range targets {
		body := body
		if lazy[p.ID] {
			body = lazyBody
		}
		go func(p transport.Peer) {
			var resp ballotResp
			err := r.k.n.CallNode(ctx, p, ServiceName, method, body, &resp, node.WithRetry(service.RetryPolicy{Attempts: 3, PerAttempt: r.k.cfg.RoundTimeout / 3, Backoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Jitter: 0.2, Overall: r.k.cfg.RoundTimeout}))
			ch <- vote{p.ID, resp, err}
		}(p)
	}
	var votes []vote
	for range n {
		votes = append(votes, <-ch)
		if enough != nil && enough(votes) {
			break
		}
	}
	// Stragglers finish in the background; their answers are not needed.
	time.AfterFunc(r.k.cfg.RoundTimeout, cancel)
	return votes
}

// okFrom counts yes votes from members of set.
func okFrom(votes []vote, set []transport.Peer) int {
	n := 0
	for _, v := range votes {
		if v.err != nil || !v.resp.OK {
			continue
		}
		if hasNode(set, v.from) {
			n++
		}
	}
	return n
}

// eligibleOK counts yes votes from replicas that are synchronised for the
// key by their own view: only they may vouch that a key is absent.
func eligibleOK(votes []vote) int {
	n := 0
	for _, v := range votes {
		if v.err == nil && v.resp.OK && v.resp.Eligible {
			n++
		}
	}
	return n
}

func highest(votes []vote) Ballot {
	var h Ballot
	for _, v := range votes {
		if v.err == nil && !v.resp.OK && h.Less(v.resp.Promised) {
			h = v.resp.Promised
		}
	}
	return h
}

// best is the newest accepted state among the yes votes.
func best(votes []vote) ballotResp {
	var b ballotResp
	for _, v := range votes {
		if v.err == nil && v.resp.OK && newer(v.resp.Accepted, v.resp.State.Version, b.Accepted, b.State.Version) {
			b = v.resp
		}
	}
	return b
}

func union(a, b []transport.Peer) []transport.Peer {
	out := append([]transport.Peer(nil), a...)
	for _, p := range b {
		if !hasNode(out, p.ID) {
			out = append(out, p)
		}
	}
	return out
}

func minus(a []transport.Peer, done map[id.ID]bool) []transport.Peer {
	var out []transport.Peer
	for _, p := range a {
		if !done[p.ID] {
			out = append(out, p)
		}
	}
	return out
}

func (r *replica) noQuorum(key, what string, votes []vote, needs string) *service.Error {
	var errs []string
	answered := 0
	for _, v := range votes {
		if v.err != nil {
			errs = append(errs, v.err.Error())
		} else {
			answered++
		}
	}
	detail := ""
	if len(errs) > 0 {
		detail = "; errors: " + strings.Join(errs, "; ")
	}
	return service.Unavailable(200*time.Millisecond, "%s for %q: %s not reached (%d replicas answered)%s", what, key, needs, answered, detail)
}

// prepare wins a new ballot for the key. It needs promises from a majority
// of the configuration of the newest state it finds (chasing configurations
// it learns of), or, when no replica has the key at all, from a quorum of
// synchronised replicas of its own view, which then vouch that it is absent.
func (r *replica) prepare(c *service.Call, ld *leader, rs []transport.Peer) {
	ld.busy = true
	round := ld.maxObs + 1
	if rec := r.recs[ld.key]; rec != nil && rec.Promised.Round >= round {
		round = rec.Promised.Round + 1
	}
	b := Ballot{Round: round, Node: r.self}
	need := r.quorum(rs)
	req := ballotReq{Key: ld.key, Ballot: b}
	type outcome struct {
		votes []vote
		best  ballotResp
		ok    bool
		why   string
	}
	first, local := r.here(rs, func() (ballotResp, func() error) { return r.prepareHere(req) })
	withAddrs := r.addrBook()
	c.Go(func(context.Context) (any, error) {
		var votes []vote
		contacted := map[id.ID]bool{r.self: true}
		targets := first
		for iter := 0; iter < 6 && (len(targets) > 0 || local != nil); iter++ {
			for _, p := range targets {
				contacted[p.ID] = true
			}
			// The newest state is trusted once majorities of both its
			// configuration and the one it replaced have promised.
			validated := func(all []vote) bool {
				bs := best(all)
				cfg, prev := bs.State.Cfg, bs.State.prevCfg()
				return len(cfg) > 0 && okFrom(all, cfg) >= majority(len(cfg)) && (len(prev) == 0 || okFrom(all, prev) >= majority(len(prev)))
			}
			enough := func(vs []vote) bool { return validated(append(append([]vote(nil), votes...), vs...)) }
			votes = append(votes, r.round("prepare", targets, req, enough, local)...)
			local = nil
			bs := best(votes)
			if cfg := bs.State.Cfg; len(cfg) > 0 {
				if validated(votes) {
					return outcome{votes: votes, best: bs, ok: true}, nil
				}
				targets = withAddrs(minus(union(cfg, bs.State.prevCfg()), contacted))
				if len(targets) == 0 {
					return outcome{votes: votes, why: fmt.Sprintf("promises from majorities of the key's configuration (%d of %d) and of the one before it (%d of %d)", okFrom(votes, cfg), len(cfg), okFrom(votes, bs.State.prevCfg()), len(bs.State.prevCfg()))}, nil
				}
				continue
			}
			if eligibleOK(votes) >= need {
				return outcome{votes: votes, best: bs, ok: true}, nil
			}
			return outcome{votes: votes, why: fmt.Sprintf("promises from %d synchronised replicas (got %d)", need, eligibleOK(votes))}, nil
		}
		return outcome{votes: votes, why: "a stable configuration"}, nil
	}, func(v any, _ error) {
		ld.busy = false
		o := v.(outcome)
		if h := highest(o.votes); h.Round > ld.maxObs {
			ld.maxObs = h.Round
		}
		if !o.ok {
			r.failHead(ld, r.noQuorum(ld.key, "prepare", o.votes, o.why), true)
			return
		}
		ld.ballot = b
		ld.state = o.best.State
		r.trace("prepared", ld.key, "ballot", b, "best_ballot", o.best.Accepted, "best_ver", o.best.State.Version, "cfg", peerIDs(o.best.State.Cfg), "votes", voteSummary(o.votes))
		// Make a majority of both the old configuration and ours hold the
		// newest state under our ballot before serving anything.
		r.accept(c, ld, rs, o.best.State, nil)
	})
}

// accept replicates st under the leader's ballot. The state's configuration
// becomes rs (the leader's replica set); it must be accepted by a majority
// of rs and by a majority of the previous configuration (joint consensus),
// so no later quorum of either can miss it. done (nil for a recovery
// write) runs on success.
func (r *replica) accept(c *service.Call, ld *leader, rs []transport.Peer, st State, done func()) {
	ld.busy = true
	b := ld.ballot
	old := ld.state.Cfg
	st.Cfg = sortedPeers(rs)
	st.setPrev(old)
	needNew := r.quorum(rs)
	enough := func(vs []vote) bool {
		return okFrom(vs, rs) >= needNew && (len(old) == 0 || okFrom(vs, old) >= majority(len(old)))
	}
	req := ballotReq{Key: ld.key, Ballot: b, State: st, Inc: r.inc}
	targets, local := r.here(r.addrBook()(union(rs, old)), func() (ballotResp, func() error) { return r.acceptHere(req, r.self) })
	lazy := r.lazyTargets(ld.key, targets, local != nil, rs, old)
	start := leaseStart()
	r.lastRound = start.at
	c.Go(func(context.Context) (any, error) {
		return r.roundLazy("accept", targets, lazy, req, enough, local), nil
	}, func(v any, _ error) {
		r.noteVotes(targets, lazy, v.([]vote))
		ld.busy = false
		votes := v.([]vote)
		if !enough(votes) {
			if h := highest(votes); h.Round > ld.maxObs {
				ld.maxObs = h.Round
			}
			// We may have lost the key to a newer ballot; re-prepare next
			// time. The write may or may not have taken effect: the client
			// retries with the same request ID and learns which.
			ld.ballot, ld.lease = Ballot{}, lease{}
			r.failHead(ld, r.noQuorum(ld.key, "write", votes, fmt.Sprintf("acceptance by %d of the new replicas and a majority of the previous %d", needNew, len(old))), done == nil)
			r.advance(c, ld)
			return
		}
		ld.state = st
		ld.lease = lease{}
		if okFrom(votes, st.Cfg) >= majority(len(st.Cfg)) {
			ld.lease = r.leaseFrom(start)
		}
		r.trace("committed", ld.key, "ballot", b, "ver", st.Version, "cfg", peerIDs(st.Cfg), "old", peerIDs(old), "votes", voteSummary(votes))
		if done != nil {
			ld.queue = ld.queue[1:]
			done()
		}
		r.notifyCommit(union(rs, old), ballotReq{Key: ld.key, Ballot: b, State: State{Version: st.Version}})
		r.advance(c, ld)
	})
}

// lazyTargets picks the accept targets whose votes the leader can do
// without while everyone answers: beyond this node's own vote and just
// enough others for the quorum, the rest are sent Lazy, so their writes may
// wait a few milliseconds to share a sync and the disks see a third fewer
// syncs per write (r = 3). Not while the configuration changes (joint
// consensus needs majorities of both). Replicas that lately failed to vote
// in time are not relied on; otherwise the key spreads the choice.
func (r *replica) lazyTargets(key string, targets []transport.Peer, selfVotes bool, rs, old []transport.Peer) map[id.ID]bool {
	if len(old) > 0 && !sameMembers(old, rs) {
		return nil
	}
	need := r.quorum(rs)
	if selfVotes {
		need--
	}
	if need < 0 || need >= len(targets) {
		return nil
	}
	now := time.Now()
	order := make([]transport.Peer, 0, len(targets))
	k := KeyID(key)
	start := int(k[len(k)-1]) % len(targets)
	for i := range targets {
		order = append(order, targets[(start+i)%len(targets)])
	}
	sort.SliceStable(order, func(i, j int) bool {
		return !r.suspected(order[i].ID, now) && r.suspected(order[j].ID, now)
	})
	lazy := make(map[id.ID]bool, len(order)-need)
	for _, p := range order[need:] {
		lazy[p.ID] = true
	}
	return lazy
}

// suspectFor is how long a replica that missed a vote it was relied on
// for is sent only lazy accepts.
const suspectFor = 10 * time.Second

func (r *replica) suspected(n id.ID, now time.Time) bool {
	t, ok := r.suspect[n]
	return ok && now.Sub(t) < suspectFor
}

// noteVotes remembers replicas that were relied on (not lazy) but did not
// vote yes before the round had enough, and forgets the suspicion of those
// that did.
func (r *replica) noteVotes(targets []transport.Peer, lazy map[id.ID]bool, votes []vote) {
	if len(lazy) == 0 {
		return
	}
	ok := make(map[id.ID]bool, len(votes))
	for _, v := range votes {
		if v.err == nil && v.resp.OK {
			ok[v.from] = true
		}
	}
	now := time.Now()
	for _, p := range targets {
		switch {
		case ok[p.ID]:
			delete(r.suspect, p.ID)
		case !lazy[p.ID]:
			r.suspect[p.ID] = now
		}
	}
}

// confirm checks that no majority of the key's configuration has promised
// a newer ballot (so this leader's state is still the latest), then runs ok.
func (r *replica) confirm(c *service.Call, ld *leader, rs []transport.Peer, ok func()) {
	ld.busy = true
	b := ld.ballot
	cfg := ld.state.Cfg
	targets := r.addrBook()(cfg)
	enough := func(vs []vote) bool { return okFrom(vs, cfg) >= majority(len(cfg)) }
	if len(cfg) == 0 {
		targets = rs
		need := r.quorum(rs)
		enough = func(vs []vote) bool { return eligibleOK(vs) >= need }
	}
	req := ballotReq{Key: ld.key, Ballot: b, Inc: r.inc}
	targets, local := r.here(targets, func() (ballotResp, func() error) { return r.confirmHere(req, r.self), nil })
	start := leaseStart()
	r.lastRound = start.at
	c.Go(func(context.Context) (any, error) {
		return r.round("confirm", targets, req, enough, local), nil
	}, func(v any, _ error) {
		ld.busy = false
		votes := v.([]vote)
		if !enough(votes) {
			if h := highest(votes); h.Round > ld.maxObs {
				ld.maxObs = h.Round
			}
			ld.ballot, ld.lease = Ballot{}, lease{}
			r.failHead(ld, r.noQuorum(ld.key, "read", votes, "confirmation by a majority of the key's configuration"), false)
			r.advance(c, ld)
			return
		}
		ld.queue = ld.queue[1:]
		if len(cfg) > 0 && okFrom(votes, cfg) >= majority(len(cfg)) {
			ld.lease = r.leaseFrom(start)
		}
		r.trace("confirmed", ld.key, "ballot", b, "ver", ld.state.Version, "cfg", peerIDs(cfg), "votes", voteSummary(votes))
		ok()
		r.advance(c, ld)
	})
}

// addrBook returns a lookup of addresses by node ID from the current view
// of the ring, to use on or off the loop (layouts are never changed once
// made). Peers that already have addresses are kept as they are.
func (r *replica) addrBook() func([]transport.Peer) []transport.Peer {
	nodes := r.layout().nodes
	return func(ps []transport.Peer) []transport.Peer {
		out := slices.Clone(ps)
		for i, p := range out {
			if len(p.Addrs) > 0 {
				continue
			}
			// Not in the view either: the transport still reaches a node
			// it has talked to (or that talked to it) by its ID.
			if j := slices.IndexFunc(nodes, func(n transport.Peer) bool { return n.ID == p.ID }); j >= 0 {
				out[i].Addrs = nodes[j].Addrs
			}
		}
		return out
	}
}

// trace logs a leader decision at debug level (tests route it to a file).
func (r *replica) trace(what, key string, kv ...any) {
	r.k.log.Debug(what, append([]any{"key", key}, kv...)...)
}

func peerIDs(ps []transport.Peer) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.ID.Short()
	}
	return out
}

func voteSummary(vs []vote) []string {
	var out []string
	for _, v := range vs {
		switch {
		case v.err != nil:
			out = append(out, v.from.Short()+":err")
		case v.resp.OK:
			out = append(out, fmt.Sprintf("%s:ok(b%d.%s v%d)", v.from.Short(), v.resp.Accepted.Round, v.resp.Accepted.Node.Short(), v.resp.State.Version))
		default:
			out = append(out, fmt.Sprintf("%s:no(p%d.%s)", v.from.Short(), v.resp.Promised.Round, v.resp.Promised.Node.Short()))
		}
	}
	return out
}

// sortedPeers is a configuration: the members' IDs in order, without their
// addresses (half of a state's encoding otherwise); withAddrs finds them
// when a member must be contacted.
func sortedPeers(ps []transport.Peer) []transport.Peer {
	out := make([]transport.Peer, len(ps))
	for i, p := range ps {
		out[i] = transport.Peer{ID: p.ID}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID.Less(out[j].ID) })
	return out
}

// notifyCommit marks the state committed here and tells the other replicas,
// after the client has its answer: their notices wait up to commitDelay to
// go in one message per replica.
func (r *replica) notifyCommit(rs []transport.Peer, req ballotReq) {
	it := commitItem{Key: req.Key, Ballot: req.Ballot, Version: req.State.Version}
	for _, p := range rs {
		if p.ID == r.self {
			r.commitHere(req)
			continue
		}
		r.commitMu.Lock()
		b := r.commitQ[p.ID]
		if b == nil {
			b = &commitBatch{to: p}
			r.commitQ[p.ID] = b
			time.AfterFunc(commitDelay, func() { r.sendCommits(p.ID) })
		}
		b.items = append(b.items, it)
		full := len(b.items) >= maxCommitBatch
		r.commitMu.Unlock()
		if full {
			go r.sendCommits(p.ID)
		}
	}
}

// maxCommitBatch bounds one commits message (about 130 bytes an item).
const maxCommitBatch = 2000

// sendCommits sends the commit notices waiting for one replica.
func (r *replica) sendCommits(to id.ID) {
	r.commitMu.Lock()
	b := r.commitQ[to]
	delete(r.commitQ, to)
	r.commitMu.Unlock()
	if b == nil || len(b.items) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.k.cfg.RoundTimeout)
	defer cancel()
	_ = r.k.n.NotifyNode(ctx, b.to, ServiceName, "commits", commitsReq{Items: b.items})
}

var (
	rndMu sync.Mutex
	rnd   = rand.New(rand.NewSource(seed()))
)

func seed() int64 {
	var b [8]byte
	_, _ = crand.Read(b[:])
	return int64(binary.BigEndian.Uint64(b[:]) >> 1)
}

func randInt63n(n int64) int64 {
	if n <= 0 {
		return 0
	}
	rndMu.Lock()
	defer rndMu.Unlock()
	return rnd.Int63n(n)
}

func newReqID() string {
	var b [12]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// clipSpans keeps the parts of spans inside arc a.
func clipSpans(sp []span, a arc) []span {
	set := arcSet{s: append([]span(nil), sp...)}
	set.normalize()
	return set.clip(a)
}

func sameSpans(a, b []span) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// checkProposer refuses replica updates (prepare, accept) from a node that
// is neither in the key's replica set by this node's view nor a member of
// the key's current configuration, and ballots that do not name their
// sender. The sender is the authenticated peer of the connection.
func (r *replica) checkProposer(c *service.Call, q ballotReq) error {
	from := c.From().ID
	if from == (id.ID{}) {
		return nil // a call from inside this process
	}
	if q.Ballot.Node != from {
		return &service.Error{Code: service.CodeBadRequest, Message: fmt.Sprintf("ballot names node %s but the request came from %s", q.Ballot.Node.Short(), from.Short())}
	}
	if rs, ok := r.layout().replicaSet(KeyID(q.Key)); ok {
		for _, p := range rs {
			if p.ID == from {
				return nil
			}
		}
	}
	if rec := r.recs[q.Key]; rec != nil {
		for _, p := range rec.State.Cfg {
			if p.ID == from {
				return nil
			}
		}
	}
	return &service.Error{Code: service.CodeApp, Message: fmt.Sprintf("node %s is not a replica of %q by this node's view nor in its configuration: refused", from.Short(), q.Key)}
}

const ambiguousMsg = "outcome unknown: this write may have been applied by an earlier attempt that the key no longer remembers; read the key to find out"

// mayHaveApplied reports whether a conditional write that now fails its
// condition could have been applied by an earlier attempt of the same
// request that the recent-writes window has since forgotten.
func (r *replica) mayHaveApplied(st State, q opReq) bool {
	switch {
	case q.IfVersion != nil:
		return !st.covers(*q.IfVersion + 1)
	case q.IfAbsent:
		return st.Exists() && !st.covers(st.Born)
	}
	return false
}
