// Package taskq is Shoal's durable task queue: named queues of tasks,
// replicated in the key-value store, worked by workers on any node.
//
// A queue lives at the owner of its ID, kv.KeyID("{q/<name>}"): its
// configuration and every task are kv records under the hash tag
// "{q/<name>}", so they share the queue's owner and replica set and are
// written, like any key, to a majority of the replicas before anything is
// acknowledged. Service "taskq" runs on every node; requests about a queue
// are routed to its owner, which keeps an in-memory index of the queue
// (rebuilt from its own replica when it becomes the owner) and changes
// tasks only by compare-and-set on the task's kv record. The index is a
// cache: two nodes that both believe they own a queue (a paused old owner
// and the new one) cannot both lease one delivery, because only one
// compare-and-set at a version succeeds.
//
// Guarantees:
//
//   - An Enqueue that returned a task ID survives any crash that leaves a
//     majority of the queue's replicas (3 by default) with their disks.
//   - With IdempotencyKey, a repeated Enqueue returns the first task's ID
//     and adds nothing, for as long as the first task is kept (until its
//     completion plus the queue's Retention, 24h by default). Without a
//     key, a retry that node.Call makes after a lost answer still finds
//     its task (the ID derives from the request ID); a retry by the
//     application does not.
//   - Every task is delivered at least once, to one worker at a time per
//     lease: a lease lasts Visibility and a live worker extends it every
//     Visibility/3. A task whose lease ends (worker crashed, paused or cut
//     off) or whose handler fails is delivered again after a backoff, with
//     Task.Attempt one higher, until MaxAttempts; then it moves to the
//     dead-letter queue (Dead lists it, Redrive brings it back).
//   - A completion, failure or extension must name the task's current,
//     unexpired lease; otherwise it is refused with ErrLeaseExpired. So a
//     worker that lost its lease cannot complete a task another delivery is
//     running; it can only have run the handler twice.
//   - Deliveries are not exactly once: a handler may run again after a
//     crash, a lost completion or an expired lease. Make effects
//     idempotent, keyed by Task.ID (and Task.Attempt if useful), for
//     example with a create-only kv write (kv.IfAbsent): then effects
//     happen exactly once.
//   - Order is not guaranteed: ready tasks are leased oldest-first at one
//     owner, but retries, delays and many workers reorder them.
//
// Work spreads across the ring: many queues spread over owners by their
// IDs, and one queue's tasks go to the workers of all nodes, whose waiting
// lease requests (long polls) are served first come, first served.
//
// Limits: one queue is served by one owner and one replica set; and until
// the store's anti-entropy pages its answers, a replica range holding more
// than about 3,000 records (a queue's tasks, done ones included until their
// Retention passes) cannot be resynchronised after a restart. docs/taskq.md
// describes the protocol, what holds across crashes and the limits.
package taskq
