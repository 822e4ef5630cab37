package kv

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unsafe"
)

// LogConfig configures a LogStore.
type LogConfig struct {
	// CompactBytes is how much log may accumulate after the snapshot
	// before the store writes a new snapshot and drops the old logs: at
	// least this, and at least the size of the last snapshot (so
	// compaction costs at most one snapshot per snapshot's worth of log).
	// Default 16 MiB. Smaller saves disk and start-up replay; larger saves
	// snapshot writes.
	CompactBytes int64
	// PreallocBytes is how far ahead of the written end the log file is
	// extended with zeros, so that most group commits overwrite allocated
	// blocks and their fdatasync need not also commit a change of the file's
	// size. Default 1 MiB.
	PreallocBytes int64
	// Buffered turns off direct writes: by default, where the file system
	// allows it (Linux, not tmpfs), the log is opened O_DIRECT|O_DSYNC and
	// each group is one synchronous write of whole 4 KiB blocks instead of
	// a write and an fdatasync. Buffered keeps the page cache and fdatasync.
	Buffered bool
	// PWrite makes direct writes plain pwrite calls. By default, on Linux,
	// they go through a small io_uring (see uring), so that the writer
	// waits without holding one of the Go scheduler's Ps and the node's
	// other goroutines keep running; where io_uring is missing or refused,
	// or SHOAL_NO_IO_URING is set in the environment, the log uses pwrite
	// anyway.
	PWrite bool
	// LazyDelay is how long a lazy write (AppendLazy) may wait for another
	// write to share its sync with. Default 5ms.
	LazyDelay time.Duration
	// Logger, nil to discard.
	Logger *slog.Logger
}

// NoIOURingEnv names the environment variable that, set to anything,
// makes every log use pwrite instead of io_uring (LogConfig.PWrite).
const NoIOURingEnv = "SHOAL_NO_IO_URING"

// DefaultLogConfig returns the defaults.
func DefaultLogConfig() LogConfig {
	return LogConfig{CompactBytes: 16 << 20, PreallocBytes: 1 << 20, LazyDelay: 5 * time.Millisecond}
}

// LogStore is a Store in a directory: a write-ahead log with group commit,
// compacted now and then into a snapshot.
//
// Writes are appended to the current log file by one writer goroutine.
// Writes submitted while it is busy (writing or in fdatasync) form the next
// group: one write and one fdatasync for all of them. A write is acknowledged
// (Put returns, Append's wait returns nil) only once its group's fdatasync
// has returned. Every frame carries a checksum; at open, a last log that ends
// in a damaged frame (a crash in the middle of a group write) is cut back to
// its last whole frame, which can only drop writes nobody was told were
// durable. Damage anywhere else is reported, never served.
//
// When the logs since the snapshot outgrow LogConfig.CompactBytes, the writer
// starts a new log generation and a background goroutine writes the image of
// everything before it as the new snapshot (temporary file, fsync, rename,
// directory fsync), then removes the logs it covers. Load is the snapshot
// plus the replay of the logs after it.
type LogStore struct {
	dir  string
	cfg  LogConfig
	log  *slog.Logger
	lock *os.File

	mu      sync.Mutex
	cur     *group // writes waiting for the writer
	err     error  // sticky: the first write or sync failure
	closing bool
	wake    chan struct{}
	done    chan struct{}

	imMu sync.Mutex
	im   *image // as of the last synced group

	// Owned by the writer goroutine.
	f        *os.File
	direct   bool   // f is O_DIRECT|O_DSYNC: whole aligned blocks, no fdatasync
	ring     *uring // direct: its writes go through io_uring; nil: pwrite
	noRing   bool   // io_uring was refused or failed: pwrite from now on
	tail     []byte // direct: the written bytes of the block holding off
	abuf     []byte // direct: block-aligned scratch for one group's write
	gbuf     []byte // the frames of the group being written, reused
	gen      uint64
	off      int64 // end of the written frames in f
	alloc    int64 // size of f (written frames plus preallocated zeros)
	logBytes int64 // bytes in the logs the snapshot does not cover
	snapSize int64
	snapping bool
	snapWG   sync.WaitGroup
	snapRes  chan snapResult
	stats    LogStats
	statsMu  sync.Mutex
}

type snapResult struct {
	gen  uint64
	size int64
	err  error
}

// LogStats counts a LogStore's work since it was opened.
type LogStats struct {
	Groups    uint64 // group commits (one write and one fdatasync each)
	Frames    uint64 // records and metadata written
	Bytes     uint64 // bytes written to logs
	Snapshots uint64 // snapshots written
	// TornBytes is what the open cut from the end of the last log: a group
	// write a crash interrupted (never acknowledged).
	TornBytes int64
	// Writes is how the log writes: "io_uring" (direct writes through
	// io_uring), "pwrite" (direct writes) or "buffered" (write and
	// fdatasync).
	Writes string
}

// group is one group commit: the frames to write and who waits for them.
type group struct {
	frames []pendingFrame
	done   chan struct{}
	err    error
	// lazy: every frame so far may wait up to LazyDelay (since first) for
	// a group that is needed now, to share its write.
	lazy  bool
	first time.Time
}

type pendingFrame struct {
	typ     byte
	key     string
	payload []byte
}

// OpenLog opens or creates a LogStore in dir. A directory holding the
// previous version's bbolt file (kv.db) and no log is migrated: its records
// become the first snapshot, and kv.db is removed once that is durable.
func OpenLog(dir string, cfg LogConfig) (*LogStore, error) {
	d := DefaultLogConfig()
	if cfg.CompactBytes <= 0 {
		cfg.CompactBytes = d.CompactBytes
	}
	if cfg.PreallocBytes <= 0 {
		cfg.PreallocBytes = d.PreallocBytes
	}
	if cfg.LazyDelay <= 0 {
		cfg.LazyDelay = d.LazyDelay
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("kv: data directory %s: %w", dir, err)
	}
	lock, err := lockDir(filepath.Join(dir, lockName))
	if err != nil {
		return nil, fmt.Errorf("kv: %s: %w (is another node using this data directory?)", dir, err)
	}
	s := &LogStore{dir: dir, cfg: cfg, log: log.With("subsys", "kv-log"), lock: lock, wake: make(chan struct{}, 1),
		done: make(chan struct{}), snapRes: make(chan snapResult, 1), cur: &group{done: make(chan struct{})}}
	if err := s.open(); err != nil {
		unlockDir(lock)
		if s.f != nil {
			s.f.Close()
		}
		return nil, err
	}
	go s.writer()
	return s, nil
}

// open loads the snapshot and the logs, cuts a torn tail, and starts a new
// log generation.
func (s *LogStore) open() error {
	if err := s.migrateBolt(); err != nil {
		return err
	}
	im := newImage()
	base, snapSize, err := readSnapshot(s.dir, im)
	if err != nil {
		return err
	}
	gens, err := listLogs(s.dir)
	if err != nil {
		return fmt.Errorf("kv: list %s: %w", s.dir, err)
	}
	last := base
	for i, g := range gens {
		path := filepath.Join(s.dir, logName(g))
		if g < base {
			// Covered by the snapshot; left by a compaction interrupted
			// before it removed them.
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("kv: remove %s: %w", path, err)
			}
			continue
		}
		end, damage, err := replayLog(path, g, im)
		if err != nil {
			return fmt.Errorf("kv: read %s: %w", path, err)
		}
		st, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("kv: %w", err)
		}
		if damage != nil && i < len(gens)-1 {
			return fmt.Errorf("kv: log %s is damaged %v, and it is not the last log, so this is not an interrupted write: the node cannot start from this directory (restore it, or remove the directory and let the node resynchronise from its replicas)", path, damage)
		}
		if damage != nil || end < st.Size() {
			// The last log: cut what follows its last whole frame (a torn
			// group write, or preallocated zeros).
			if damage != nil {
				s.stats.TornBytes = st.Size() - end
				s.log.Warn("cut a torn write from the end of the log", "file", path, "kept", end, "dropped", st.Size()-end, "damage", damage)
			}
			if err := truncateSync(path, end); err != nil {
				return fmt.Errorf("kv: cut the torn end of %s: %w", path, err)
			}
		}
		s.logBytes += end
		last = g + 1
	}
	s.im = im
	s.snapSize = snapSize
	return s.startLog(max(last, base))
}

// startLog creates log generation gen and makes it the current one.
func (s *LogStore) startLog(gen uint64) error {
	path := filepath.Join(s.dir, logName(gen))
	var f *os.File
	var err error
	var alloc int64
	if !s.cfg.Buffered {
		if f, err = openDirect(path); err != nil {
			return fmt.Errorf("kv: create %s: %w", path, err)
		}
		if f != nil {
			// Some file systems accept O_DIRECT at open and refuse the
			// writes: try one zero block, and fall back if it fails.
			if werr := s.probeDirect(f); werr != nil {
				s.log.Info("the log's file system refuses direct writes; using buffered writes and fdatasync", "dir", s.dir, "err", werr)
				f.Close()
				f = nil
			} else {
				alloc = blockSize
			}
		}
	}
	direct := f != nil
	if f == nil {
		if f, err = os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600); err != nil {
			return fmt.Errorf("kv: create %s: %w", path, err)
		}
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		return fmt.Errorf("kv: sync %s: %w", s.dir, err)
	}
	if s.f != nil {
		s.f.Close()
	}
	s.f, s.gen, s.off, s.alloc, s.direct, s.tail = f, gen, 0, alloc, direct, s.tail[:0]
	mode := "buffered"
	if direct && s.ring != nil {
		mode = "io_uring"
	} else if direct {
		mode = "pwrite"
	}
	s.statsMu.Lock()
	s.stats.Writes = mode
	s.statsMu.Unlock()
	return nil
}

// probeDirect writes one zero block at the start of a new direct log,
// through the io_uring if there is one (setting it up on first use), and
// with pwrite if the ring is refused or its write fails: a kernel whose
// io_uring lacks the write operation, say, then never gets another.
func (s *LogStore) probeDirect(f *os.File) error {
	if s.ring == nil && !s.cfg.PWrite && !s.noRing {
		if inMemoryFS(s.dir) {
			s.noRing = true
			s.log.Debug("log writes use pwrite: the log is in memory (tmpfs), where a write does not wait for a device", "dir", s.dir)
		} else if ring, err := newURing(); err != nil {
			s.noRing = true
			s.log.Info("log writes use pwrite: io_uring is not available", "dir", s.dir, "err", err)
		} else {
			s.ring = ring
		}
	}
	if s.ring != nil {
		err := s.ring.pwrite(f, s.scratchZero(blockSize), 0)
		if err == nil {
			return nil
		}
		s.log.Info("log writes use pwrite: a write through io_uring failed", "dir", s.dir, "err", err)
		s.ring.close()
		s.ring, s.noRing = nil, true
	}
	_, err := f.WriteAt(s.scratchZero(blockSize), 0)
	return err
}

func truncateSync(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Load returns every record and the metadata.
func (s *LogStore) Load() ([]Record, Meta, error) {
	s.imMu.Lock()
	defer s.imMu.Unlock()
	var meta Meta
	if s.im.meta != nil {
		if err := json.Unmarshal(s.im.meta, &meta); err != nil {
			return nil, Meta{}, fmt.Errorf("kv: corrupt metadata in %s: %w", s.dir, err)
		}
	}
	recs := make([]Record, 0, len(s.im.recs))
	for k, b := range s.im.recs {
		var r Record
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, Meta{}, fmt.Errorf("kv: corrupt record %q in %s: %w", k, s.dir, err)
		}
		recs = append(recs, r)
	}
	return recs, meta, nil
}

// Append submits records for writing and returns a function that waits
// until they are durable. Writes are applied in the order Append is called,
// whatever order the waits return in: a caller that changes a record twice
// can submit both from one goroutine and wait elsewhere.
func (s *LogStore) Append(recs ...Record) (wait func() error) { return s.append(false, recs) }

// AppendLazy is Append for writes nobody is waiting on yet: they may wait
// up to LogConfig.LazyDelay to be written with the next write that cannot
// wait, so that both share one sync. Order with other appends is kept.
func (s *LogStore) AppendLazy(recs ...Record) (wait func() error) { return s.append(true, recs) }

func (s *LogStore) append(lazy bool, recs []Record) func() error {
	frames := make([]pendingFrame, len(recs))
	for i, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			return func() error { return fmt.Errorf("kv: encode record %q: %w", r.Key, err) }
		}
		frames[i] = pendingFrame{typ: frameRecord, key: r.Key, payload: b}
	}
	return s.submitLazy(frames, lazy)
}

// Put writes records durably; concurrent calls share one fdatasync.
func (s *LogStore) Put(recs ...Record) error { return s.Append(recs...)() }

// PutMeta writes the metadata durably.
func (s *LogStore) PutMeta(m Meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return s.submit([]pendingFrame{{typ: frameMeta, payload: b}})()
}

func (s *LogStore) submit(frames []pendingFrame) func() error { return s.submitLazy(frames, false) }

func (s *LogStore) submitLazy(frames []pendingFrame, lazy bool) func() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return func() error { return ErrClosed }
	}
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return func() error { return err }
	}
	g := s.cur
	if len(g.frames) == 0 {
		g.lazy, g.first = lazy, time.Now()
	} else if !lazy {
		g.lazy = false
	}
	g.frames = append(g.frames, frames...)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return func() error {
		<-g.done
		return g.err
	}
}

// Stats returns the store's counters.
func (s *LogStore) Stats() LogStats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return s.stats
}

// Close writes what was submitted, waits for a running snapshot and closes
// the files. Later writes fail with ErrClosed.
func (s *LogStore) Close() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		<-s.done
		return nil
	}
	s.closing = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	<-s.done
	s.snapWG.Wait()
	if s.ring != nil {
		s.ring.close()
	}
	err := s.f.Close()
	unlockDir(s.lock)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && s.err != nil && !errors.Is(s.err, ErrClosed) {
		err = s.err
	}
	return err
}

// writer writes groups until the store closes.
func (s *LogStore) writer() {
	defer close(s.done)
	for {
		s.mu.Lock()
		g := s.cur
		closing := s.closing
		empty := len(g.frames) == 0
		var linger time.Duration
		if !empty && g.lazy && !closing {
			linger = s.cfg.LazyDelay - time.Since(g.first)
		}
		if !empty && linger <= 0 {
			s.cur = &group{done: make(chan struct{})} // g is the writer's now
		}
		failed := s.err
		s.mu.Unlock()
		if linger > 0 {
			// Only lazy writes: give a write that cannot wait the chance
			// to come and carry them.
			t := time.NewTimer(linger)
			select {
			case <-s.wake:
			case <-t.C:
			case r := <-s.snapRes:
				s.snapDone(r)
			}
			t.Stop()
			continue
		}
		if empty {
			if closing {
				g.err = ErrClosed
				close(g.done)
				return
			}
			select {
			case <-s.wake:
			case r := <-s.snapRes:
				s.snapDone(r)
			}
			continue
		}
		if failed != nil {
			g.err = failed
			close(g.done)
			continue
		}
		err := s.writeGroup(g)
		if err != nil {
			s.log.Error("log write failed; the store refuses writes from now on", "dir", s.dir, "err", err)
			s.mu.Lock()
			s.err = fmt.Errorf("kv: write to the log in %s failed (writes are refused until the node restarts): %w", s.dir, err)
			err = s.err
			s.mu.Unlock()
		}
		g.err = err
		close(g.done)
		select {
		case r := <-s.snapRes:
			s.snapDone(r)
		default:
		}
		if err == nil {
			s.maybeCompact()
		}
	}
}

// writeGroup writes a group's frames at the end of the log and fdatasyncs.
func (s *LogStore) writeGroup(g *group) error {
	n := 0
	for _, f := range g.frames {
		n += frameHeader + 1 + len(f.payload)
	}
	buf := s.gbuf[:0]
	if cap(buf) < n {
		buf = make([]byte, 0, n)
	}
	for _, f := range g.frames {
		buf = appendFrame(buf, s.gen, f.typ, f.payload)
	}
	if cap(buf) <= maxKeptGroupBuf {
		s.gbuf = buf // nothing keeps the bytes once they are written
	}
	if s.direct {
		if err := s.writeDirect(buf); err != nil {
			return err
		}
	} else {
		if end := s.off + int64(len(buf)); end > s.alloc {
			// Extend with zeros now, in this group's write and sync, so
			// that the next groups overwrite allocated blocks.
			grow := end - s.alloc + s.cfg.PreallocBytes
			if err := writeZeros(s.f, s.alloc, grow, make([]byte, min(grow, 1<<20))); err != nil {
				return err
			}
			s.alloc += grow
		}
		if _, err := s.f.WriteAt(buf, s.off); err != nil {
			return err
		}
		if err := fdatasync(s.f); err != nil {
			return err
		}
	}
	s.off += int64(len(buf))
	s.logBytes += int64(len(buf))
	s.imMu.Lock()
	for _, f := range g.frames {
		if f.typ == frameRecord {
			s.im.recs[f.key] = f.payload
		} else {
			s.im.meta = f.payload
		}
	}
	s.imMu.Unlock()
	s.statsMu.Lock()
	s.stats.Groups++
	s.stats.Frames += uint64(len(g.frames))
	s.stats.Bytes += uint64(len(buf))
	s.statsMu.Unlock()
	return nil
}

// maxKeptGroupBuf bounds the group buffer kept between writes: a rare big
// group is not held on to.
const maxKeptGroupBuf = 1 << 20

// blockSize is the unit of direct writes: offsets, lengths and buffer
// addresses are multiples of it.
const blockSize = 4096

// writeDirect writes buf at s.off on an O_DIRECT|O_DSYNC log: it rewrites
// the block holding s.off with the bytes already in it (s.tail), then buf,
// then zeros up to the block boundary, in one write that is durable when it
// returns. The old bytes rewritten are the same as on disk, so a write torn
// at any sector leaves them intact. The file is first extended with zero
// blocks when the write would pass its end, as in buffered mode.
func (s *LogStore) writeDirect(buf []byte) error {
	start := s.off - int64(len(s.tail))
	n := roundUp(len(s.tail)+len(buf), blockSize)
	if end := start + int64(n); end > s.alloc {
		grow := int64(roundUp(int(end-s.alloc+s.cfg.PreallocBytes), blockSize))
		if err := writeZeros(s.f, s.alloc, grow, s.scratchZero(int(min(grow, 256<<10)))); err != nil {
			return err
		}
		s.alloc += grow
	}
	w := s.scratch(n)
	k := copy(w, s.tail)
	k += copy(w[k:], buf)
	clear(w[k:])
	if s.ring != nil {
		if err := s.ring.pwrite(s.f, w, start); err != nil {
			return err
		}
	} else if _, err := s.f.WriteAt(w, start); err != nil {
		return err
	}
	// The new tail: what of this write lies in its last, partial block.
	used := len(s.tail) + len(buf)
	s.tail = append(s.tail[:0], w[used/blockSize*blockSize:used]...)
	return nil
}

// scratch returns a block-aligned buffer of n bytes (n a multiple of
// blockSize), reused between groups.
func (s *LogStore) scratch(n int) []byte {
	if cap(s.abuf) < n {
		s.abuf = alignedBuf(n)
	}
	return s.abuf[:n]
}

// alignedBuf returns n zero bytes at a block-aligned address, as O_DIRECT
// wants.
func alignedBuf(n int) []byte {
	raw := make([]byte, n+blockSize)
	skip := int(-uintptr(unsafe.Pointer(unsafe.SliceData(raw))) & (blockSize - 1))
	return raw[skip : skip+n : skip+n]
}

// scratchZero is scratch(n) cleared.
func (s *LogStore) scratchZero(n int) []byte {
	z := s.scratch(n)
	clear(z)
	return z
}

func roundUp(n, to int) int { return (n + to - 1) / to * to }

// maybeCompact starts a snapshot when the logs have outgrown the limit: it
// starts a new log generation (so the snapshot covers exactly the older
// ones) and writes the image in the background.
func (s *LogStore) maybeCompact() {
	if s.snapping || s.logBytes < max(s.cfg.CompactBytes, s.snapSize) {
		return
	}
	next := s.gen + 1
	if err := s.startLog(next); err != nil {
		s.log.Error("cannot start a new log generation; compaction postponed", "err", err)
		s.logBytes = 0 // try again after another CompactBytes
		return
	}
	s.imMu.Lock()
	cp := &image{recs: make(map[string][]byte, len(s.im.recs)), meta: s.im.meta}
	for k, v := range s.im.recs {
		cp.recs[k] = v
	}
	s.imMu.Unlock()
	s.snapping = true
	s.logBytes = 0
	s.snapWG.Add(1)
	go func() {
		defer s.snapWG.Done()
		t0 := time.Now()
		size, err := writeSnapshot(s.dir, next, cp)
		if err == nil {
			s.log.Debug("snapshot written", "gen", next, "records", len(cp.recs), "bytes", size, "took", time.Since(t0))
			// The snapshot covers every log before next: remove them.
			gens, lerr := listLogs(s.dir)
			for _, g := range gens {
				if lerr == nil && g < next {
					_ = os.Remove(filepath.Join(s.dir, logName(g)))
				}
			}
		}
		s.snapRes <- snapResult{gen: next, size: size, err: err}
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}()
}

func (s *LogStore) snapDone(r snapResult) {
	s.snapping = false
	if r.err != nil {
		s.log.Error("writing a snapshot failed; the logs are kept and replayed instead", "err", r.err)
		return
	}
	s.snapSize = r.size
	s.statsMu.Lock()
	s.stats.Snapshots++
	s.statsMu.Unlock()
}
