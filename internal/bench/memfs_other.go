//go:build !linux

package bench

// inMemory reports whether dir is on a file system kept in memory; only
// Linux is checked.
func inMemory(string) bool { return false }
