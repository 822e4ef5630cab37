package kv

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// The on-disk format of LogStore. A data directory holds:
//
//	LOCK                 flock'd while a store has the directory open
//	snap                 the latest snapshot (absent until the first compaction)
//	log-<16 hex digits>  log generations, replayed in order after the snapshot
//
// Logs and snapshots are sequences of frames:
//
//	[4] n: length of the body, little endian (0 ends a log: preallocated zeros)
//	[4] CRC-32C of the generation (8 bytes, little endian) followed by the body
//	[n] body: a type byte, then the payload
//
// The generation in the checksum ties a frame to its file, so a frame left
// over from another file can never pass for one of this file's. A snapshot
// starts with snapMagic and the generation of the first log it does not
// cover, and ends with a frameEnd whose payload is the number of frames
// before it: a snapshot is written to a temporary name, fsynced and renamed,
// so one that does not end properly is damage, not a crash.
const (
	frameRecord byte = 1 // payload: a Record as JSON
	frameMeta   byte = 2 // payload: Meta as JSON
	frameEnd    byte = 3 // payload: the number of frames before it, 8 bytes little endian

	frameHeader = 8
	// maxFrame bounds one frame's body; a larger length is damage. A record
	// holds at most a 1 MiB value (2 MiB request limit) plus its metadata.
	maxFrame = 64 << 20

	snapName = "snap"
	lockName = "LOCK"
	boltName = "kv.db" // the previous version's store, migrated at open
)

var snapMagic = [8]byte{'S', 'H', 'O', 'A', 'L', 'K', 'V', 1}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// appendFrame appends one frame of generation gen to buf.
func appendFrame(buf []byte, gen uint64, typ byte, payload []byte) []byte {
	var g [8]byte
	binary.LittleEndian.PutUint64(g[:], gen)
	crc := crc32.Update(crc32.Update(crc32.Checksum(g[:], crcTable), crcTable, []byte{typ}), crcTable, payload)
	var h [frameHeader]byte
	binary.LittleEndian.PutUint32(h[:4], uint32(1+len(payload)))
	binary.LittleEndian.PutUint32(h[4:], crc)
	buf = append(buf, h[:]...)
	buf = append(buf, typ)
	return append(buf, payload...)
}

// errEndOfLog is what decodeFrame reports for a zero length: the end of the
// written part of a log (the rest is preallocated zeros).
var errEndOfLog = errors.New("end of log")

// decodeFrame decodes the frame at the start of b, a frame of generation
// gen. It returns the frame's type, payload and total size, errEndOfLog for
// a zero length, or an error describing the damage: a short frame, a length
// out of range, a checksum mismatch or an unknown type. It never panics.
func decodeFrame(b []byte, gen uint64) (typ byte, payload []byte, size int, err error) {
	if len(b) < 4 {
		if allZero(b) {
			return 0, nil, 0, errEndOfLog
		}
		return 0, nil, 0, fmt.Errorf("short frame header (%d bytes)", len(b))
	}
	n := binary.LittleEndian.Uint32(b[:4])
	if n == 0 {
		return 0, nil, 0, errEndOfLog
	}
	if len(b) < frameHeader {
		return 0, nil, 0, fmt.Errorf("short frame header (%d bytes)", len(b))
	}
	if n > maxFrame {
		return 0, nil, 0, fmt.Errorf("frame length %d exceeds %d", n, maxFrame)
	}
	if uint64(len(b)-frameHeader) < uint64(n) {
		return 0, nil, 0, fmt.Errorf("frame of %d bytes cut short at %d", n, len(b)-frameHeader)
	}
	body := b[frameHeader : frameHeader+int(n)]
	var g [8]byte
	binary.LittleEndian.PutUint64(g[:], gen)
	if crc32.Update(crc32.Checksum(g[:], crcTable), crcTable, body) != binary.LittleEndian.Uint32(b[4:8]) {
		return 0, nil, 0, errors.New("checksum mismatch")
	}
	switch body[0] {
	case frameRecord, frameMeta, frameEnd:
	default:
		return 0, nil, 0, fmt.Errorf("unknown frame type %d", body[0])
	}
	return body[0], body[1:], frameHeader + int(n), nil
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// image is the store's content: the latest encoded record per key and the
// latest encoded metadata. Encoded bytes are never modified once stored.
type image struct {
	recs map[string][]byte
	meta []byte
}

func newImage() *image { return &image{recs: make(map[string][]byte)} }

// apply adds one decoded frame to the image.
func (im *image) apply(typ byte, payload []byte) error {
	switch typ {
	case frameRecord:
		key, err := recordKey(payload)
		if err != nil {
			return err
		}
		im.recs[key] = payload
	case frameMeta:
		im.meta = payload
	}
	return nil
}

// recordKey extracts the key of an encoded record.
func recordKey(payload []byte) (string, error) {
	var k struct {
		Key *string `json:"key"`
	}
	if err := json.Unmarshal(payload, &k); err != nil {
		return "", fmt.Errorf("record does not decode: %w", err)
	}
	if k.Key == nil {
		return "", errors.New("record has no key")
	}
	return *k.Key, nil
}

// replayLog applies the frames of log file path (generation gen) to im. It
// returns the offset where the valid frames end, and, if the frames end
// with damage rather than a zero length or the end of the file, what the
// damage is.
func replayLog(path string, gen uint64, im *image) (end int64, damage error, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, nil, err
	}
	off := 0
	for off < len(b) {
		typ, payload, size, ferr := decodeFrame(b[off:], gen)
		if errors.Is(ferr, errEndOfLog) {
			return int64(off), nil, nil
		}
		if ferr == nil && typ == frameEnd {
			ferr = errors.New("end-of-snapshot frame in a log")
		}
		if ferr == nil {
			ferr = im.apply(typ, payload)
		}
		if ferr != nil {
			return int64(off), fmt.Errorf("at offset %d of %d: %w", off, len(b), ferr), nil
		}
		off += size
	}
	return int64(off), nil, nil
}

// readSnapshot loads the snapshot in dir, if there is one, into im and
// returns the first log generation it does not cover (1 without one) and
// its size.
func readSnapshot(dir string, im *image) (gen uint64, size int64, err error) {
	path := filepath.Join(dir, snapName)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 1, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	if len(b) < 16 || [8]byte(b[:8]) != snapMagic {
		return 0, 0, fmt.Errorf("kv: %s is not a snapshot of this version (bad header)", path)
	}
	gen = binary.LittleEndian.Uint64(b[8:16])
	off, count := 16, uint64(0)
	for {
		typ, payload, n, ferr := decodeFrame(b[off:], gen)
		if ferr == nil && typ == frameEnd {
			if len(payload) != 8 || binary.LittleEndian.Uint64(payload) != count {
				ferr = errors.New("end frame does not match the frame count")
			} else if off+n != len(b) {
				ferr = errors.New("data after the end frame")
			} else {
				return gen, int64(len(b)), nil
			}
		}
		if ferr == nil {
			ferr = im.apply(typ, payload)
		}
		if ferr != nil {
			if errors.Is(ferr, errEndOfLog) {
				ferr = errors.New("no end frame")
			}
			return 0, 0, fmt.Errorf("kv: snapshot %s is damaged at offset %d: %w; the node cannot start from this directory (restore it, or remove the directory and let the node resynchronise from its replicas)", path, off, ferr)
		}
		off += n
		count++
	}
}

// writeSnapshot writes im as the snapshot covering logs before gen: to a
// temporary file, fsynced, renamed over the old one, then the directory is
// fsynced. It returns the snapshot's size.
func writeSnapshot(dir string, gen uint64, im *image) (int64, error) {
	tmp := filepath.Join(dir, snapName+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp) // after a successful rename there is nothing to remove
	w := bufio.NewWriterSize(f, 256<<10)
	var hdr [16]byte
	copy(hdr[:8], snapMagic[:])
	binary.LittleEndian.PutUint64(hdr[8:], gen)
	size := int64(len(hdr))
	_, err = w.Write(hdr[:])
	var buf []byte
	count := uint64(0)
	put := func(typ byte, payload []byte) {
		if err != nil {
			return
		}
		buf = appendFrame(buf[:0], gen, typ, payload)
		size += int64(len(buf))
		_, err = w.Write(buf)
		count++
	}
	if im.meta != nil {
		put(frameMeta, im.meta)
	}
	keys := make([]string, 0, len(im.recs))
	for k := range im.recs {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic files
	for _, k := range keys {
		put(frameRecord, im.recs[k])
	}
	var c [8]byte
	binary.LittleEndian.PutUint64(c[:], count)
	put(frameEnd, c[:])
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, snapName))
	}
	if err == nil {
		err = syncDir(dir)
	}
	return size, err
}

func logName(gen uint64) string { return fmt.Sprintf("log-%016x", gen) }

// listLogs returns the log generations in dir, in order.
func listLogs(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var gens []uint64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, "log-") || len(name) != 4+16 {
			continue
		}
		g, err := strconv.ParseUint(name[4:], 16, 64)
		if err != nil {
			continue
		}
		gens = append(gens, g)
	}
	sort.Slice(gens, func(i, j int) bool { return gens[i] < gens[j] })
	return gens, nil
}

// syncDir fsyncs a directory, making creations, renames and removals in it
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeZeros extends f from off by n zero bytes, written from z, a zeroed
// buffer of any length (for a direct log it, off and n must be
// block-aligned).
func writeZeros(f *os.File, off, n int64, z []byte) error {
	for n > 0 {
		k := min(n, int64(len(z)))
		if _, err := f.WriteAt(z[:k], off); err != nil {
			return err
		}
		off += k
		n -= k
	}
	return nil
}

// readAllFrames is used by tests and the fuzzer: it decodes frames of one
// generation from r until the end, returning the payloads of valid frames
// and where they stopped.
func readAllFrames(r io.Reader, gen uint64) (types []byte, payloads [][]byte, end int, damage error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, nil, 0, err
	}
	for end < len(b) {
		typ, p, n, ferr := decodeFrame(b[end:], gen)
		if errors.Is(ferr, errEndOfLog) {
			return types, payloads, end, nil
		}
		if ferr != nil {
			return types, payloads, end, ferr
		}
		types = append(types, typ)
		payloads = append(payloads, p)
		end += n
	}
	return types, payloads, end, nil
}
