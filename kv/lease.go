package kv

import (
	"time"

	"github.com/shoal-p2p/shoal/id"
)

// Read leases (see docs/kv.md, "Linearizable reads").
//
// An acceptor that answers yes to an accept or a confirm from the leader of
// a key grants that leader a lease: for ReadLease, by its own clock, from
// when it answered, it refuses to promise a ballot of any other node for the
// key. A leader whose round was answered yes by a majority of the key's
// configuration holds the lease until the round's start plus ReadLease less
// a tenth (drift margin), by its own clocks. While it does, no other node
// can complete a prepare for the key (every prepare needs a majority of that
// configuration), so nothing can be written but through this leader, and
// its state is the latest: a read is answered from it without a round.
//
// Time: the leader's start is taken before it sends, so it precedes every
// grant; clocks are monotonic (a paused process wakes to find the lease run
// out); and the leader also checks the time since boot, which keeps counting
// while a machine is suspended, so a node that slept does not trust a stale
// lease. An acceptor forgets its grants when it restarts, so for ReadLease
// after it starts it promises nothing to anyone.

// grant is a lease an acceptor gave.
type grant struct {
	holder id.ID
	inc    uint64 // the holder's incarnation (0: a node of an earlier version)
	until  time.Time
}

// lease is what a leader holds.
type lease struct {
	until     time.Time     // by the monotonic clock
	untilBoot time.Duration // by the time since boot (0: not available)
}

func (l lease) valid(now time.Time) bool {
	if l.until.IsZero() || !now.Before(l.until) {
		return false
	}
	if l.untilBoot > 0 {
		if b, ok := sinceBoot(); ok && b >= l.untilBoot {
			return false
		}
	}
	return true
}

// leaseClock is a round's start, from which a lease is counted.
type leaseClock struct {
	at   time.Time
	boot time.Duration
}

func leaseStart() leaseClock {
	b, _ := sinceBoot()
	return leaseClock{at: time.Now(), boot: b}
}

// leaseFrom is the lease a round started at s wins: none once this node
// has given its leases back (release).
func (r *replica) leaseFrom(s leaseClock) lease {
	d := r.k.cfg.ReadLease
	if d <= 0 || r.released {
		return lease{}
	}
	d -= d / 10
	l := lease{until: s.at.Add(d)}
	if s.boot > 0 {
		l.untilBoot = s.boot + d
	}
	return l
}

// grantLease records that this acceptor answered yes to from's round for key.
// Only the authenticated sender can be granted a lease, and only in its own
// ballot's name.
func (r *replica) grantLease(key string, b Ballot, from id.ID, inc uint64) {
	if r.k.cfg.ReadLease <= 0 || b.Node != from {
		return
	}
	r.grants[key] = grant{holder: from, inc: inc, until: time.Now().Add(r.k.cfg.ReadLease)}
}

// dropGrants forgets the grants this acceptor gave incarnation inc of
// node from (it is leaving and trusts none of them any more), and says
// how many there were.
func (r *replica) dropGrants(from id.ID, inc uint64) int {
	n := 0
	for k, g := range r.grants {
		if g.holder == from && g.inc == inc && inc != 0 {
			delete(r.grants, k)
			n++
		}
	}
	return n
}

// leaseBlocks reports whether a lease stops this acceptor from promising
// ballot b for key: another node holds one, or this process started less
// than ReadLease ago (its grants from before are forgotten).
func (r *replica) leaseBlocks(key string, b Ballot) bool {
	d := r.k.cfg.ReadLease
	if d <= 0 {
		return false
	}
	now := time.Now()
	if now.Before(r.started.Add(d)) {
		return true
	}
	g, ok := r.grants[key]
	return ok && g.holder != b.Node && now.Before(g.until)
}

// expireGrants drops grants that have run out.
func (r *replica) expireGrants() {
	now := time.Now()
	for k, g := range r.grants {
		if !now.Before(g.until) {
			delete(r.grants, k)
		}
	}
}

// leased reports whether the leader may answer a read of its key from its
// state without a round.
func (r *replica) leased(ld *leader) bool {
	return !r.released && len(ld.state.Cfg) > 0 && ld.lease.valid(time.Now())
}
