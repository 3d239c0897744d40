package cachestore

import (
	"fmt"

	memdb "github.com/hashicorp/go-memdb"
	bolt "go.etcd.io/bbolt"
)

// A queued call's stdin is kept until the call ends, in one of two places:
// in memdb (TableStdin), while all of the stdin held there stays within
// a bound (DefaultHeldStdinMax), else in the bbolt file (bucketStdin). Most
// stdin ends within seconds of its enqueue (it is read once, when the call
// starts), so the bounded memory tier spares it a second write after the
// Raft log's: writing 1 MiB values into bbolt (a zeroed page buffer, a
// copy into it, a pwrite into a file whose free pages are scattered, and
// the page cache's writeback later) was the largest cost of an apply
// beside a stream of 1 MiB stdin (docs/BENCHMARKS.md). Where a stdin is
// kept is a server's own affair, as the file is: both are rebuilt from
// Raft, and a snapshot carries stdin inside its call's record either way.

// TableStdin is the memdb table of the stdin kept in memory.
const TableStdin = "cache_stdin"

// DefaultHeldStdinMax is how many bytes of stdin a store keeps in memory
// at most; stdin past it goes to the file. It bounds what queued calls add
// to a server's heap whatever the users' -max-queued-bytes allow.
const DefaultHeldStdinMax int64 = 16 << 20

// heldStdin is a row of TableStdin. Data is never modified once inserted:
// readers get copies.
type heldStdin struct {
	CallID string
	Data   []byte
}

func stdinTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: TableStdin,
		Indexes: map[string]*memdb.IndexSchema{
			IndexID: {Name: IndexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "CallID"}},
		},
	}
}

// bucketStdin holds the stdin that did not fit in memory, by call ID: a
// user may hold 64 MiB of it queued (server's -max-queued-bytes), which
// has no business in the heap while it waits.
var bucketStdin = []byte("\x00stdin")

// HeldStdin is how many bytes of stdin the store keeps in memory (as of
// the last commit).
func (d *DB) HeldStdin() int64 { return d.held.Load() }

// PutStdin keeps a queued call's stdin until DeleteStdin: in memory when
// it fits in what is left of the store's bound (DefaultHeldStdinMax),
// else on disk. The store keeps data as it is, uncopied: the caller hands
// it over (it does not modify it afterwards, and it is not a window on a
// larger array that the bound, which counts len, would not see; the FSM
// passes stdin decoded from an entry or joined from staged chunks, both
// fresh arrays of their own).
func PutStdin(t *Txn, callID string, data []byte) error {
	if n := int64(len(data)); t.db.held.Load()+t.heldDelta+n <= t.db.heldMax {
		if err := t.Txn.Insert(TableStdin, &heldStdin{CallID: callID, Data: data}); err != nil {
			return fmt.Errorf("put stdin %s: %w", callID, err)
		}
		t.heldDelta += n
		return nil
	}
	tx, err := t.diskTx()
	if err != nil {
		return err
	}
	return putStdin(tx, callID, data)
}

func putStdin(tx *bolt.Tx, callID string, data []byte) error {
	if err := tx.Bucket(bucketStdin).Put([]byte(callID), data); err != nil {
		return fmt.Errorf("put stdin %s: %w", callID, err)
	}
	return nil
}

// DeleteStdin drops a call's stdin (it ended, or its function went),
// wherever it was kept.
func DeleteStdin(t *Txn, callID string) error {
	raw, err := t.Txn.First(TableStdin, IndexID, callID)
	if err != nil {
		return fmt.Errorf("delete stdin %s: %w", callID, err)
	}
	if raw != nil {
		if err := t.Txn.Delete(TableStdin, raw); err != nil {
			return fmt.Errorf("delete stdin %s: %w", callID, err)
		}
		t.heldDelta -= int64(len(raw.(*heldStdin).Data))
		return nil
	}
	tx, err := t.diskTx()
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketStdin).Delete([]byte(callID)); err != nil {
		return fmt.Errorf("delete stdin %s: %w", callID, err)
	}
	return nil
}

// Stdin reads a call's stdin (a copy); nil when it has none.
func Stdin(r *Read, callID string) []byte { return stdin(r.Mem, r.disk, callID) }

func stdin(mem *memdb.Txn, tx *bolt.Tx, callID string) []byte {
	if raw, _ := mem.First(TableStdin, IndexID, callID); raw != nil {
		return append([]byte{}, raw.(*heldStdin).Data...)
	}
	v := tx.Bucket(bucketStdin).Get([]byte(callID))
	if v == nil {
		return nil
	}
	return append([]byte{}, v...)
}
