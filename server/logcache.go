package server

import (
	"sync"

	"github.com/hashicorp/raft"
)

// logCache keeps the latest Raft entries in memory in front of the log
// store. Raft reads back entries it has just written: the leader to send
// them (and the one before, for its term alone), a follower to apply
// what it stored one AppendEntries earlier, before it answers that RPC.
// raft-wal serves every read with a pread and a decode into a new buffer,
// so with 384 KiB chunks streaming through, those reads were ~6 % of a
// server's CPU (perf, bench TestMemoryIssue12 load) and sat on the path
// of every small call's replication. hashicorp/raft's LogCache bounds
// entries, not bytes; entries range from bytes to MaxEntryPayload, so
// this one bounds both.
type logCache struct {
	raft.LogStore
	maxBytes   int64
	maxEntries int

	mu    sync.RWMutex
	logs  []*raft.Log // contiguous indexes, oldest first
	bytes int64       // of logs' Data and Extensions
}

// Bounds of the Raft log cache: a few chunks' worth, which covers what
// replication and applies read back in a healthy cluster; a follower
// catching up from further behind reads the store.
const (
	logCacheBytes   = 4 << 20
	logCacheEntries = 1024
)

func newLogCache(store raft.LogStore, maxBytes int64, maxEntries int) *logCache {
	return &logCache{LogStore: store, maxBytes: maxBytes, maxEntries: maxEntries}
}

// IsMonotonic passes the store's answer on (raft.MonotonicLogStore): raft
// handles a store that cannot have gaps differently after a snapshot.
func (c *logCache) IsMonotonic() bool {
	m, ok := c.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

func (c *logCache) GetLog(idx uint64, log *raft.Log) error {
	c.mu.RLock()
	if n := len(c.logs); n > 0 && idx >= c.logs[0].Index && idx <= c.logs[n-1].Index {
		*log = *c.logs[idx-c.logs[0].Index]
		c.mu.RUnlock()
		return nil
	}
	c.mu.RUnlock()
	return c.LogStore.GetLog(idx, log)
}

func (c *logCache) StoreLog(log *raft.Log) error { return c.StoreLogs([]*raft.Log{log}) }

// StoreLogs stores, then caches: an entry the store refused is never
// served. Raft does not modify an entry once it handed it over.
func (c *logCache) StoreLogs(logs []*raft.Log) error {
	if err := c.LogStore.StoreLogs(logs); err != nil {
		c.reset()
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range logs {
		if n := len(c.logs); n > 0 && l.Index != c.logs[n-1].Index+1 {
			c.logs, c.bytes = nil, 0 // not contiguous: start over
		}
		c.logs = append(c.logs, l)
		c.bytes += logBytes(l)
	}
	// The newest entry stays whatever its size.
	for len(c.logs) > 1 && (c.bytes > c.maxBytes || len(c.logs) > c.maxEntries) {
		c.bytes -= logBytes(c.logs[0])
		c.logs[0] = nil
		c.logs = c.logs[1:]
	}
	return nil
}

// DeleteRange drops the cached entries in [lo, hi] before the store's:
// compaction deletes a head the cache rarely still holds, a follower's
// conflicting suffix is stored again after.
func (c *logCache) DeleteRange(lo, hi uint64) error {
	c.mu.Lock()
	if n := len(c.logs); n > 0 {
		first, last := c.logs[0].Index, c.logs[n-1].Index
		switch {
		case hi < first || lo > last: // none cached
		case lo <= first && hi < last: // a head
			head := c.logs[:hi-first+1]
			for i, l := range head {
				c.bytes -= logBytes(l)
				head[i] = nil // not kept reachable by the array
			}
			c.logs = c.logs[hi-first+1:]
		case lo > first: // a tail
			for _, l := range c.logs[lo-first:] {
				c.bytes -= logBytes(l)
			}
			c.logs = c.logs[:lo-first]
		default: // all of it
			c.logs, c.bytes = nil, 0
		}
	}
	c.mu.Unlock()
	return c.LogStore.DeleteRange(lo, hi)
}

func (c *logCache) reset() {
	c.mu.Lock()
	c.logs, c.bytes = nil, 0
	c.mu.Unlock()
}

func logBytes(l *raft.Log) int64 { return int64(len(l.Data) + len(l.Extensions)) }
