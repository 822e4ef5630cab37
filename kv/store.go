package kv

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/shoal-p2p/shoal/id"
)

// Store keeps a node's replicas durably. Put returns only once the records
// are on stable storage (fsync), which is what lets a replica acknowledge.
// OpenLog gives the store real nodes use; NewMemStore one for tests.
type Store interface {
	// Load returns every record and the metadata, at start.
	Load() ([]Record, Meta, error)
	// Put writes records durably; concurrent calls may share one fsync.
	Put(recs ...Record) error
	// PutMeta writes the metadata durably.
	PutMeta(m Meta) error
	Close() error
}

// Meta is what a node persists besides records: the ranges it had
// synchronised when it last wrote, which after a restart it may offer as a
// source for others' (and its own) resynchronisation.
type Meta struct {
	Init []span `json:"init"`
	// MaxSeen is the largest ring this node has been part of, capped at the
	// replication factor. Quorums never shrink below a majority of it, so a
	// node cut off from the others cannot act as a ring of one.
	MaxSeen int `json:"max_seen"`
	// Hist is the replica sets this node served under and has not yet read
	// back from a majority of their members (hist.go).
	Hist []HistEntry `json:"hist,omitempty"`
}

func (m Meta) clone() Meta {
	out := Meta{Init: append([]span(nil), m.Init...), MaxSeen: m.MaxSeen}
	for _, e := range m.Hist {
		out.Hist = append(out.Hist, HistEntry{Cfg: append([]id.ID(nil), e.Cfg...), Spans: append([]span(nil), e.Spans...)})
	}
	return out
}

// appender is a Store that fixes the order of writes when they are
// submitted and lets the caller wait for durability apart. The replica
// submits on its service loop, in the order it changed its records, and
// waits off the loop; with Put from several goroutines, two writes of one
// key could reach the disk in the opposite order and a restart would
// resurrect the older one. LogStore and MemStore implement it.
type appender interface {
	Append(recs ...Record) (wait func() error)
}

// lazyAppender is a store whose writes may wait a little for a sync to
// share (LogStore.AppendLazy).
type lazyAppender interface {
	AppendLazy(recs ...Record) (wait func() error)
}

var (
	bucketRecords = []byte("records")
	bucketMeta    = []byte("meta")
	keyMeta       = []byte("meta")
)

// migrateBolt turns the previous version's store (a bbolt file, DIR/kv.db)
// into the first snapshot of a LogStore, if the directory has one and no
// snapshot or log yet, then removes it. The snapshot is durable before the
// file goes: a crash in between migrates again.
func (s *LogStore) migrateBolt() error {
	path := filepath.Join(s.dir, boltName)
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	gens, err := listLogs(s.dir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(s.dir, snapName)); err == nil || len(gens) > 0 {
		return fmt.Errorf("kv: %s holds both a bbolt file (%s) from an earlier version and a log; remove one (the log is newer)", s.dir, boltName)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, ReadOnly: true})
	if err != nil {
		return fmt.Errorf("kv: open %s to migrate it: %w", path, err)
	}
	im := newImage()
	err = db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketMeta); b != nil {
			if m := b.Get(keyMeta); m != nil {
				im.meta = append([]byte(nil), m...)
			}
		}
		b := tx.Bucket(bucketRecords)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("corrupt record %q: %w", k, err)
			}
			im.recs[r.Key] = append([]byte(nil), v...)
			return nil
		})
	})
	db.Close()
	if err != nil {
		return fmt.Errorf("kv: migrate %s: %w", path, err)
	}
	if _, err := writeSnapshot(s.dir, 1, im); err != nil {
		return fmt.Errorf("kv: migrate %s: write the snapshot: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("kv: migrated %s but cannot remove it: %w", path, err)
	}
	s.log.Info("migrated the bbolt store to the log", "dir", s.dir, "records", len(im.recs))
	return syncDir(s.dir)
}

// MemStore is a Store in memory, for tests and simulations: every Put is
// "durable" at once, and the store survives a simulated crash of its node
// if the test keeps it and hands it to the restarted node.
type MemStore struct {
	mu   sync.Mutex
	recs map[string]Record
	meta Meta
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{recs: make(map[string]Record)} }

// Load returns copies of everything.
func (s *MemStore) Load() ([]Record, Meta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Record, 0, len(s.recs))
	for _, r := range s.recs {
		out = append(out, r)
	}
	return out, s.meta.clone(), nil
}

// Put stores copies.
func (s *MemStore) Put(recs ...Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		r.State.Value = append([]byte(nil), r.State.Value...)
		r.State.Recent = append([]ReqVer(nil), r.State.Recent...)
		s.recs[r.Key] = r
	}
	return nil
}

// PutMeta stores the metadata.
func (s *MemStore) PutMeta(m Meta) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.meta = m.clone()
	return nil
}

// Append stores copies at once (MemStore is "durable" on return) and
// returns a wait that has nothing to wait for.
func (s *MemStore) Append(recs ...Record) func() error {
	_ = s.Put(recs...)
	return func() error { return nil }
}

// AppendLazy is Append: a MemStore has no sync to share.
func (s *MemStore) AppendLazy(recs ...Record) func() error { return s.Append(recs...) }

// Close does nothing.
func (s *MemStore) Close() error { return nil }
