package resource

import (
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"
)

// The fault test records, in one place shared by all nodes, every grant a
// holder used and every action it sent to the guarded sink. Times are the
// bubble's true time; each node's skewed clock is converted back.

// grantEv is one lease as its holder used it.
type grantEv struct {
	Res      string    `json:"res"`
	Token    uint64    `json:"token"`
	Holder   string    `json:"holder"`
	Start    time.Time `json:"start"` // the holder got the lease and raised the fence
	Seq      uint64    `json:"seq"`   // sink order of the fence
	FenceOK  bool      `json:"fence_ok"`
	Until    time.Time `json:"until"` // the latest ValidUntil the holder believed (true time)
	End      time.Time `json:"end"`   // the holder stopped: release, loss, crash, end of test
	How      string    `json:"how"`
	Takeover bool      `json:"takeover"`
}

// stop is when the holder's right to act ended: the earlier of End and Until.
func (g *grantEv) stop() time.Time {
	if g.End.IsZero() || g.Until.Before(g.End) {
		return g.Until
	}
	return g.End
}

// actionEv is one guarded action: issued by a holder that checked its lease
// was valid, delivered to the sink now or after a delay (a paused sender).
type actionEv struct {
	Res      string    `json:"res"`
	Token    uint64    `json:"token"`
	Issued   time.Time `json:"issued"`
	Arrived  time.Time `json:"arrived"`
	Seq      uint64    `json:"seq"`
	Delayed  bool      `json:"delayed"`
	Accepted bool      `json:"accepted"`
	grant    *grantEv
}

// history is the shared sink: a Guard in front of it and the record of
// everything it saw. Its sequence numbers order fences and deliveries.
type history struct {
	mu      sync.Mutex
	seq     uint64
	guard   *Guard
	grants  []*grantEv
	actions []*actionEv
	late    int // grants that arrived already expired (never used)
}

func newHistory() *history { return &history{guard: NewGuard()} }

// fence records a grant at the moment its holder starts using it, and
// raises the guard's floor to its token (the holder's first guarded call).
func (h *history) fence(g *grantEv) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	g.Seq = h.seq
	g.FenceOK = h.guard.Check("p", g.Res, g.Token) == nil
	h.grants = append(h.grants, g)
}

// deliver is an action arriving at the sink.
func (h *history) deliver(a *actionEv) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	a.Seq, a.Arrived = h.seq, time.Now()
	a.Accepted = h.guard.Check("p", a.Res, a.Token) == nil
	h.actions = append(h.actions, a)
}

func (h *history) update(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f()
}

// checkResult is what the checker found.
type checkResult struct {
	Violations []string
	Grants     int
	Takeovers  int
	Actions    int
	Delayed    int
	Refused    int // stale actions the guard refused
	ByHow      map[string]int
}

// check verifies the history:
//  1. for every resource, no two grants' validity intervals [Start, stop)
//     overlap, and tokens strictly grow in the order grants started;
//  2. every fence was accepted (a new holder's token is the highest seen);
//  3. every action was issued inside its own grant's interval;
//  4. the guard accepted tokens of a resource in non-decreasing order,
//     never accepted an action whose token is lower than that of a grant
//     fenced before it arrived (a superseded lease), and refused only
//     actions with such a lower token.
func check(gs []*grantEv, as []*actionEv) checkResult {
	r := checkResult{ByHow: map[string]int{}}
	bad := func(f string, args ...any) {
		if len(r.Violations) < 50 {
			r.Violations = append(r.Violations, fmt.Sprintf(f, args...))
		}
	}
	byRes := map[string][]*grantEv{}
	for _, g := range gs {
		byRes[g.Res] = append(byRes[g.Res], g)
		r.Grants++
		r.ByHow[g.How]++
		if g.Takeover {
			r.Takeovers++
		}
		if !g.FenceOK {
			bad("%s token %d (%s): the guard refused its fence: a higher token had acted first", g.Res, g.Token, g.Holder)
		}
	}
	for res, list := range byRes {
		sort.SliceStable(list, func(i, j int) bool {
			if !list[i].Start.Equal(list[j].Start) {
				return list[i].Start.Before(list[j].Start)
			}
			return list[i].Seq < list[j].Seq
		})
		var last *grantEv // the grant whose interval reaches furthest
		for i, g := range list {
			if i > 0 && g.Token <= list[i-1].Token {
				bad("%s: token %d (%s, from %s) started after token %d (%s, from %s): tokens must grow", res, g.Token, g.Holder, fmtT(g.Start), list[i-1].Token, list[i-1].Holder, fmtT(list[i-1].Start))
			}
			if last != nil && g.Start.Before(last.stop()) {
				bad("%s: two valid leases at once: token %d (%s) valid [%s, %s) and token %d (%s) valid [%s, %s)", res,
					last.Token, last.Holder, fmtT(last.Start), fmtT(last.stop()), g.Token, g.Holder, fmtT(g.Start), fmtT(g.stop()))
			}
			if last == nil || g.stop().After(last.stop()) {
				last = g
			}
		}
	}
	// Sink order: fences and deliveries by sequence number.
	type ev struct {
		seq   uint64
		res   string
		token uint64
		fence bool
		a     *actionEv
	}
	var evs []ev
	for _, g := range gs {
		evs = append(evs, ev{seq: g.Seq, res: g.Res, token: g.Token, fence: true})
	}
	for _, a := range as {
		r.Actions++
		if a.Delayed {
			r.Delayed++
		}
		if a.grant != nil && (a.Issued.Before(a.grant.Start) || !a.Issued.Before(a.grant.stop())) {
			bad("%s token %d: action issued at %s outside its lease [%s, %s)", a.Res, a.Token, fmtT(a.Issued), fmtT(a.grant.Start), fmtT(a.grant.stop()))
		}
		evs = append(evs, ev{seq: a.Seq, res: a.Res, token: a.Token, a: a})
	}
	slices.SortFunc(evs, func(x, y ev) int { return int(x.seq) - int(y.seq) })
	accepted := map[string]uint64{} // highest token accepted (fences included)
	for _, e := range evs {
		if e.fence {
			accepted[e.res] = max(accepted[e.res], e.token)
			continue
		}
		a := e.a
		switch {
		case a.Accepted && a.Token < accepted[e.res]:
			// Fences count as accepted: this is also an action of a
			// superseded lease taken after its successor had started.
			bad("%s: the guard accepted superseded token %d after token %d had started or acted", e.res, a.Token, accepted[e.res])
		case !a.Accepted && a.Token >= accepted[e.res]:
			bad("%s: the guard refused token %d though nothing higher (%d) had acted", e.res, a.Token, accepted[e.res])
		case !a.Accepted:
			r.Refused++
		}
		if a.Accepted {
			accepted[e.res] = a.Token
		}
	}
	return r
}

func fmtT(t time.Time) string { return t.UTC().Format("15:04:05.000") }
