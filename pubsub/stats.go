package pubsub

// Stats are one node's pubsub counters. Summed over a ring, WireSent /
// Delivered is the number of wire messages per delivered message.
type Stats struct {
	// WireSent counts the pubsub frames this node put on the wire: direct
	// sends to other nodes plus routed pubsub messages it passed to the next
	// hop (the ring's hop acknowledgements are not counted).
	WireSent      uint64 `json:"wire_sent"`
	DataSent      uint64 `json:"data_sent"`      // of which tree data (multicast, replays)
	ControlSent   uint64 `json:"control_sent"`   // of which tree upkeep and answers (acks, heartbeats, leaves, anycast)
	ForwardedHops uint64 `json:"forwarded_hops"` // of which routed messages passed on
	Sequenced     uint64 `json:"sequenced"`      // publishes this node sequenced as a root
	Delivered     uint64 `json:"delivered"`      // published messages handed to handlers here
	Dropped       uint64 `json:"dropped"`        // deliveries dropped: a handler's queue was full
	Duplicates    uint64 `json:"duplicates"`     // data messages received again and ignored
	// Renumbered counts messages not delivered here because the same
	// publish had been delivered under another number: a publish retried
	// across a root change and numbered by both roots.
	Renumbered uint64 `json:"renumbered"`
	Gaps       uint64 `json:"gaps"`     // sequence numbers given up on here (holes not filled in time)
	Replayed   uint64 `json:"replayed"` // messages re-sent from history to children
	Repairs    uint64 `json:"repairs"`  // re-subscriptions after losing a parent
	Pruned     uint64 `json:"pruned"`   // topic states dropped (nothing left below, or idle root)
	// ChildrenExpired counts children dropped after ParentTimeout of silence.
	ChildrenExpired uint64 `json:"children_expired"`
	Handoffs        uint64 `json:"handoffs"` // trees taken over from a previous root
	AnycastAccepted uint64 `json:"anycast_accepted"`
	AnycastDeclined uint64 `json:"anycast_declined"`
	AnycastFailed   uint64 `json:"anycast_failed"`     // searches that ended here without a taker
	Overloaded      uint64 `json:"anycast_overloaded"` // anycasts declined by Uses (admission control)
	BadMessages     uint64 `json:"bad_messages"`
	SendErrors      uint64 `json:"send_errors"`
	Topics          int    `json:"topics"` // topics this node holds tree state for
	Roots           int    `json:"roots"`  // of which it is the root
	// Forwarders maps each topic this node forwards for (it is the root or
	// has children, or holds state with no local subscriber) to its number
	// of children.
	Forwarders map[string]int `json:"forwarders"`
	// Subscriptions maps each topic to the number of local subscriptions.
	Subscriptions map[string]int `json:"subscriptions"`
}

// Stats returns a snapshot of the counters.
func (ps *PubSub) Stats() Stats {
	ps.mu.Lock()
	c := ps.c.st
	snap := ps.c.snapshot()
	ps.mu.Unlock()
	st := Stats{
		WireSent: c.forwardedHops + c.dataSent + c.controlSent, DataSent: c.dataSent, ControlSent: c.controlSent,
		ForwardedHops: c.forwardedHops, Sequenced: c.sequenced, Delivered: ps.m.delivered.Load(),
		Dropped: ps.m.dropped.Load(), Duplicates: c.duplicates, Renumbered: c.renumbered, Gaps: c.gaps, Replayed: c.replayed,
		Repairs: c.repairs, Pruned: c.pruned, ChildrenExpired: c.childrenExpired, Handoffs: c.handoffs,
		AnycastAccepted: c.anyAccepted, AnycastDeclined: c.anyDeclined, AnycastFailed: c.anyFailed,
		Overloaded: ps.m.overloaded.Load(), BadMessages: c.bad + ps.m.bad.Load(), SendErrors: ps.m.sendErrors.Load(),
		Topics: len(snap), Forwarders: forwarders(snap), Subscriptions: make(map[string]int),
	}
	for name, t := range snap {
		if t.root {
			st.Roots++
		}
		if t.subs > 0 {
			st.Subscriptions[name] = t.subs
		}
	}
	return st
}

// Forwarders maps each topic this node forwards for to its number of
// children: topics where it is the root or has children, and any topic
// state it holds without a local subscriber (which pruning removes once
// nothing is below it). A node that only subscribes is not listed.
func (ps *PubSub) Forwarders() map[string]int {
	ps.mu.Lock()
	snap := ps.c.snapshot()
	ps.mu.Unlock()
	return forwarders(snap)
}

func forwarders(snap map[string]topicInfo) map[string]int {
	out := make(map[string]int)
	for name, t := range snap {
		if t.root || t.children > 0 || t.subs == 0 {
			out[name] = t.children
		}
	}
	return out
}
