package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"runtime"
	"testing"
)

func encode(frames ...[]byte) []byte {
	var buf []byte
	for _, f := range frames {
		buf = AppendFrame(buf, f)
	}
	return buf
}

func TestFrameRoundTrip(t *testing.T) {
	frames := [][]byte{
		nil,
		[]byte("a"),
		bytes.Repeat([]byte{0xab}, 127), // 1-byte length
		bytes.Repeat([]byte{0xcd}, 128), // 2-byte length
		bytes.Repeat([]byte{0xef}, 70000),
	}
	var w bytes.Buffer
	for _, f := range frames {
		if err := WriteFrame(&w, f); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(w.Bytes(), encode(frames...)) {
		t.Fatal("WriteFrame and AppendFrame disagree")
	}
	br := bufio.NewReader(&w)
	for i, want := range frames {
		got, err := ReadFrame(br, DefaultMaxFrame)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d: got %d bytes, want %d", i, len(got), len(want))
		}
	}
	if _, err := ReadFrame(br, DefaultMaxFrame); err != io.EOF {
		t.Fatalf("after last frame: got %v, want io.EOF", err)
	}
}

func TestReadFrameErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		max  int
		want error
	}{
		{"empty stream", nil, 16, io.EOF},
		{"over limit", encode(make([]byte, 17)), 16, ErrFrameTooLarge},
		{"claims 4 GiB", binary.AppendUvarint(nil, 4<<30), DefaultMaxFrame, ErrFrameTooLarge},
		{"claims 2^64-1", binary.AppendUvarint(nil, math.MaxUint64), math.MaxInt, ErrFrameTooLarge},
		{"varint overflow", bytes.Repeat([]byte{0xff}, 11), DefaultMaxFrame, ErrBadFrame},
		{"truncated varint", []byte{0x80}, DefaultMaxFrame, io.ErrUnexpectedEOF},
		{"truncated body", encode([]byte("hello"))[:4], DefaultMaxFrame, io.ErrUnexpectedEOF},
		{"body missing", binary.AppendUvarint(nil, 3), DefaultMaxFrame, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadFrame(bufio.NewReader(bytes.NewReader(tt.in)), tt.max)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// TestReadFrameTruncatedEverywhere cuts an encoding of several frames at
// every byte: a cut between frames reads as a clean io.EOF, any other as
// io.ErrUnexpectedEOF.
func TestReadFrameTruncatedEverywhere(t *testing.T) {
	frames := [][]byte{[]byte("x"), nil, bytes.Repeat([]byte{7}, 300)}
	checkCuts(t, frames, DefaultMaxFrame)
}

// TestReadFrameHugeClaimDoesNotAllocate checks that a length prefix
// claiming 4 GiB is refused before the buffer is allocated.
func TestReadFrameHugeClaimDoesNotAllocate(t *testing.T) {
	claim := binary.AppendUvarint(nil, 4<<30)
	rd := bytes.NewReader(claim)
	br := bufio.NewReader(rd)
	const runs = 100
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		rd.Reset(claim)
		br.Reset(rd)
		if _, err := ReadFrame(br, DefaultMaxFrame); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("got %v, want ErrFrameTooLarge", err)
		}
	}
	runtime.ReadMemStats(&after)
	// The error message allocates a little; the claimed frame would be
	// 400 GiB over all runs.
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Fatalf("%d runs allocated %d bytes", runs, d)
	}
}

// checkCuts reads the encoding of frames cut at every length and checks the
// frames read and the error that ends them.
func checkCuts(t *testing.T, frames [][]byte, max int) {
	t.Helper()
	enc := encode(frames...)
	ends := map[int]bool{0: true} // offsets where a frame ends
	off := 0
	for _, f := range frames {
		off += len(AppendFrame(nil, f))
		ends[off] = true
	}
	for cut := 0; cut <= len(enc); cut++ {
		br := bufio.NewReader(bytes.NewReader(enc[:cut]))
		var n int
		var err error
		for err == nil {
			var got []byte
			if got, err = ReadFrame(br, max); err == nil {
				if !bytes.Equal(got, frames[n]) {
					t.Fatalf("cut %d: frame %d differs", cut, n)
				}
				n++
			}
		}
		want := io.ErrUnexpectedEOF
		if ends[cut] {
			want = io.EOF
		}
		if err != want {
			t.Fatalf("cut %d of %d after %d frames: got %v, want %v", cut, len(enc), n, err, want)
		}
	}
}

// FuzzFrameRoundTrip writes two frames, reads them back, and checks every
// truncation of the encoding and a limit one byte too small.
func FuzzFrameRoundTrip(f *testing.F) {
	f.Add([]byte("hello"), []byte(""))
	f.Add(bytes.Repeat([]byte{1}, 200), []byte{0})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		if len(a)+len(b) > 4096 {
			return // every cut is read: keep it quadratic in little
		}
		var w bytes.Buffer
		if err := WriteFrame(&w, a); err != nil {
			t.Fatal(err)
		}
		if err := WriteFrame(&w, b); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(w.Bytes(), encode(a, b)) {
			t.Fatal("WriteFrame and AppendFrame disagree")
		}
		checkCuts(t, [][]byte{a, b}, max(len(a), len(b)))
		if len(a) > 0 {
			_, err := ReadFrame(bufio.NewReader(bytes.NewReader(w.Bytes())), len(a)-1)
			if !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("limit %d for a %d-byte frame: got %v", len(a)-1, len(a), err)
			}
		}
	})
}

// FuzzReadFrame feeds garbage to ReadFrame: it must not panic, must respect
// the limit, must return each frame as the bytes that end its encoding, and
// must fail only with its documented errors.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{})
	f.Add(encode([]byte("one"), []byte("two")))
	f.Add(binary.AppendUvarint(nil, 4<<30))
	f.Add(bytes.Repeat([]byte{0xff}, 11))
	f.Add([]byte{0x80, 0x00}) // non-minimal zero length
	f.Add(encode([]byte("hello"))[:4])
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 1024
		rd := bytes.NewReader(data)
		br := bufio.NewReader(rd)
		consumed := func() int { return len(data) - rd.Len() - br.Buffered() }
		for {
			start := consumed()
			frame, err := ReadFrame(br, limit)
			if err != nil {
				switch {
				case err == io.EOF:
					if start != len(data) {
						t.Fatalf("io.EOF at offset %d of %d", start, len(data))
					}
				case errors.Is(err, io.ErrUnexpectedEOF),
					errors.Is(err, ErrBadFrame),
					errors.Is(err, ErrFrameTooLarge):
				default:
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			end := consumed()
			if len(frame) > limit {
				t.Fatalf("frame of %d bytes over limit %d", len(frame), limit)
			}
			n, k := binary.Uvarint(data[start:end])
			if k <= 0 || n != uint64(len(frame)) || k+len(frame) != end-start {
				t.Fatalf("frame at %d: prefix (%d, %d) does not describe %d bytes in %d", start, n, k, len(frame), end-start)
			}
			if !bytes.Equal(frame, data[end-len(frame):end]) {
				t.Fatalf("frame at %d differs from its encoding", start)
			}
		}
	})
}
