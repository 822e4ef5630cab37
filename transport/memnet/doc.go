// Package memnet is an in-memory network for testing and simulating Shoal:
// seeded latency, loss, duplication and reordering, partitions of any shape,
// non-transitive links, crashes and restarts, all reproducible from one seed.
//
// # One fault model, two modes
//
// A Network carries messages (any Go value) between nodes named by id.ID.
// Each node is attached with a Handler. Send decides everything random about
// a message at once, from the network's seeded source: whether it is lost
// (Config.Loss), whether it is duplicated (Config.Duplicate; the copy gets
// its own latency) and how long each copy takes (uniform in
// [MinLatency, MaxLatency]; jitter reorders messages). Connectivity is
// checked twice: at Send (both ends up, same partition group, link not cut)
// and again on arrival, so a crash, partition or cut made while a message is
// in flight stops it. A crash also stops messages addressed to the crashed
// incarnation of a node: they are dropped even if the node restarts before
// they arrive. Messages a node sent before it crashed still arrive, as
// packets already on the wire would. Stats counts every outcome.
//
// Partition(groups...) splits the nodes into the groups listed plus one more
// made of everyone else; Heal ends it. Cut(a, b) takes down just the link
// between a and b, so connectivity can be non-transitive (a–b and b–c work,
// a–c does not); CutRandomPairs cuts a seeded fraction of all links. Cuts
// outlive Heal.
//
// Pause(node) makes a node look stopped (SIGSTOP, a long pause of its
// runtime, a stalled VM): what arrives for it waits and what it sends does
// not leave, until Resume hands it its whole backlog at once and puts what
// it sent on the wire. Unlike a partition, nothing is lost: the late
// messages of a node that slept through a change of leadership do arrive.
//
// # Discrete-event mode (the default)
//
// For a simulator driving thousands of pure state machines on one goroutine.
// The network owns a virtual clock that starts at Config.Start and moves
// only when events run: Step runs the next event, RunUntil and RunFor run
// every event up to a time. Handlers and At/After callbacks run on the
// goroutine that calls Step or RunUntil, never inside Send, and may call
// Send, At, Crash and so on. Events due at the same instant run in the order
// they were scheduled, so the same seed and the same sequence of calls give
// the same run, message for message. A message costs no allocation of its
// own: it is a small value in a 4-ary heap.
//
//	n := memnet.New(memnet.DefaultConfig())
//	n.Attach(a, func(from id.ID, msg any) { ... n.Send(a, from, reply) ... })
//	n.Attach(b, handlerB)
//	n.Send(b, a, hello)
//	n.RunFor(time.Second)
//
// # Realtime mode (Config.Realtime)
//
// For node runtimes made of goroutines and timers. Send schedules each
// delivery with time.AfterFunc and handlers run on timer goroutines,
// concurrently; the clock is the time package's. Inside a testing/synctest
// bubble that time is fake, so a test of many nodes over minutes of network
// time finishes at once, without sleeping, and synctest reports goroutines
// that leak. Step, RunUntil and RunFor are not used in this mode (Step
// returns false, RunUntil and RunFor panic); At and After use time.AfterFunc.
// Each delivery gets its own timer, so the order of messages due at the same
// instant is up to the scheduler: the fault decisions replay from the seed,
// the interleaving of goroutines does not.
//
// # Transport
//
// Network.Transport(self) returns a transport.Transport for one node, so
// code written against the transport contract (the node runtime) runs on
// memnet unchanged. Frames are copied at Send and each receiver owns the
// slice it is given, duplicates included. Sending to a crashed or unknown
// node drops the frame and reports ErrUnreachable through
// Receiver.Unreachable; a partition or cut drops frames silently. Close acts
// as a crash of the node. The peer's address is "mem/<40 hex digits>".
package memnet
