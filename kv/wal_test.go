package kv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/shoal-p2p/shoal/id"
)

func testRecord(key string, ver uint64, val string) Record {
	return Record{Key: key, Promised: Ballot{Round: ver, Node: id.ID{1}}, Accepted: Ballot{Round: ver, Node: id.ID{1}},
		State: State{Version: ver, Value: []byte(val), Recent: []ReqVer{{Req: fmt.Sprintf("req-%d", ver), Ver: ver}}}}
}

func openLogT(t *testing.T, dir string, cfg LogConfig) *LogStore {
	t.Helper()
	s, err := OpenLog(dir, cfg)
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	return s
}

// loadMap loads a store into key -> record.
func loadMap(t *testing.T, s Store) (map[string]Record, Meta) {
	t.Helper()
	recs, meta, err := s.Load()
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	m := map[string]Record{}
	for _, r := range recs {
		m[r.Key] = r
	}
	return m, meta
}

func sameRecord(a, b Record) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func TestLogStoreReopen(t *testing.T) {
	dir := t.TempDir()
	s := openLogT(t, dir, LogConfig{})
	want := map[string]Record{}
	for i := range 50 {
		r := testRecord(fmt.Sprintf("k%d", i%20), uint64(i+1), fmt.Sprintf("v%d", i))
		if err := s.Put(r); err != nil {
			t.Fatal(err)
		}
		want[r.Key] = r
	}
	meta := Meta{Init: []span{{Lo: id.ID{1}, Hi: id.ID{2}}}, MaxSeen: 3}
	if err := s.PutMeta(meta); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(testRecord("late", 1, "x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("put after close: %v, want ErrClosed", err)
	}
	s = openLogT(t, dir, LogConfig{})
	defer s.Close()
	got, gotMeta := loadMap(t, s)
	if len(got) != len(want) {
		t.Fatalf("reopened store has %d records, want %d", len(got), len(want))
	}
	for k, w := range want {
		if !sameRecord(got[k], w) {
			t.Errorf("%s: got %+v, want %+v", k, got[k], w)
		}
	}
	if gotMeta.MaxSeen != 3 || len(gotMeta.Init) != 1 {
		t.Errorf("meta: got %+v, want %+v", gotMeta, meta)
	}
}

func TestLogStoreDirLocked(t *testing.T) {
	dir := t.TempDir()
	s := openLogT(t, dir, LogConfig{})
	defer s.Close()
	if s2, err := OpenLog(dir, LogConfig{}); err == nil {
		s2.Close()
		t.Fatal("a second store opened the same directory")
	}
}

// lastLog returns the path of the newest log file in dir that has data.
func lastLog(t *testing.T, dir string) string {
	t.Helper()
	gens, err := listLogs(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(gens) - 1; i >= 0; i-- {
		p := filepath.Join(dir, logName(gens[i]))
		if _, _, end, _ := readLogFile(t, p, gens[i]); end > 0 {
			return p
		}
	}
	t.Fatal("no log with data")
	return ""
}

func readLogFile(t *testing.T, path string, gen uint64) ([]byte, [][]byte, int, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return readAllFrames(f, gen)
}

// TestLogStoreTornTail: a crash in the middle of a group write leaves part
// of the last frame (or garbage) at the end of the log. The store opens
// with every whole frame before it, drops the torn one, and appends after
// the cut.
func TestLogStoreTornTail(t *testing.T) {
	for _, tc := range []struct {
		name string
		tear func(b []byte, lastStart int) []byte
	}{
		{"cut-in-payload", func(b []byte, at int) []byte { return b[:len(b)-7] }},
		{"cut-in-header", func(b []byte, at int) []byte { return b[:at+5] }},
		{"flipped-byte", func(b []byte, at int) []byte { b[len(b)-3] ^= 0xff; return b }},
		{"garbage-after", func(b []byte, at int) []byte { return append(b, 0x13, 0, 0, 0, 1, 2, 3, 4, 9) }},
		{"zeroed-payload", func(b []byte, at int) []byte {
			for i := at + frameHeader; i < len(b); i++ {
				b[i] = 0
			}
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openLogT(t, dir, LogConfig{})
			for i := 1; i <= 5; i++ {
				if err := s.Put(testRecord(fmt.Sprintf("k%d", i), uint64(i), "v")); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
			path := lastLog(t, dir)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			gen := genOf(t, path)
			_, payloads, end, _ := readLogFile(t, path, gen)
			if len(payloads) != 5 {
				t.Fatalf("log holds %d frames, want 5", len(payloads))
			}
			b = b[:end]
			lastStart := end - (frameHeader + 1 + len(payloads[4]))
			torn := tc.tear(append([]byte(nil), b...), lastStart)
			if err := os.WriteFile(path, torn, 0o600); err != nil {
				t.Fatal(err)
			}

			s = openLogT(t, dir, LogConfig{})
			got, _ := loadMap(t, s)
			wantN := 4
			if tc.name == "garbage-after" {
				wantN = 5 // the last frame is whole; only what follows is cut
			}
			if len(got) != wantN {
				t.Fatalf("after a torn write: %d records, want %d", len(got), wantN)
			}
			if tc.name != "garbage-after" && s.Stats().TornBytes == 0 {
				t.Error("TornBytes = 0 after cutting a torn frame")
			}
			if _, ok := got["k5"]; ok != (wantN == 5) {
				t.Fatalf("k5 present = %v, want %v", ok, wantN == 5)
			}
			// Writes continue, and survive another reopen with the cut
			// frames gone for good.
			if err := s.Put(testRecord("k6", 6, "v")); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s = openLogT(t, dir, LogConfig{})
			defer s.Close()
			got, _ = loadMap(t, s)
			if len(got) != wantN+1 || got["k6"].State.Version != 6 {
				t.Fatalf("after writing on: %d records (k6 %+v), want %d", len(got), got["k6"], wantN+1)
			}
			if s.Stats().TornBytes != 0 {
				t.Errorf("second open cut %d more bytes", s.Stats().TornBytes)
			}
		})
	}
}

func genOf(t *testing.T, path string) uint64 {
	t.Helper()
	var g uint64
	if _, err := fmt.Sscanf(filepath.Base(path), "log-%016x", &g); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestLogStoreDamageNotAtTail: damage in a log that is not the last one is
// not a torn write; the store refuses to open rather than drop or serve it.
func TestLogStoreDamageNotAtTail(t *testing.T) {
	dir := t.TempDir()
	s := openLogT(t, dir, LogConfig{})
	if err := s.Put(testRecord("a", 1, "v")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	first := lastLog(t, dir)
	s = openLogT(t, dir, LogConfig{}) // a new generation
	if err := s.Put(testRecord("b", 1, "v")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	b, _ := os.ReadFile(first)
	b[frameHeader+3] ^= 0x40
	os.WriteFile(first, b, 0o600)
	if s, err := OpenLog(dir, LogConfig{}); err == nil {
		s.Close()
		t.Fatal("opened a store whose older log is damaged")
	}
}

// TestLogStoreCompaction: after many writes the store writes snapshots and
// drops old logs; reopening (snapshot plus the logs after it) gives the
// latest record of every key, including writes made while a snapshot was
// being written.
func TestLogStoreCompaction(t *testing.T) {
	dir := t.TempDir()
	cfg := LogConfig{CompactBytes: 8 << 10, PreallocBytes: 4 << 10}
	s := openLogT(t, dir, cfg)
	want := map[string]Record{}
	for i := range 600 {
		r := testRecord(fmt.Sprintf("k%d", i%37), uint64(i+1), fmt.Sprintf("value-%d", i))
		if err := s.Put(r); err != nil {
			t.Fatal(err)
		}
		want[r.Key] = r
	}
	if err := s.PutMeta(Meta{MaxSeen: 2}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := s.Stats().Snapshots; n < 2 {
		t.Fatalf("%d snapshots written, want several", n)
	}
	if _, err := os.Stat(filepath.Join(dir, snapName)); err != nil {
		t.Fatal(err)
	}
	gens, _ := listLogs(dir)
	if len(gens) > 3 {
		t.Errorf("%d logs left after compaction: %v", len(gens), gens)
	}
	check := func(s *LogStore) {
		got, meta := loadMap(t, s)
		if len(got) != len(want) || meta.MaxSeen != 2 {
			t.Fatalf("reopened: %d records (meta %+v), want %d", len(got), meta, len(want))
		}
		for k, w := range want {
			if !sameRecord(got[k], w) {
				t.Fatalf("%s: got %+v, want %+v", k, got[k], w)
			}
		}
	}
	s = openLogT(t, dir, cfg)
	check(s)
	// A compaction interrupted after the rename but before the old logs
	// were removed: a stale log older than the snapshot is ignored.
	stale := filepath.Join(dir, logName(0))
	os.WriteFile(stale, appendFrame(nil, 0, frameRecord, mustJSON(t, testRecord("k1", 1, "stale"))), 0o600)
	s.Close()
	s = openLogT(t, dir, cfg)
	defer s.Close()
	check(s)
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale log not removed: %v", err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLogStoreSharedSync: Puts from many goroutines at once are written in
// far fewer groups (fdatasyncs) than Puts, and all are durable.
func TestLogStoreSharedSync(t *testing.T) {
	dir := t.TempDir()
	s := openLogT(t, dir, LogConfig{})
	const writers, each = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				errs <- s.Put(testRecord(fmt.Sprintf("w%d-%d", w, i), 1, "v"))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	t.Logf("%d frames in %d groups", st.Frames, st.Groups)
	if st.Frames != writers*each || st.Groups >= st.Frames {
		t.Fatalf("%d frames in %d groups: writers did not share syncs", st.Frames, st.Groups)
	}
	s.Close()
	s = openLogT(t, dir, LogConfig{})
	defer s.Close()
	if got, _ := loadMap(t, s); len(got) != writers*each {
		t.Fatalf("%d records after reopening, want %d", len(got), writers*each)
	}
}

// TestLogStoreAppendOrder: writes of one key are applied in the order
// Append was called, whatever order their waits run in.
func TestLogStoreAppendOrder(t *testing.T) {
	dir := t.TempDir()
	s := openLogT(t, dir, LogConfig{})
	var waits []func() error
	for v := uint64(1); v <= 100; v++ {
		waits = append(waits, s.Append(testRecord("k", v, "v")))
	}
	for i := len(waits) - 1; i >= 0; i-- {
		if err := waits[i](); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = openLogT(t, dir, LogConfig{})
	defer s.Close()
	if got, _ := loadMap(t, s); got["k"].State.Version != 100 {
		t.Fatalf("k at version %d after reopening, want 100", got["k"].State.Version)
	}
}

// TestLogStoreMigratesBolt: a data directory of the previous version (a
// bbolt file) opens with its records and metadata, and the bbolt file is
// gone once the snapshot holds them.
func TestLogStoreMigratesBolt(t *testing.T) {
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, boltName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Record{}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketRecords)
		if err != nil {
			return err
		}
		for i := range 10 {
			r := testRecord(fmt.Sprintf("k%d", i), uint64(i+1), "old")
			want[r.Key] = r
			if err := b.Put([]byte(r.Key), mustJSON(t, r)); err != nil {
				return err
			}
		}
		m, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		return m.Put(keyMeta, mustJSON(t, Meta{MaxSeen: 3}))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s := openLogT(t, dir, LogConfig{})
	got, meta := loadMap(t, s)
	if len(got) != 10 || meta.MaxSeen != 3 || !sameRecord(got["k3"], want["k3"]) {
		t.Fatalf("migrated: %d records, meta %+v, k3 %+v", len(got), meta, got["k3"])
	}
	if _, err := os.Stat(filepath.Join(dir, boltName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("bbolt file still there after migration: %v", err)
	}
	if err := s.Put(testRecord("k3", 9, "new")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openLogT(t, dir, LogConfig{})
	defer s.Close()
	if got, _ := loadMap(t, s); len(got) != 10 || got["k3"].State.Version != 9 {
		t.Fatalf("after migration and a write: %d records, k3 at v%d", len(got), got["k3"].State.Version)
	}
}

// FuzzDecodeFrame: the frame decoder never panics on garbage, accepts only
// what it can re-encode identically, and round-trips what appendFrame wrote.
func FuzzDecodeFrame(f *testing.F) {
	f.Add(appendFrame(nil, 7, frameRecord, []byte(`{"key":"a"}`)), uint64(7))
	f.Add(appendFrame(nil, 1, frameMeta, []byte(`{}`)), uint64(2))
	f.Add([]byte{0, 0, 0, 0, 1, 2}, uint64(0))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1}, uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, gen uint64) {
		typ, payload, n, err := decodeFrame(b, gen)
		if err == nil {
			if n > len(b) || !bytes.Equal(appendFrame(nil, gen, typ, payload), b[:n]) {
				t.Fatalf("accepted a frame that does not re-encode to its bytes")
			}
			if _, _, _, err := decodeFrame(b[:n], gen+1); err == nil {
				t.Fatalf("a frame passed under another generation")
			}
		}
		// Round trip of the input as a payload.
		enc := appendFrame(nil, gen, frameRecord, b)
		typ, payload, n, err = decodeFrame(enc, gen)
		if err != nil || typ != frameRecord || n != len(enc) || !bytes.Equal(payload, b) {
			t.Fatalf("round trip failed: %v", err)
		}
		// Any strict prefix is damage or the end, never a frame.
		for cut := 0; cut < len(enc); cut += 1 + len(enc)/17 {
			if _, _, _, err := decodeFrame(enc[:cut], gen); err == nil {
				t.Fatalf("a prefix of %d of %d bytes decoded", cut, len(enc))
			}
		}
	})
}

// FuzzReplayLog: replaying arbitrary log contents never panics, and
// whatever it accepts is a prefix of whole frames.
func FuzzReplayLog(f *testing.F) {
	good := appendFrame(appendFrame(nil, 3, frameRecord, []byte(`{"key":"a"}`)), 3, frameMeta, []byte(`{"max_seen":2}`))
	f.Add(good)
	f.Add(good[:len(good)-2])
	f.Add(append(append([]byte(nil), good...), 0, 0, 0, 0, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), logName(3))
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		im := newImage()
		end, _, err := replayLog(path, 3, im)
		if err != nil {
			t.Fatal(err)
		}
		if end < 0 || end > int64(len(b)) {
			t.Fatalf("end %d outside [0, %d]", end, len(b))
		}
	})
}

// TestLogStoreDirectWrites: with direct writes (the default where the file
// system allows O_DIRECT) and with buffered ones, groups of every size —
// many small ones sharing a block, records larger than a block, writes that
// pass the preallocated end — all come back after a reopen, and writing
// goes on in the next log generation.
func TestLogStoreDirectWrites(t *testing.T) {
	ring, ringErr := newURing()
	if ring != nil {
		ring.close()
	}
	modes := []struct {
		name     string
		buffered bool
		pwrite   bool
	}{{"direct-io_uring", false, false}, {"direct-pwrite", false, true}, {"buffered", true, false}}
	for _, m := range modes {
		buffered := m.buffered
		t.Run(m.name, func(t *testing.T) {
			dir := t.TempDir()
			probe, err := openDirect(filepath.Join(dir, "probe"))
			if err != nil {
				t.Fatal(err)
			}
			canDirect := probe != nil
			if probe != nil {
				probe.Close()
			}
			// Extend often, and compact (a new log file, a new probe
			// write) a few times.
			cfg := LogConfig{Buffered: buffered, PWrite: m.pwrite, PreallocBytes: 4096, CompactBytes: 64 << 10}
			s := openLogT(t, dir, cfg)
			if want := canDirect && !buffered; s.direct != want {
				t.Fatalf("direct = %v, want %v (O_DIRECT possible here: %v)", s.direct, want, canDirect)
			}
			if want := s.direct && !m.pwrite && ringErr == nil && !inMemoryFS(dir); (s.ring != nil) != want {
				t.Fatalf("writing through io_uring = %v, want %v (io_uring here: %v; in memory: %v)", s.ring != nil, want, ringErr, inMemoryFS(dir))
			}
			wantWrites := "pwrite"
			switch {
			case !s.direct:
				wantWrites = "buffered"
			case s.ring != nil:
				wantWrites = "io_uring"
			}
			if got := s.Stats().Writes; got != wantWrites {
				t.Fatalf("Stats().Writes = %q, want %q", got, wantWrites)
			}
			want := map[string]Record{}
			sizes := []int{1, 40, 1300, 4000, 4096, 9000, 17}
			for i := range 120 {
				r := testRecord(fmt.Sprintf("k%d", i%37), uint64(i+1), string(bytes.Repeat([]byte{'a' + byte(i%26)}, sizes[i%len(sizes)])))
				if err := s.Put(r); err != nil {
					t.Fatal(err)
				}
				want[r.Key] = r
			}
			// Concurrent writers: groups of several frames.
			var wg sync.WaitGroup
			var mu sync.Mutex
			for w := range 8 {
				wg.Go(func() {
					for i := range 20 {
						r := testRecord(fmt.Sprintf("w%d-%d", w, i), 1, string(bytes.Repeat([]byte{'x'}, 100*(i+1))))
						if err := s.Put(r); err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						want[r.Key] = r
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			for round := range 2 {
				s = openLogT(t, dir, cfg)
				got, _ := loadMap(t, s)
				if len(got) != len(want) {
					t.Fatalf("round %d: reopened store has %d records, want %d", round, len(got), len(want))
				}
				for k, w := range want {
					if !sameRecord(got[k], w) {
						t.Fatalf("round %d: %s differs after reopen", round, k)
					}
				}
				if s.Stats().TornBytes != 0 {
					t.Fatalf("round %d: a clean close left %d torn bytes", round, s.Stats().TornBytes)
				}
				r := testRecord(fmt.Sprintf("after-%d", round), 1, "more")
				if err := s.Put(r); err != nil {
					t.Fatal(err)
				}
				want[r.Key] = r
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestLogStoreNoIOURingEnv: SHOAL_NO_IO_URING makes the log use pwrite,
// and it still works.
func TestLogStoreNoIOURingEnv(t *testing.T) {
	t.Setenv(NoIOURingEnv, "1")
	dir := t.TempDir()
	s := openLogT(t, dir, LogConfig{})
	if s.ring != nil {
		t.Fatalf("%s is set and the log writes through io_uring", NoIOURingEnv)
	}
	putCloseReopen(t, s, dir)
}

// TestLogStoreInMemoryPWrite: a log on tmpfs (where O_DIRECT is allowed
// on recent kernels) writes with pwrite, not through io_uring, and keeps
// its records.
func TestLogStoreInMemoryPWrite(t *testing.T) {
	if !inMemoryFS("/dev/shm") {
		t.Skip("no tmpfs at /dev/shm on this machine")
	}
	dir, err := os.MkdirTemp("/dev/shm", "shoal-kv-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := openLogT(t, dir, LogConfig{})
	if s.ring != nil {
		t.Fatalf("a log on tmpfs writes through io_uring (Stats().Writes = %q)", s.Stats().Writes)
	}
	if w := s.Stats().Writes; s.direct && w != "pwrite" {
		t.Fatalf("Stats().Writes = %q on tmpfs with direct writes, want pwrite", w)
	}
	putCloseReopen(t, s, dir)
}

// putCloseReopen puts one record through s, closes it, and checks that the
// log reopened from dir has it.
func putCloseReopen(t *testing.T, s *LogStore, dir string) {
	t.Helper()
	r := testRecord("k", 1, "v")
	if err := s.Put(r); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openLogT(t, dir, LogConfig{})
	if got, _ := loadMap(t, s); !sameRecord(got["k"], r) {
		t.Fatalf("after reopen: %+v, want %+v", got["k"], r)
	}
}

// TestLogStoreLazy: a lazy write waits for LazyDelay unless a write that
// cannot wait comes, which carries it in its own group; order is kept.
func TestLogStoreLazy(t *testing.T) {
	dir := t.TempDir()
	s := openLogT(t, dir, LogConfig{LazyDelay: time.Hour})
	lazyDone := make(chan error, 1)
	wait := s.AppendLazy(testRecord("k", 1, "lazy"))
	go func() { lazyDone <- wait() }()
	select {
	case err := <-lazyDone:
		t.Fatalf("a lazy write was synced on its own (err %v) with an hour to wait", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := s.Put(testRecord("k", 2, "now")); err != nil {
		t.Fatal(err)
	}
	if err := <-lazyDone; err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Groups != 1 || st.Frames != 2 {
		t.Fatalf("stats %+v: want the lazy frame carried in the other write's group", st)
	}
	s.Close()
	s = openLogT(t, dir, LogConfig{LazyDelay: 20 * time.Millisecond})
	defer s.Close()
	got, _ := loadMap(t, s)
	if got["k"].State.Version != 2 {
		t.Fatalf("k at version %d after reopen, want 2 (order kept)", got["k"].State.Version)
	}
	// Alone, a lazy write goes out after LazyDelay.
	if err := s.AppendLazy(testRecord("j", 1, "alone"))(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkLogStorePut: one caller's durable Puts of a 1.2 KB record (a
// steady key's accept), with direct writes and with buffered ones:
//
//	go test -run '^$' -bench LogStorePut ./kv
func BenchmarkLogStorePut(b *testing.B) {
	for _, buffered := range []bool{false, true} {
		b.Run(fmt.Sprintf("buffered=%v", buffered), func(b *testing.B) {
			dir := b.TempDir()
			s, err := OpenLog(dir, LogConfig{Buffered: buffered})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if !buffered && !s.direct {
				b.Skip("this file system refuses O_DIRECT")
			}
			r := testRecord("bench", 1, string(bytes.Repeat([]byte{'v'}, 1100)))
			b.SetBytes(1200)
			cpu0 := processCPU()
			n := 0
			for i := 0; b.Loop(); i++ {
				r.State.Version = uint64(i + 1)
				if err := s.Put(r); err != nil {
					b.Fatal(err)
				}
				n++
			}
			if cpu := processCPU() - cpu0; cpu > 0 {
				b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/op")
			}
		})
	}
}

// BenchmarkLogStoresOneDisk: k log stores in one directory (one disk), each
// making one durable Put at the same moment, the way a Put's owner and
// replica write at once when nodes share a disk (as in shoal bench kv). One
// op is the k writes; ns/op is the time until the last is durable:
//
//	go test -run '^$' -bench LogStoresOneDisk ./kv
func BenchmarkLogStoresOneDisk(b *testing.B) {
	for _, k := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("stores=%d", k), func(b *testing.B) {
			stores := make([]*LogStore, k)
			for i := range stores {
				s, err := OpenLog(filepath.Join(b.TempDir(), fmt.Sprint(i)), LogConfig{})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				stores[i] = s
			}
			r := testRecord("bench", 1, string(bytes.Repeat([]byte{'v'}, 300)))
			errs := make(chan error, k)
			n := 0
			for b.Loop() {
				n++
				for _, s := range stores {
					rec := r
					rec.State.Version = uint64(n)
					go func() { errs <- s.Put(rec) }()
				}
				for range k {
					if err := <-errs; err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(k*n)/b.Elapsed().Seconds(), "writes/s")
		})
	}
}
