package taskq

import (
	"errors"
	"strings"
)

// Errors returned by the task queues. They match with errors.Is, also when
// the failure happened at the queue's owner on another node.
var (
	// ErrUnknownQueue: the queue has not been created. Call Create first.
	ErrUnknownQueue = errors.New("taskq: unknown queue (create it with Queues.Create first)")
	// ErrTooLarge: the payload is over Config.MaxPayload.
	ErrTooLarge = errors.New("taskq: payload too large (store big data elsewhere and enqueue a reference)")
	// ErrLeaseExpired: a complete, fail or extend named a lease that is no
	// longer the task's current lease (it timed out and the task went back
	// to the queue or to another worker, or the task is finished). The task
	// will run (or ran) again: make its effects idempotent.
	ErrLeaseExpired = errors.New("taskq: lease expired or superseded; the task is retried by another delivery, so make its effects idempotent")
	// ErrBadName: a queue name or idempotency key is empty, too long or
	// uses characters outside the allowed set.
	ErrBadName = errors.New("taskq: bad name")
	// ErrBadConfig: a QueueConfig field is out of range.
	ErrBadConfig = errors.New("taskq: bad queue config")
	// ErrUnavailable: the queue's owner could not be reached or could not
	// reach a majority of the queue's replicas in time. Retry later; an
	// Enqueue that failed this way may still have happened (use an
	// idempotency key to retry it safely).
	ErrUnavailable = errors.New("taskq: unavailable: the queue's owner or its replicas cannot be reached now; retry later")
	// ErrClosed: the Queues was closed.
	ErrClosed = errors.New("taskq: closed")
	// ErrNotFound: no such task (Redrive of an ID that is not dead).
	ErrNotFound = errors.New("taskq: task not found")
)

// sentinels travel across nodes as the prefix of an application error's
// message; the caller maps them back.
var sentinels = []error{ErrUnknownQueue, ErrTooLarge, ErrLeaseExpired, ErrBadName, ErrBadConfig, ErrUnavailable, ErrClosed, ErrNotFound}

// remoteError is a sentinel that came back from another node with details.
type remoteError struct {
	base error
	msg  string
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.base }

// fromMessage maps an application error message back to its sentinel.
func fromMessage(msg string) error {
	for _, s := range sentinels {
		if strings.HasPrefix(msg, s.Error()) {
			return &remoteError{base: s, msg: msg}
		}
	}
	return nil
}
