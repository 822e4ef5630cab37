//go:build !linux

package kv

import (
	"errors"
	"os"
)

// uring exists on Linux only; elsewhere the log keeps pwrite.
type uring struct{}

func newURing() (*uring, error) { return nil, errors.New("io_uring is Linux only") }

func (u *uring) pwrite(f *os.File, buf []byte, off int64) error {
	_, err := f.WriteAt(buf, off)
	return err
}

func (u *uring) close() {}

func inMemoryFS(string) bool { return false }
