//go:build !linux

package kv

import "time"

// sinceBoot is not available here: leases rely on the monotonic clock alone.
func sinceBoot() (time.Duration, bool) { return 0, false }
