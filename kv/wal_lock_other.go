//go:build !unix

package kv

import "os"

// lockDir opens the lock file; this system gets no lock (run one node per
// data directory).
func lockDir(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
}

func unlockDir(f *os.File) { f.Close() }
