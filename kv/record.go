package kv

import (
	"fmt"
	"slices"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
)

// Ballot orders proposers of one key: a higher round wins; the proposer's
// node ID breaks ties, so two proposers never share a ballot.
type Ballot struct {
	Round uint64 `json:"r"`
	Node  id.ID  `json:"n"`
}

// Less orders ballots.
func (b Ballot) Less(o Ballot) bool {
	if b.Round != o.Round {
		return b.Round < o.Round
	}
	return b.Node.Less(o.Node)
}

// String is the ballot as round/node, the node's ID shortened.
func (b Ballot) String() string { return fmt.Sprintf("%d/%s", b.Round, b.Node.Short()) }

// IsZero reports the zero ballot (nothing promised or accepted).
func (b Ballot) IsZero() bool { return b.Round == 0 && b.Node == (id.ID{}) }

// State is a key's register state: the version grows by one with every
// write (delete included) and never goes back; Deleted marks a tombstone.
type State struct {
	Version uint64   `json:"ver"`
	Value   []byte   `json:"val,omitempty"`
	Deleted bool     `json:"del,omitempty"`
	Recent  []ReqVer `json:"recent,omitempty"` // the last writes' request IDs, for idempotent retries
	Born    uint64   `json:"born,omitempty"`   // version at which the key last went from absent to present
	// Cfg is the replica set this state was accepted under: its
	// configuration. A new leader must reach a majority of it, and a write
	// that changes it must be accepted by majorities of both the old and
	// the new one.
	Cfg []transport.Peer `json:"cfg,omitempty"`
	// PrevCfg is the configuration of the state this one replaced, under
	// which it also had to be accepted (joint consensus). A state is only
	// trusted as the newest once majorities of both have promised: a state
	// from a failed round (accepted by too few of PrevCfg) can then never
	// pass for a chosen one.
	PrevCfg []transport.Peer `json:"prev_cfg,omitempty"`
	// PrevSame says that the previous configuration had the same members
	// as Cfg (the usual case: no join or leave in between); PrevCfg is
	// then left out, which keeps records and accept messages about a third
	// smaller. A node that does not know the field reads no previous
	// configuration, which asks majorities of Cfg alone: the same set.
	PrevSame bool `json:"prev_same,omitempty"`
}

// prevCfg is the previous configuration (see PrevCfg and PrevSame).
func (s State) prevCfg() []transport.Peer {
	if s.PrevSame {
		return s.Cfg
	}
	return s.PrevCfg
}

// setPrev records old as the configuration this state replaces.
func (s *State) setPrev(old []transport.Peer) {
	s.PrevCfg, s.PrevSame = old, false
	if len(old) > 0 && sameMembers(old, s.Cfg) {
		s.PrevCfg, s.PrevSame = nil, true
	}
}

// sameMembers reports whether a and b hold the same node IDs.
func sameMembers(a, b []transport.Peer) bool {
	if len(a) != len(b) {
		return false
	}
	for _, p := range a {
		if !hasNode(b, p.ID) {
			return false
		}
	}
	return true
}

// hasNode reports whether node n is one of ps.
func hasNode(ps []transport.Peer, n id.ID) bool {
	return slices.ContainsFunc(ps, func(p transport.Peer) bool { return p.ID == n })
}

// Exists reports whether the key has a live value.
func (s State) Exists() bool { return s.Version > 0 && !s.Deleted }

// ReqVer remembers which version a write request produced.
type ReqVer struct {
	Req string `json:"q"`
	Ver uint64 `json:"v"`
}

// maxRecent bounds State.Recent.
const maxRecent = 64

// lookup returns the version a request produced, if it is remembered.
func (s State) lookup(req string) (uint64, bool) {
	if req == "" {
		return 0, false
	}
	for _, r := range s.Recent {
		if r.Req == req {
			return r.Ver, true
		}
	}
	return 0, false
}

// next is the state after a write by request req.
func (s State) next(req string, value []byte, deleted bool) State {
	n := State{Version: s.Version + 1, Value: value, Deleted: deleted, Born: s.Born}
	if deleted {
		n.Value = nil
	} else if !s.Exists() {
		n.Born = n.Version
	}
	n.Recent = append(n.Recent, s.Recent...)
	if req != "" {
		n.Recent = append(n.Recent, ReqVer{Req: req, Ver: n.Version})
	}
	if len(n.Recent) > maxRecent {
		n.Recent = n.Recent[len(n.Recent)-maxRecent:]
	}
	return n
}

// Record is one replica's Paxos acceptor state for one key.
type Record struct {
	Key       string `json:"key"`
	Promised  Ballot `json:"promised"`            // highest ballot promised
	Accepted  Ballot `json:"accepted"`            // ballot of the accepted state
	State     State  `json:"state"`               // the accepted state
	Committed bool   `json:"committed,omitempty"` // known to be on a majority
}

// newer reports whether accepted state (b, v) is ahead of (ob, ov): states
// are ordered by ballot, then version.
func newer(b Ballot, v uint64, ob Ballot, ov uint64) bool {
	if b != ob {
		return ob.Less(b)
	}
	return v > ov
}

// covers reports whether the recent-writes window reaches back to version v,
// so that a request absent from it certainly did not produce v.
func (s State) covers(v uint64) bool {
	if len(s.Recent) < maxRecent {
		return true // nothing was ever evicted
	}
	return s.Recent[0].Ver <= v
}
