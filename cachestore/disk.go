package cachestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	bolt "go.etcd.io/bbolt"
)

// The file's layout: one top-level bucket per function (its ID), holding
// the buckets below, keyed by the 8-byte big-endian sequence number (the
// call's for outputs and ended calls, the event's for logs), so a cursor's
// First is a cache's oldest entry; and bucketIDs, call ID -> function ID,
// NUL, sequence, for the lookups by call.
var (
	bucketIDs     = []byte("\x00ids") // no function ID starts with NUL
	bucketOutputs = []byte("out")
	bucketLogs    = []byte("log")
	bucketEnded   = []byte("end")
)

// mmapSize is the address space bbolt maps up front. bbolt remaps when the
// file outgrows its mapping, and a remap waits for every read transaction;
// a snapshot streams the caches from one read transaction for as long as
// it takes, so a remap then would stall the FSM's applies. Address space is
// not memory: pages count towards RSS only when read.
const mmapSize = 16 << 30

// DB is the on-disk half of the state: one bbolt file.
type DB struct {
	bolt *bolt.DB
	path string
	// written counts the bytes of pages commits wrote since the last Trim.
	// Writing reads the leaves it changes through the mapping, so it maps
	// about as much as it writes (see trim.go).
	written atomic.Int64
	// held counts the bytes of stdin kept in memdb (stdin.go), as of the
	// last commit; heldMax bounds it.
	held    atomic.Int64
	heldMax int64
}

// Open creates an empty store at path, removing what a previous process
// left there: the file is rebuilt from Raft (see the package comment).
// Writes are not fsynced, for the same reason.
func Open(path string) (*DB, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("cache store: %w", err)
	}
	b, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         10 * time.Second, // another process holding the file
		NoSync:          true,
		NoFreelistSync:  true,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: mmapSize,
	})
	if err != nil {
		return nil, fmt.Errorf("cache store %s: %w", path, err)
	}
	if err := b.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketIDs, bucketStdin} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Close()
		return nil, fmt.Errorf("cache store %s: %w", path, err)
	}
	return &DB{bolt: b, path: path, heldMax: DefaultHeldStdinMax}, nil
}

// Path is the file's path.
func (d *DB) Path() string { return d.path }

// Size is the file's size in bytes (bbolt's high-water mark: freed pages
// are reused, not returned).
func (d *DB) Size() int64 {
	var n int64
	_ = d.bolt.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n
}

// Close closes the file after the read transactions still open end, and
// removes it. Removing an open file is fine on Linux: a reader that still
// maps it keeps its pages.
func (d *DB) Close() error {
	err := d.bolt.Close()
	if rerr := os.Remove(d.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
		err = rerr
	}
	return err
}

// Txn is one apply's write: the memdb write transaction (embedded, so the
// state store's handlers use it as before) and a bbolt write transaction
// begun on first use. The caller commits Disk before Mem (Commit), and
// aborts both when the apply fails (Abort).
type Txn struct {
	*memdb.Txn
	db   *DB
	disk *bolt.Tx
	// heldDelta is what this write adds to db.held (stdin.go) once
	// committed.
	heldDelta int64
}

// NewTxn starts an apply's write on both halves.
func NewTxn(mem *memdb.MemDB, db *DB) *Txn {
	return &Txn{Txn: mem.Txn(true), db: db}
}

func (t *Txn) diskTx() (*bolt.Tx, error) {
	if t.disk == nil {
		tx, err := t.db.bolt.Begin(true)
		if err != nil {
			return nil, fmt.Errorf("cache store write: %w", err)
		}
		t.disk = tx
	}
	return t.disk, nil
}

// Commit commits the disk half, then memdb's. An error means the disk
// half failed and memdb is unchanged; the FSM cannot go on from there
// (see fsm's processor).
func (t *Txn) Commit() error {
	if err := t.CommitDisk(); err != nil {
		return err
	}
	t.Txn.Commit()
	return nil
}

// CommitDisk commits the disk half alone (Commit's first step); the memdb
// transaction is then committed with t.Txn.Commit. On error memdb's is
// aborted.
func (t *Txn) CommitDisk() error {
	// Writes are serial (memdb has one writer), so the count may move
	// before memdb's commit: no other write reads it in between. It moves
	// only once the disk half committed (memdb's is aborted otherwise).
	delta := t.heldDelta
	t.heldDelta = 0
	if t.disk == nil {
		t.db.held.Add(delta)
		return nil
	}
	err := t.disk.Commit()
	st := t.disk.Stats()
	t.db.written.Add(st.GetPageAlloc())
	t.disk = nil
	if err != nil {
		t.Txn.Abort()
		return fmt.Errorf("cache store commit: %w", err)
	}
	t.db.held.Add(delta)
	return nil
}

// Abort drops both halves' changes; after Commit it does nothing.
func (t *Txn) Abort() {
	if t.disk != nil {
		_ = t.disk.Rollback()
		t.disk = nil
	}
	t.Txn.Abort()
}

// Read is a read on both halves: memdb's read transaction and a bbolt read
// transaction. Close it soon: bytes read from the disk half are copied out.
type Read struct {
	Mem  *memdb.Txn
	disk *bolt.Tx
}

// NewRead opens a read on both halves.
func NewRead(mem *memdb.MemDB, db *DB) (*Read, error) {
	tx, err := db.bolt.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("cache store read: %w", err)
	}
	return &Read{Mem: mem.Txn(false), disk: tx}, nil
}

// Close ends the disk half's read transaction.
func (r *Read) Close() { _ = r.disk.Rollback() }

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func idValue(function string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(function), 0), seq)
}

func parseIDValue(v []byte) (string, uint64, bool) {
	if len(v) < 9 || v[len(v)-9] != 0 {
		return "", 0, false
	}
	return string(v[:len(v)-9]), binary.BigEndian.Uint64(v[len(v)-8:]), true
}

// bucket returns a function's bucket of the given kind; with create, it is
// made when missing, else nil means it has none.
func bucket(tx *bolt.Tx, function string, kind []byte, create bool) (*bolt.Bucket, error) {
	fb := tx.Bucket([]byte(function))
	if fb == nil {
		if !create {
			return nil, nil
		}
		var err error
		if fb, err = tx.CreateBucket([]byte(function)); err != nil {
			return nil, fmt.Errorf("cache store bucket %q: %w", function, err)
		}
	}
	b := fb.Bucket(kind)
	if b == nil && create {
		var err error
		if b, err = fb.CreateBucket(kind); err != nil {
			return nil, fmt.Errorf("cache store bucket %q/%s: %w", function, kind, err)
		}
	}
	return b, nil
}

// lookupID finds where a call's records are kept.
func lookupID(tx *bolt.Tx, callID string) (string, uint64, bool) {
	v := tx.Bucket(bucketIDs).Get([]byte(callID))
	if v == nil {
		return "", 0, false
	}
	return parseIDValue(v)
}

// DeleteFunction drops both caches and the ended calls of a function.
func DeleteFunction(t *Txn, function string) error {
	tx, err := t.diskTx()
	if err != nil {
		return err
	}
	if fb := tx.Bucket([]byte(function)); fb != nil {
		if eb := fb.Bucket(bucketEnded); eb != nil {
			ids := tx.Bucket(bucketIDs)
			if err := eb.ForEach(func(_, v []byte) error {
				id, err := EndedCallID(v)
				if err != nil {
					return err
				}
				return ids.Delete([]byte(id))
			}); err != nil {
				return fmt.Errorf("delete ended calls of %s: %w", function, err)
			}
		}
		if err := tx.DeleteBucket([]byte(function)); err != nil {
			return fmt.Errorf("delete caches of %s: %w", function, err)
		}
	}
	for _, k := range []Kind{KindOutput, KindLog} {
		if _, err := t.Txn.DeleteAll(TableUsage, IndexID, string(k), function); err != nil {
			return fmt.Errorf("delete usage of %s: %w", function, err)
		}
	}
	return nil
}

// getOutput reads the output at seq in a function's bucket (which may be
// nil); nil when absent. DecodeOutput copies the data out of the map.
func getOutput(fb *bolt.Bucket, seq uint64) (*Output, error) {
	if fb == nil {
		return nil, nil
	}
	b := fb.Bucket(bucketOutputs)
	if b == nil {
		return nil, nil
	}
	v := b.Get(seqKey(seq))
	if v == nil {
		return nil, nil
	}
	o, err := DecodeOutput(v, nil)
	if err != nil {
		return nil, fmt.Errorf("output at %d: %w", seq, err)
	}
	return o, nil
}
