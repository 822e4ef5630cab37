// Package node is the runtime of one Shoal node: it glues the pure overlay
// core (package ring) to a transport (transport/p2p or transport/memnet) and
// offers the application the Common API of structured overlays:
//
//   - Route(ctx, key, msg) delivers msg at the live node closest to key (the
//     key's owner), calling the application's Deliver there and its Forward
//     at every node on the way;
//   - Send(ctx, peer, msg) sends straight to a known node;
//   - Request(ctx, key, msg) routes a request to key's owner and waits for
//     its answer until ctx's deadline, which travels with the request so the
//     owner does not start work its caller has given up on;
//   - OnOwnerChange reports changes of the ID range this node owns.
//
// One goroutine owns the ring core and is the only one to touch it; frames
// are decoded on the transport's goroutines, and application upcalls run on
// a goroutine of their own, so a slow application never delays routing.
package node
