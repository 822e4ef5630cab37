//go:build linux

package kv

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestURingWrite: writes through the ring land where pwrite would put them,
// a large one included; a write the kernel refuses returns its error.
func TestURingWrite(t *testing.T) {
	u, err := newURing()
	if err != nil {
		// The log falls back to pwrite here (TestLogStoreDirectWrites
		// checks that); nothing of the ring to test.
		t.Skipf("io_uring is not available on this machine: %v", err)
	}
	defer u.close()
	path := filepath.Join(t.TempDir(), "f")
	f, err := openDirect(path)
	if err != nil {
		t.Fatal(err)
	}
	if f == nil { // no O_DIRECT here (tmpfs): the ring writes buffered files too
		if f, err = os.Create(path); err != nil {
			t.Fatal(err)
		}
	}
	defer f.Close()
	want := make([]byte, 0, 3<<20)
	buf := alignedBuf(1 << 20)
	for i, n := range []int{blockSize, 2 * blockSize, 1 << 20, blockSize} {
		b := buf[:n]
		for j := range b {
			b[j] = byte(i*31 + j%251)
		}
		if err := u.pwrite(f, b, int64(len(want))); err != nil {
			t.Fatalf("write %d (%d bytes at %d): %v", i, n, len(want), err)
		}
		want = append(want, b...)
	}
	// Overwrite a block in the middle, as the log rewrites its tail block.
	mid := buf[:blockSize]
	for j := range mid {
		mid[j] = 0xEE
	}
	if err := u.pwrite(f, mid, 3*blockSize); err != nil {
		t.Fatal(err)
	}
	copy(want[3*blockSize:], mid)
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("file holds %d bytes that differ from the %d written", len(got), len(want))
	}

	ro, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	err = u.pwrite(ro, buf[:blockSize], 0)
	if !errors.Is(err, syscall.EBADF) {
		t.Fatalf("write to a read-only file: %v, want EBADF", err)
	}
}
