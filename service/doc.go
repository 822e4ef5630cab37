// Package service is Shoal's programming model: an application is a set of
// small named services. A service handles its messages one at a time on a
// loop of its own, so its code needs no locks; anything slow (a call to
// another node, disk, heavy computation) is started with Call.Go or
// Call.Remote and its result comes back to the same loop as a continuation.
// Different services run in parallel, and one that is slow or stuck never
// delays another.
//
// Each service declares the resources it uses (cpu, disk, memory or any name)
// and the node refuses, with a typed *Overloaded error carrying a retry-after
// hint, only the requests whose resources are over their limits.
//
// A service can opt in to a dedupe window: a duplicate of a request it has
// already answered gets the first answer again without running the handler.
//
// Messages are JSON envelopes (see Envelope and docs/compatibility.md): a
// node decodes the fields it knows, ignores the rest, and answers a service,
// method or envelope version it does not know with a typed error at once.
//
// This package has no networking; package node wires it to the ring
// (node.Handle, node.Call).
package service
