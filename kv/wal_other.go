//go:build !linux

package kv

import "os"

// fdatasync is fsync where the system has no separate data-only sync.
func fdatasync(f *os.File) error { return f.Sync() }

// openDirect is not available here: the log uses buffered writes and sync.
func openDirect(string) (*os.File, error) { return nil, nil }
