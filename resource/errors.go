package resource

import (
	"errors"
	"fmt"
	"time"
)

// Errors returned by the package. Each says what the caller can do next.
var (
	// ErrUnknownPool: the pool has never been defined. Call DefinePool first.
	ErrUnknownPool = errors.New("resource: unknown pool; define it with DefinePool first")
	// ErrUnknownName: the pool exists but has no resource of that name.
	ErrUnknownName = errors.New("resource: no such resource in the pool; add it with DefinePool")
	// ErrPoolExhausted: every resource of the pool is held by a valid lease
	// (see *ExhaustedError for when the first one expires). Retry later.
	ErrPoolExhausted = errors.New("resource: every resource in the pool is held; retry after the soonest expiry")
	// ErrHeld: the resource is held by another lease (see *HeldError for
	// holder, token and expiry). Retry after its expiry plus the drift margin.
	ErrHeld = errors.New("resource: held by another holder; retry after its lease expires")
	// ErrLeaseLost: the lease is no longer this holder's (released, or taken
	// over after it expired). Stop acting on it at once and acquire again.
	ErrLeaseLost = errors.New("resource: lease lost; stop acting on the resource and acquire it again")
	// ErrNotHolder: the token given is not the current holder's. Errors of
	// type *NotHolderError match both ErrNotHolder and ErrLeaseLost: they
	// are the same fact seen from the caller and from the holder.
	ErrNotHolder = errors.New("resource: the token is not the current holder's; only the holder can renew or release")
	// ErrStaleToken: a Guard has already accepted a higher token for the
	// resource; the caller's lease has been superseded.
	ErrStaleToken = errors.New("resource: stale fencing token; a newer holder has acted on this resource")
	// ErrBadName: a pool, resource or holder name breaks the naming rules
	// (1–64 bytes for pools, 1–128 for resources and labels, letters,
	// digits and . _ - : @ only, not "." or "..").
	ErrBadName = errors.New("resource: bad name")
	// ErrUnavailable: the store could not be reached or could not tell
	// whether a write took effect. The operation may be retried; a lease
	// that could not be renewed is still valid until its ValidUntil.
	ErrUnavailable = errors.New("resource: store unavailable; retry")
	// ErrCorrupt: a record in the store cannot be decoded (written by
	// something other than this package). Inspect and repair the key.
	ErrCorrupt = errors.New("resource: corrupt record in the store")
	// ErrClosed: the Manager was closed.
	ErrClosed = errors.New("resource: manager closed")
)

// HeldError reports who holds a resource. It matches errors.Is(err, ErrHeld).
type HeldError struct {
	Pool, Name string
	Holder     string
	Token      uint64
	Expires    time.Time // as stored; others may take it after Expires + DriftMargin
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("resource: %s/%s is held by %s (token %d) until %s; retry after it expires", e.Pool, e.Name, e.Holder, e.Token, e.Expires.UTC().Format(time.RFC3339Nano))
}

// Is makes errors.Is(err, ErrHeld) true.
func (e *HeldError) Is(target error) bool { return target == ErrHeld }

// ExhaustedError reports a pool with no free resource. It matches
// errors.Is(err, ErrPoolExhausted).
type ExhaustedError struct {
	Pool    string
	Size    int       // resources in the pool
	Soonest time.Time // earliest expiry among the held ones (zero if unknown)
}

func (e *ExhaustedError) Error() string {
	if e.Soonest.IsZero() {
		return fmt.Sprintf("resource: all %d resources of pool %s are held; retry later", e.Size, e.Pool)
	}
	return fmt.Sprintf("resource: all %d resources of pool %s are held; the first lease expires at %s", e.Size, e.Pool, e.Soonest.UTC().Format(time.RFC3339Nano))
}

// Is makes errors.Is(err, ErrPoolExhausted) true.
func (e *ExhaustedError) Is(target error) bool { return target == ErrPoolExhausted }

// NotHolderError is a renewal or release with a token that is not the
// current holder's. It matches both ErrNotHolder and ErrLeaseLost.
type NotHolderError struct {
	Pool, Name string
	Token      uint64 // the token presented
	Current    Status // the resource as read
}

func (e *NotHolderError) Error() string {
	switch e.Current.State {
	case StateFree:
		return fmt.Sprintf("resource: %s/%s token %d is not held (it is free, last token %d); acquire it again", e.Pool, e.Name, e.Token, e.Current.Token)
	default:
		return fmt.Sprintf("resource: %s/%s token %d is not the current holder's (held by %s with token %d); stop acting on it", e.Pool, e.Name, e.Token, e.Current.Holder, e.Current.Token)
	}
}

// Is makes errors.Is(err, ErrNotHolder) and errors.Is(err, ErrLeaseLost) true.
func (e *NotHolderError) Is(target error) bool {
	return target == ErrNotHolder || target == ErrLeaseLost
}

// StaleTokenError is a Guard's refusal. It matches errors.Is(err, ErrStaleToken).
type StaleTokenError struct {
	Pool, Name string
	Token      uint64 // presented
	Seen       uint64 // highest accepted so far
}

func (e *StaleTokenError) Error() string {
	return fmt.Sprintf("resource: %s/%s token %d is stale: token %d has already acted; the lease was superseded", e.Pool, e.Name, e.Token, e.Seen)
}

// Is makes errors.Is(err, ErrStaleToken) true.
func (e *StaleTokenError) Is(target error) bool { return target == ErrStaleToken }
