// Package pubsub is publish/subscribe and anycast on topic trees (Scribe
// over Shoal's Pastry-style ring).
//
// A topic's name hashes to an ID (id.HashString); the node that owns the ID
// is the topic's root. Subscribing routes a subscribe toward the root; the
// first node on the way already in the tree adopts the subscriber, and a
// node not yet in it adopts it anyway, becomes a forwarder and subscribes
// itself, so the tree is the union of the routes. Publishing routes the
// message to the root, which numbers it (one order per topic), answers the
// publisher and sends it down the tree, one copy per tree edge. Anycast
// routes to the topic and searches the tree depth-first from where it first
// meets it, so a nearby subscriber is preferred; a subscriber may decline
// (by its handler's answer, or automatically while the resources it Uses are
// over their admission limits) and the search moves on.
//
// Trees repair themselves: children send their parents one batched
// heartbeat per interval and re-subscribe when a parent stops answering; a
// parent drops silent children and a forwarder with nothing below it prunes
// itself; a root that no longer owns the topic's ID hands its counter and
// its subtree to the new owner. Each tree node keeps a short history of
// recent messages to replay to a child that re-attaches or reports a hole.
//
// What a subscriber and a publisher are promised is written down in
// docs/pubsub.md. The protocol is a pure state machine (core) driven by a
// thin runtime (PubSub) registered on a node as protocol "pubsub".
package pubsub
