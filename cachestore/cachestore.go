// Package cachestore holds the bulk of hyperfunc's replicated state on disk:
// the capped, rotating per-function caches (the output cache, stdout of
// finished calls, and the log cache, a function's CALL/PENDING/RUNNING/...
// events) and the records of ended calls, which live as long as something
// of them is in the caches. Each cache is capped per function (50 MiB by
// default, as in Hyper Func); when an insert takes a function past its cap
// the oldest entries rotate out until it fits.
//
// The bytes live in a bbolt file (DB); go-memdb keeps only one usage row
// per function and cache, whose byte and entry counts are exact sums of
// what is on disk and change in the same apply, and whose watch channels
// wake blocking readers. So a server's heap does not grow with its caches.
//
// Every write runs inside the state store's apply (Txn): the memdb write
// transaction and, opened on first use, a bbolt write transaction that the
// caller commits before memdb's. The file is derived state, never trusted
// across process lifetimes: Open starts it empty, and Raft rebuilds it
// from the latest snapshot and the log after it, as it does memdb. A crash
// between the two commits therefore leaves nothing to reconcile.
package cachestore

import (
	"fmt"

	memdb "github.com/hashicorp/go-memdb"
)

// Table and index names of the memdb half.
const (
	TableUsage = "cache_usage"

	IndexID = "id"
)

// DefaultCap is the default per-function cap of each cache.
const DefaultCap int64 = 50 << 20

// MaxEntries bounds the entries of one cache of one function, whatever
// their bytes: an empty output counts nothing against the byte cap (so 50
// MiB holds 50 outputs of 1 MiB), and this is what bounds their number. An
// entry costs at most ~300 bytes of disk beyond its bytes (its key, the
// call ID, the ended call's record), so ~30 MB per cache at this bound,
// and nothing in the heap.
const MaxEntries = 100_000

// Kind names a cache in the usage table.
type Kind string

// The two caches.
const (
	KindOutput Kind = "output"
	KindLog    Kind = "log"
)

// Usage is the exact byte and entry count of one cache of one function.
type Usage struct {
	Kind     Kind
	Function string
	Bytes    int64
	Count    int64
}

// Tables returns the schemas of the memdb tables of the caches, to be
// merged into the state store's schema.
func Tables() map[string]*memdb.TableSchema {
	return map[string]*memdb.TableSchema{TableUsage: usageTable(), TableStdin: stdinTable()}
}

func usageTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: TableUsage,
		Indexes: map[string]*memdb.IndexSchema{
			IndexID: {
				Name:   IndexID,
				Unique: true,
				Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{
					&memdb.StringFieldIndex{Field: "Kind"},
					&memdb.StringFieldIndex{Field: "Function"},
				}},
			},
		},
	}
}

// Exact turns a string into a prefix that matches only that whole string
// as the last field of a compound index. memdb's prefix lookup treats the
// last string argument as a plain prefix ("alice/f" would also match
// "alice/foo"); string fields are stored with a NUL terminator, so ending
// the prefix with one makes it exact.
func Exact(s string) string { return s + "\x00" }

// GetUsage reads the usage of one cache of one function.
func GetUsage(txn *memdb.Txn, kind Kind, function string) (Usage, error) {
	u, _, err := usageWatch(txn, kind, function)
	return u, err
}

// usageWatch reads a usage row and the channel that fires when it changes
// (or appears): the one thing blocking readers of a cache watch.
func usageWatch(txn *memdb.Txn, kind Kind, function string) (Usage, <-chan struct{}, error) {
	ch, raw, err := txn.FirstWatch(TableUsage, IndexID, string(kind), function)
	if err != nil {
		return Usage{}, nil, fmt.Errorf("cache usage lookup: %w", err)
	}
	if raw == nil {
		return Usage{Kind: kind, Function: function}, ch, nil
	}
	return *raw.(*Usage), ch, nil
}

func addUsage(txn *memdb.Txn, kind Kind, function string, bytes, count int64) (Usage, error) {
	u, err := GetUsage(txn, kind, function)
	if err != nil {
		return u, err
	}
	u.Bytes += bytes
	u.Count += count
	if u.Count == 0 {
		if _, err := txn.DeleteAll(TableUsage, IndexID, string(kind), function); err != nil {
			return u, fmt.Errorf("cache usage delete: %w", err)
		}
		return u, nil
	}
	nu := u
	if err := txn.Insert(TableUsage, &nu); err != nil {
		return u, fmt.Errorf("cache usage update: %w", err)
	}
	return u, nil
}

// over reports whether a cache holds more than its caps allow.
func (u Usage) over(limit int64) bool { return u.Bytes > limit || u.Count > MaxEntries }
