package fsm

import (
	"fmt"
	"sync"
	"sync/atomic"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/hyperfunc/hyperfunc/cachestore"
)

// Config holds the limits that Apply enforces. Every server of a cluster
// must run with the same values, as they shape the replicated state.
type Config struct {
	OutputCacheBytes int64 // per function
	LogCacheBytes    int64 // per function
}

// DefaultConfig has the seed's limits.
func DefaultConfig() Config {
	return Config{OutputCacheBytes: cachestore.DefaultCap, LogCacheBytes: cachestore.DefaultCap}
}

// Store is the replicated state: a go-memdb database that only Apply and
// Restore write. Restore swaps in a whole new database; readers that block
// on the old one are woken through the abandon channel.
type Store struct {
	cfg Config
	db  atomic.Pointer[memdb.MemDB]

	mu        sync.Mutex
	abandonCh chan struct{}
}

// NewStore builds an empty store.
func NewStore(cfg Config) (*Store, error) {
	db, err := memdb.NewMemDB(Schema())
	if err != nil {
		return nil, fmt.Errorf("state schema: %w", err)
	}
	s := &Store{cfg: cfg, abandonCh: make(chan struct{})}
	s.db.Store(db)
	return s, nil
}

// Config returns the store's limits.
func (s *Store) Config() Config { return s.cfg }

// ReadTxn opens a read transaction on the current database.
func (s *Store) ReadTxn() *memdb.Txn { return s.db.Load().Txn(false) }

// AbandonCh is closed when the database is replaced by a restore.
func (s *Store) AbandonCh() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.abandonCh
}

// swap replaces the database after a restore and wakes blocked readers.
func (s *Store) swap(db *memdb.MemDB) {
	s.db.Store(db)
	s.mu.Lock()
	close(s.abandonCh)
	s.abandonCh = make(chan struct{})
	s.mu.Unlock()
}

// writeTxn opens the one kind of write: Apply's, at a Raft index.
func (s *Store) writeTxn() *memdb.Txn { return s.db.Load().Txn(true) }

// setIndex records that table changed at index.
func setIndex(txn *memdb.Txn, table string, index uint64) error {
	if err := txn.Insert(TableIndex, &IndexEntry{Key: table, Value: index}); err != nil {
		return fmt.Errorf("index update %s: %w", table, err)
	}
	return nil
}

// Index returns the Raft index of the last change of the tables, and adds
// their index rows to the watch set.
func (s *Store) Index(ws memdb.WatchSet, tables ...string) uint64 {
	txn := s.ReadTxn()
	var max uint64
	for _, t := range tables {
		ch, raw, err := txn.FirstWatch(TableIndex, IndexID, t)
		if err != nil {
			continue
		}
		ws.Add(ch)
		if raw != nil && raw.(*IndexEntry).Value > max {
			max = raw.(*IndexEntry).Value
		}
	}
	return max
}

// LatestIndex is the highest index of any table.
func (s *Store) LatestIndex() uint64 {
	it, err := s.ReadTxn().Get(TableIndex, IndexID)
	if err != nil {
		return 0
	}
	var max uint64
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if v := raw.(*IndexEntry).Value; v > max {
			max = v
		}
	}
	return max
}
