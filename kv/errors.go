package kv

import (
	"errors"
	"fmt"
)

// Errors returned by the store's API.
var (
	ErrNotFound        = errors.New("kv: key not found")
	ErrVersionMismatch = errors.New("kv: version mismatch")
	ErrBadKey          = errors.New("kv: bad key")
	ErrTooLarge        = errors.New("kv: value too large")
	ErrUnavailable     = errors.New("kv: unavailable: cannot reach a majority of the key's replicas")
	ErrConflict        = errors.New("kv: update gave up after repeated version conflicts")
	ErrClosed          = errors.New("kv: closed")
	// ErrAmbiguous means a conditional write's outcome is unknown: an
	// earlier attempt of it may have been applied. Read the key to find out.
	ErrAmbiguous = errors.New("kv: write outcome unknown; read the key to find out")
)

// VersionMismatchError is a failed compare-and-set. It matches
// errors.Is(err, ErrVersionMismatch).
type VersionMismatchError struct {
	Key      string
	Want     uint64 // the expected version (0 with IfAbsent)
	Have     uint64 // the current version (0 if the key never existed)
	Exists   bool   // whether the key currently has a value
	IfAbsent bool   // the write was create-only
}

func (e *VersionMismatchError) Error() string {
	switch {
	case e.IfAbsent:
		return fmt.Sprintf("kv: %q already exists at version %d (create-only write)", e.Key, e.Have)
	case !e.Exists:
		return fmt.Sprintf("kv: %q does not exist (expected version %d)", e.Key, e.Want)
	}
	return fmt.Sprintf("kv: %q is at version %d, not the expected %d", e.Key, e.Have, e.Want)
}

// Is makes errors.Is(err, ErrVersionMismatch) true.
func (e *VersionMismatchError) Is(target error) bool { return target == ErrVersionMismatch }
