package saga

import (
	"errors"
	"fmt"
)

// Errors returned by the package.
var (
	// ErrUnknownSaga: no saga of that name is defined on this node.
	ErrUnknownSaga = errors.New("saga: unknown saga")
	// ErrNotFound: no saga run has that ID.
	ErrNotFound = errors.New("saga: not found")
	// ErrExists: a run with that ID exists with another saga name or input.
	ErrExists = errors.New("saga: a run with this ID exists with another saga or input")
	// ErrBadName: a saga name, step name or run ID is empty, too long or has
	// characters outside [A-Za-z0-9._:@-].
	ErrBadName = errors.New("saga: bad name")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("saga: closed")
	// ErrPermanent marks a step error that retrying cannot fix; see Permanent.
	ErrPermanent = errors.New("saga: permanent failure")
)

// Permanent wraps an error of a Do or Undo so that it is not retried: a Do
// failing with it starts compensation at once, an Undo failing with it marks
// the run failed. errors.Is(Permanent(err), ErrPermanent) and
// errors.Is(Permanent(err), err) both hold.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return fmt.Sprintf("%v (permanent)", e.err) }
func (e *permanentError) Unwrap() []error {
	return []error{ErrPermanent, e.err}
}
