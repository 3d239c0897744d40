package server

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
)

// A follower's conflicting suffix on the real WAL: truncated, rewritten at
// a new term, then read back (cache and store must agree).
func TestLogCacheConflictWAL(t *testing.T) {
	w, closeW, err := openLogStore(t.TempDir(), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeW()
	c := newLogCache(w, 1<<20, 8)
	mk := func(from, to, term uint64) []*raft.Log {
		var ls []*raft.Log
		for i := from; i <= to; i++ {
			ls = append(ls, &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("%d@%d", i, term))})
		}
		return ls
	}
	check := func(idx, term uint64) {
		t.Helper()
		var a, b raft.Log
		if err := c.GetLog(idx, &a); err != nil {
			t.Fatalf("cache get %d: %v", idx, err)
		}
		if err := w.GetLog(idx, &b); err != nil {
			t.Fatalf("wal get %d: %v", idx, err)
		}
		if a.Term != term || b.Term != term || string(a.Data) != string(b.Data) {
			t.Fatalf("%d: cache %d %q, wal %d %q, want term %d", idx, a.Term, a.Data, b.Term, b.Data, term)
		}
	}
	if err := c.StoreLogs(mk(1, 20, 1)); err != nil {
		t.Fatal(err)
	}
	// conflict at 15: raft deletes 15..20, stores 15..17 term 2
	if err := c.DeleteRange(15, 20); err != nil {
		t.Fatal(err)
	}
	if err := c.StoreLogs(mk(15, 17, 2)); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 14; i++ {
		check(i, 1)
	}
	for i := uint64(15); i <= 17; i++ {
		check(i, 2)
	}
	var l raft.Log
	if err := c.GetLog(18, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("18: %v term %d", err, l.Term)
	}
	// install snapshot on a monotonic store: everything goes
	first, _ := c.FirstIndex()
	last, _ := c.LastIndex()
	if err := c.DeleteRange(first, last); err != nil {
		t.Fatal(err)
	}
	if err := c.StoreLogs(mk(100, 105, 3)); err != nil {
		t.Fatal(err)
	}
	for i := uint64(100); i <= 105; i++ {
		check(i, 3)
	}
	if err := c.GetLog(17, &l); err == nil {
		t.Fatalf("17 after snapshot install: term %d", l.Term)
	}
}

// Readers race StoreLogs and head compaction.
func TestLogCacheConcurrent(t *testing.T) {
	st := raft.NewInmemStore()
	c := newLogCache(st, 64<<10, 64)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var mu sync.Mutex
	last := uint64(0)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				hi := last
				mu.Unlock()
				for i := hi; i > 0 && i+40 > hi; i-- {
					var l raft.Log
					if err := c.GetLog(i, &l); err == nil && (l.Index != i || string(l.Data) != fmt.Sprint(i)) {
						t.Errorf("get %d: got %d %q", i, l.Index, l.Data)
						return
					}
				}
			}
		}()
	}
	for i := uint64(1); i <= 20000; i += 4 {
		var ls []*raft.Log
		for j := i; j < i+4; j++ {
			ls = append(ls, &raft.Log{Index: j, Term: 1, Data: []byte(fmt.Sprint(j))})
		}
		if err := c.StoreLogs(ls); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		last = i + 3
		mu.Unlock()
		if i%97 == 1 && i > 50 {
			f, _ := c.FirstIndex()
			wg.Add(1)
			go func(lo, hi uint64) {
				defer wg.Done()
				_ = c.DeleteRange(lo, hi)
			}(f, i-10)
		}
	}
	close(stop)
	wg.Wait()
}
