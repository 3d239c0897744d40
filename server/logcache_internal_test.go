package server

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hashicorp/raft"
)

// countingStore counts the reads that reach the store.
type countingStore struct {
	*raft.InmemStore
	reads int
}

func (s *countingStore) GetLog(idx uint64, l *raft.Log) error {
	s.reads++
	return s.InmemStore.GetLog(idx, l)
}

func newCountedCache(t *testing.T, maxBytes int64, maxEntries int) (*logCache, *countingStore) {
	t.Helper()
	st := &countingStore{InmemStore: raft.NewInmemStore()}
	return newLogCache(st, maxBytes, maxEntries), st
}

func storeN(t *testing.T, c *logCache, from uint64, sizes ...int) {
	t.Helper()
	var ls []*raft.Log
	for i, n := range sizes {
		idx := from + uint64(i)
		ls = append(ls, &raft.Log{Index: idx, Term: 1, Data: bytes.Repeat([]byte{byte(idx)}, n)})
	}
	if err := c.StoreLogs(ls); err != nil {
		t.Fatal(err)
	}
}

// cached reports whether idx is served without reading the store, and
// checks what is served.
func cached(t *testing.T, c *logCache, st *countingStore, idx uint64) bool {
	t.Helper()
	before := st.reads
	var l raft.Log
	if err := c.GetLog(idx, &l); err != nil {
		t.Fatalf("get %d: %v", idx, err)
	}
	if l.Index != idx || (len(l.Data) > 0 && l.Data[0] != byte(idx)) {
		t.Fatalf("get %d: got entry %d", idx, l.Index)
	}
	return st.reads == before
}

// TestLogCacheBytes: entries whose data add up to the byte bound exactly
// are all served from memory; one byte more evicts the oldest.
func TestLogCacheBytes(t *testing.T) {
	c, st := newCountedCache(t, 100, 1000)
	storeN(t, c, 1, 40, 30, 30) // 100: at the bound
	for idx := uint64(1); idx <= 3; idx++ {
		if !cached(t, c, st, idx) {
			t.Fatalf("entry %d read from the store at the byte bound", idx)
		}
	}
	storeN(t, c, 4, 1) // 101: past it
	if cached(t, c, st, 1) {
		t.Fatal("oldest entry still cached past the byte bound")
	}
	for idx := uint64(2); idx <= 4; idx++ {
		if !cached(t, c, st, idx) {
			t.Fatalf("entry %d read from the store", idx)
		}
	}
	// An entry larger than the bound is kept alone: the newest is what
	// replication reads next.
	storeN(t, c, 5, 500)
	if !cached(t, c, st, 5) || cached(t, c, st, 4) {
		t.Fatal("a single entry past the bound: want it cached alone")
	}
}

// TestLogCacheEntries: the entry bound, at it and one past.
func TestLogCacheEntries(t *testing.T) {
	c, st := newCountedCache(t, 1<<20, 3)
	storeN(t, c, 1, 1, 1, 1)
	if !cached(t, c, st, 1) || !cached(t, c, st, 3) {
		t.Fatal("entries at the entry bound not cached")
	}
	storeN(t, c, 4, 1)
	if cached(t, c, st, 1) || !cached(t, c, st, 2) || !cached(t, c, st, 4) {
		t.Fatal("past the entry bound: want the oldest evicted, the rest cached")
	}
}

// TestLogCacheDeleteRange: deleted entries are never served from memory,
// whether the head (compaction) or a tail (a follower's conflicting
// suffix) goes; a gap in what is stored starts the cache over.
func TestLogCacheDeleteRange(t *testing.T) {
	c, st := newCountedCache(t, 1<<20, 100)
	storeN(t, c, 1, 1, 1, 1, 1, 1) // 1..5
	if err := c.DeleteRange(1, 2); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteRange(5, 5); err != nil {
		t.Fatal(err)
	}
	for _, idx := range []uint64{1, 2, 5} {
		var l raft.Log
		if err := c.GetLog(idx, &l); !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("deleted entry %d: got %v (entry %d), want ErrLogNotFound", idx, err, l.Index)
		}
	}
	if !cached(t, c, st, 3) || !cached(t, c, st, 4) {
		t.Fatal("entries outside the deleted ranges left the cache")
	}
	storeN(t, c, 5, 7) // the suffix again, new data
	var l raft.Log
	if err := c.GetLog(5, &l); err != nil || len(l.Data) != 7 {
		t.Fatalf("re-stored entry 5: %v, %d bytes, want 7", err, len(l.Data))
	}
	storeN(t, c, 10, 1) // a gap: 6..9 were never stored here
	if cached(t, c, st, 4) || !cached(t, c, st, 10) {
		t.Fatal("after a gap: want only the new entry cached")
	}
}

// TestLogCacheMonotonic: raft sees the WAL's monotonicity through the cache.
func TestLogCacheMonotonic(t *testing.T) {
	if newLogCache(raft.NewInmemStore(), 1, 1).IsMonotonic() {
		t.Fatal("InmemStore is not monotonic")
	}
	w, closeW, err := openLogStore(t.TempDir(), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeW()
	if !newLogCache(w, 1, 1).IsMonotonic() {
		t.Fatal("the WAL's monotonicity is hidden by the cache")
	}
}
