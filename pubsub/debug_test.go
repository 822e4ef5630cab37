package pubsub

import (
	"fmt"
	"strings"
)

// debugTopic describes this node's state for a topic (tests only).
func (ps *PubSub) debugTopic(name string) string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	t := ps.c.topics[name]
	if t == nil {
		return "none"
	}
	var kids []string
	for _, k := range t.kids {
		kids = append(kids, fmt.Sprintf("%s(acked=%v)", k.peer.ID.Short(), k.acked))
	}
	parent := "-"
	if t.parent != nil {
		parent = t.parent.ID.Short()
	}
	return fmt.Sprintf("root=%v attached=%v parent=%s joinSent=%v subs=%d delivered=%x maxSeen=%x pending=%d kids=[%s]",
		t.root, t.attached, parent, !t.joinSent.IsZero(), len(t.subs), t.delivered, t.maxSeen, len(t.pending), strings.Join(kids, " "))
}

func (c *cluster) dumpTopic(topic string) {
	for _, m := range c.members {
		if s := m.ps.debugTopic(topic); s != "none" {
			c.t.Logf("  %s crashed=%v: %s", m.id.Short(), m.crashed, s)
		}
	}
}
