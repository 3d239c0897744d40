// Package cachestore holds the capped, rotating per-function caches of
// hyperfunc as go-memdb tables: the output cache (stdout of finished calls)
// and the log cache (a function's CALL/PENDING/RUNNING/... events). Each is
// capped per function (50 MiB by default, as in Hyper Func); when an insert
// takes a function past its cap the oldest entries rotate out until it fits.
//
// The byte count kept per function is exact: it is the sum of Size() of the
// entries present, updated in the same transaction as the entries. Every
// function here runs inside the caller's write transaction, so the caches
// change atomically with the rest of the replicated state.
package cachestore

import (
	"fmt"

	memdb "github.com/hashicorp/go-memdb"
)

// Table and index names.
const (
	TableOutputs = "outputs"
	TableLogs    = "logs"
	TableUsage   = "cache_usage"

	IndexID       = "id"
	IndexFunction = "function"
)

// DefaultCap is the default per-function cap of each cache.
const DefaultCap int64 = 50 << 20

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

// Tables returns the schemas of the cache tables, to be merged into the
// state store's schema.
func Tables() map[string]*memdb.TableSchema {
	return map[string]*memdb.TableSchema{
		TableOutputs: outputsTable(),
		TableLogs:    logsTable(),
		TableUsage:   usageTable(),
	}
}

// functionSeqIndex orders a table's rows by function, then by sequence, so
// that the oldest entry of a function is the first one of its prefix.
func functionSeqIndex[T any](name string, fn func(*T) string, seq func(*T) uint64) *memdb.IndexSchema {
	return &memdb.IndexSchema{
		Name:   name,
		Unique: true,
		Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{
			StringIndex[T]{Field: "Function", Get: fn},
			UintIndex[T]{Field: "Seq", Get: seq},
		}},
	}
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
	raw, err := txn.First(TableUsage, IndexID, string(kind), function)
	if err != nil {
		return Usage{}, fmt.Errorf("cache usage lookup: %w", err)
	}
	if raw == nil {
		return Usage{Kind: kind, Function: function}, nil
	}
	return *raw.(*Usage), nil
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

// RestoreUsage inserts a usage row as read from a snapshot.
func RestoreUsage(txn *memdb.Txn, u *Usage) error {
	return txn.Insert(TableUsage, u)
}

// DeleteFunction drops both caches of a function.
func DeleteFunction(txn *memdb.Txn, function string) error {
	if _, err := txn.DeleteAll(TableOutputs, IndexFunction+"_prefix", Exact(function)); err != nil {
		return fmt.Errorf("delete outputs of %s: %w", function, err)
	}
	if _, err := txn.DeleteAll(TableLogs, IndexID+"_prefix", Exact(function)); err != nil {
		return fmt.Errorf("delete logs of %s: %w", function, err)
	}
	for _, k := range []Kind{KindOutput, KindLog} {
		if _, err := txn.DeleteAll(TableUsage, IndexID, string(k), function); err != nil {
			return fmt.Errorf("delete usage of %s: %w", function, err)
		}
	}
	return nil
}
