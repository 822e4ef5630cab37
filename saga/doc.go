// Package saga runs compensating transactions ("sagas") over Shoal: a saga
// is a sequence of steps, each an idempotent action (Do) with an idempotent
// undo (Undo). A run does the steps in order; if a step still fails after
// its retries, the steps already done are undone in reverse and the run ends
// undone. Otherwise it ends done.
//
// A run's progress lives in the replicated store (package kv) under
// "saga/<id>", so a run survives the crash of the node running it: the
// owner of that key (whichever node it is by then) finds the run, takes its
// lease and resumes it, forward or backward, from the last step recorded.
//
//	s, _ := saga.New(n, store, saga.DefaultConfig())
//	s.Define("order",
//		saga.Step{Name: "reserve", Do: reserve, Undo: release},
//		saga.Step{Name: "charge", Do: charge, Undo: refund},
//		saga.Step{Name: "ship", Do: ship, Undo: cancelShipment},
//	)
//	err := s.Start(ctx, "order", "order-42", input) // idempotent by ID
//	st, err := s.Wait(ctx, "order-42")             // done, undone or failed
//
// # Guarantees
//
// A run ends done (every action applied, no undo ever called) or undone
// (every action that was, or may have been, applied is undone, in reverse
// order, and no action runs after the first undo), provided every node
// defines the same sagas, each Do and Undo honours its context, node clocks
// differ by less than RunnerLease/2, and Undo eventually succeeds (with
// Config.UndoAttempts set, a run whose Undo gives up ends failed instead).
//
// # What may run more than once
//
// Progress is recorded after each Do or Undo returns, so a crash (or a lost
// lease) between the two makes the next runner do that step again:
//
//   - a Do that returned nil runs again if its runner dies before storing
//     the step as done;
//   - an Undo runs again if its runner dies before storing it as undone;
//   - an Undo may run for an action that was never applied: when the step's
//     Do failed after a runner may have begun it earlier (the runner died
//     with the step in progress) or after an attempt timed out, its effect
//     is unknown, so the step is undone too.
//
// So Do and Undo must be idempotent, and Undo must do nothing for an action
// that never happened. A Do that returns an error (other than by its
// context ending) must have applied nothing: its Undo is then not called.
//
// See docs/saga.md for the record format and the resumption protocol.
package saga
