//go:build !unix

package kv

import "time"

// processCPU is not measured here.
func processCPU() time.Duration { return 0 }
