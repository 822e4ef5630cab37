// Package resource hands out leases on named resources of shared pools —
// the design document's pool of IP addresses a provider exposes — so that
// each resource has at most one holder at a time, with a fencing token for
// the services the holder acts on.
//
// A pool is defined once (DefinePool, idempotent, only ever adds names).
// Acquire takes any free or expired resource of a pool and AcquireName a
// given one; both return a *Lease with a fencing token and an expiry. The
// holder renews it (Renew, or KeepAlive in the background) and gives it
// back with Release. A lease that is not renewed expires and another node
// may take the resource. List shows every resource, its holder, token,
// expiry and state.
//
// # Storage
//
// Everything lives in kv, under the hash tag {res/<pool>} so a pool's keys
// share one owner: {res/<pool>}/meta holds the sorted names and
// {res/<pool>}/r/<name> one JSON record per resource (holder, token,
// expiry in unix milliseconds, state, grant ID). Every change is a
// compare-and-set on the record's version (create-only for a resource
// never held), so concurrent acquirers are serialised by kv's owner.
//
// # Tokens
//
// Each grant writes token = previous token + 1; renewals keep it and a
// release keeps it in the record, so the tokens of a resource only grow
// and each identifies one grant. A service that acts on a resource puts a
// Guard in front of it and refuses tokens lower than the highest it has
// seen: a holder that paused past its lease is refused once its successor
// has acted.
//
// # The timing rule and its assumption
//
// The node that writes a lease computes expires = its clock, read before
// the write is sent, + TTL, and stores it; the lease's ValidUntil is the
// same instant. Another node takes a held resource only when its own clock
// is past expires + DriftMargin. So if no two nodes' clocks differ by
// DriftMargin or more (and clock rates agree over a TTL), every instant at
// which the old holder may still act comes before the first at which a new
// one may: two valid leases never overlap. Clocks further apart break
// exclusivity; the fencing tokens still protect guarded services.
//
// # What a holder must do
//
//   - Check lease.Valid(now) immediately before every action, and stop
//     when it turns false or KeepAlive reports an error.
//   - Pass Token with every request to a service that acts on the
//     resource, and have that service check it with a Guard; act once
//     through the guard right after acquiring.
//   - Renew well before expiry (KeepAlive renews every TTL/3).
//   - Stop acting before calling Release.
//
// Outcomes kv cannot confirm (kv.ErrAmbiguous, timeouts) are resolved by
// reading the record back; a grant whose outcome stays unknown is reported
// as ErrUnavailable and, if it did apply, simply expires.
//
// See docs/resources.md for the full rules and how they are tested.
package resource
