// Package bench holds the measurements behind `shoal bench`. Each case is a
// function taking a context and a config and returning a result that
// marshals to one JSON line and prints as a short table; the command only
// parses flags and picks the case.
//
// Cases:
//
//   - RPC: a Shoal service call between two nodes over libp2p on loopback,
//     against bare libp2p request/response with a new stream per request,
//     and the one-long-lived-stream floor (see RPC).
//
// All load is driven by package load, so every case and baseline is timed
// by the same closed-loop callers. Nothing here asserts on speed: the
// results are figures to read, and the goals a case reports are
// informational.
package bench
