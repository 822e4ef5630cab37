package kv

import (
	"os"
	"syscall"
)

// fdatasync makes f's written data durable, with the metadata needed to read
// it back (its size) but not its timestamps.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
