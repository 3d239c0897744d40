package fsm

import (
	"fmt"
	"os"
	"path/filepath"
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

// Store is the replicated state: a go-memdb database for the small records
// (users, tokens, functions, the calls not ended yet, counters) and a
// cachestore.DB on disk for the bulk (outputs, log events, ended calls),
// both written only by Apply and Restore. Restore swaps in a whole new
// pair; readers that block on the old one are woken through the abandon
// channel.
type Store struct {
	cfg    Config
	dir    string
	ownDir bool // dir is a temporary directory the store made
	state  atomic.Pointer[halves]
	gen    atomic.Uint64 // names the cache files of successive restores
	// pairMu makes an apply's two commits one step for readers, which open
	// their reads of both halves under it: a reader never sees a call that
	// ended in neither half, or in both.
	pairMu sync.RWMutex
	// betweenCommits, set by tests only, runs between the disk commit and
	// memdb's: where a crash would leave the halves apart.
	betweenCommits func()

	mu        sync.Mutex
	abandonCh chan struct{}
}

// halves is one consistent pair: memdb and the disk store it goes with.
type halves struct {
	mem  *memdb.MemDB
	disk *cachestore.DB
}

// cacheFiles matches the cache store files a store makes in its dir.
const cacheFiles = "caches-*.db"

// NewStore builds an empty store whose disk half lives in dir (a server's
// data dir; "" makes a temporary one, removed by Close). Cache files a
// previous process left in dir are removed: they are rebuilt from Raft.
func NewStore(cfg Config, dir string) (*Store, error) {
	s := &Store{cfg: cfg, dir: dir, abandonCh: make(chan struct{})}
	if dir == "" {
		d, err := os.MkdirTemp("", "hyperfunc-state-")
		if err != nil {
			return nil, fmt.Errorf("state dir: %w", err)
		}
		s.dir, s.ownDir = d, true
	}
	old, _ := filepath.Glob(filepath.Join(s.dir, cacheFiles))
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			return nil, fmt.Errorf("stale cache store: %w", err)
		}
	}
	h, err := s.newHalves()
	if err != nil {
		return nil, err
	}
	s.state.Store(h)
	return s, nil
}

func (s *Store) newHalves() (*halves, error) {
	mem, err := memdb.NewMemDB(Schema())
	if err != nil {
		return nil, fmt.Errorf("state schema: %w", err)
	}
	disk, err := cachestore.Open(filepath.Join(s.dir, fmt.Sprintf("caches-%d.db", s.gen.Add(1))))
	if err != nil {
		return nil, err
	}
	return &halves{mem: mem, disk: disk}, nil
}

// Close closes and removes the disk half.
func (s *Store) Close() error {
	err := s.state.Load().disk.Close()
	if s.ownDir {
		os.RemoveAll(s.dir)
	}
	return err
}

// Config returns the store's limits.
func (s *Store) Config() Config { return s.cfg }

// ReadTxn opens a read transaction on the current memdb database.
func (s *Store) ReadTxn() *memdb.Txn { return s.state.Load().mem.Txn(false) }

// read opens a read on both halves, at the same apply; Close it.
func (s *Store) read() (*cachestore.Read, error) {
	s.pairMu.RLock()
	defer s.pairMu.RUnlock()
	h := s.state.Load()
	return cachestore.NewRead(h.mem, h.disk)
}

// commit commits an apply's write on both halves.
func (s *Store) commit(txn *cachestore.Txn) error {
	s.pairMu.Lock()
	defer s.pairMu.Unlock()
	if err := txn.CommitDisk(); err != nil {
		return err
	}
	if s.betweenCommits != nil {
		s.betweenCommits()
	}
	txn.Txn.Commit()
	return nil
}

// Trim hands back the pages of the disk half's file that reads left
// mapped (cachestore.DB.Trim): they are page cache, not this process's.
func (s *Store) Trim() error { return s.state.Load().disk.Trim() }

// WrittenSinceTrim is the bytes of the disk half's pages written since the
// last Trim (cachestore.DB.WrittenSinceTrim).
func (s *Store) WrittenSinceTrim() int64 { return s.state.Load().disk.WrittenSinceTrim() }

// DiskBytes is the size of the disk half's file.
func (s *Store) DiskBytes() int64 { return s.state.Load().disk.Size() }

// HeldStdinBytes is how many bytes of queued calls' stdin the store keeps
// in memory rather than in its disk half (cachestore.DefaultHeldStdinMax
// at most).
func (s *Store) HeldStdinBytes() int64 { return s.state.Load().disk.HeldStdin() }

// AbandonCh is closed when the database is replaced by a restore.
func (s *Store) AbandonCh() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.abandonCh
}

// swap replaces both halves after a restore and wakes blocked readers. The
// old disk half closes once its last reader (a snapshot being written, say)
// is done: bbolt's Close waits for them, so it must not hold up the FSM.
func (s *Store) swap(h *halves) {
	s.pairMu.Lock()
	old := s.state.Swap(h)
	s.pairMu.Unlock()
	s.mu.Lock()
	close(s.abandonCh)
	s.abandonCh = make(chan struct{})
	s.mu.Unlock()
	go old.disk.Close()
}

// writeTxn opens the one kind of write: Apply's, at a Raft index.
func (s *Store) writeTxn() *cachestore.Txn {
	h := s.state.Load()
	return cachestore.NewTxn(h.mem, h.disk)
}

// setIndex records that table changed at index.
func setIndex(txn *cachestore.Txn, table string, index uint64) error {
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
