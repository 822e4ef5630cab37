package kv

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// Store keeps a node's replicas durably. Put returns only once the records
// are on stable storage (fsync), which is what lets a replica acknowledge.
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
}

var (
	bucketRecords = []byte("records")
	bucketMeta    = []byte("meta")
	keyMeta       = []byte("meta")
)

// BoltStore is a Store in a bbolt file (DIR/kv.db). bbolt fsyncs every
// committed transaction; Puts that arrive while a commit is in flight are
// grouped into the next transaction (bbolt's Batch), so they share its
// fsync. The freelist is rebuilt at open instead of written on every commit.
type BoltStore struct {
	db *bolt.DB
}

// OpenBolt opens or creates DIR/kv.db.
func OpenBolt(dir string) (*BoltStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("kv: data directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, "kv.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2e9, NoFreelistSync: true})
	if err != nil {
		return nil, fmt.Errorf("kv: open %s: %w (is another node using this data directory?)", path, err)
	}
	// Commit a batch as soon as the committer is free: writes that arrive
	// while a commit is in flight still share the next one (group commit),
	// but a lone write no longer waits bbolt's default 10ms for company.
	db.MaxBatchDelay = 0
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketRecords); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bucketMeta)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("kv: init %s: %w", path, err)
	}
	return &BoltStore{db: db}, nil
}

// Load reads everything.
func (s *BoltStore) Load() ([]Record, Meta, error) {
	var recs []Record
	var meta Meta
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketMeta).Get(keyMeta); b != nil {
			if err := json.Unmarshal(b, &meta); err != nil {
				return fmt.Errorf("kv: corrupt metadata: %w", err)
			}
		}
		return tx.Bucket(bucketRecords).ForEach(func(k, v []byte) error {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("kv: corrupt record %q: %w", k, err)
			}
			recs = append(recs, r)
			return nil
		})
	})
	return recs, meta, err
}

// Put writes records in one (batched) transaction.
func (s *BoltStore) Put(recs ...Record) error {
	enc := make([][]byte, len(recs))
	for i, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		enc[i] = b
	}
	return s.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		for i, r := range recs {
			if err := b.Put([]byte(r.Key), enc[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// PutMeta writes the metadata.
func (s *BoltStore) PutMeta(m Meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyMeta, b) })
}

// Close closes the file.
func (s *BoltStore) Close() error { return s.db.Close() }

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
	return out, Meta{Init: append([]span(nil), s.meta.Init...), MaxSeen: s.meta.MaxSeen}, nil
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
	s.meta = Meta{Init: append([]span(nil), m.Init...), MaxSeen: m.MaxSeen}
	return nil
}

// Close does nothing.
func (s *MemStore) Close() error { return nil }
