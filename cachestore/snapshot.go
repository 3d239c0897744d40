package cachestore

import (
	"bytes"
	"fmt"

	memdb "github.com/hashicorp/go-memdb"
	bolt "go.etcd.io/bbolt"
)

// RecordKind tells the records of a snapshot apart.
type RecordKind byte

// The disk half's records.
const (
	RecordEnded  RecordKind = iota + 1 // the state store's record of an ended call
	RecordOutput                       // EncodeOutput
	RecordLog                          // EncodeLog
)

// Snapshot is a point-in-time read of the disk half for a Raft snapshot:
// taken on the FSM's goroutine beside memdb's snapshot, so the two agree,
// and streamed later from another goroutine.
type Snapshot struct{ tx *bolt.Tx }

// Snapshot opens the read. Release it when done.
func (d *DB) Snapshot() (*Snapshot, error) {
	tx, err := d.bolt.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("cache store snapshot: %w", err)
	}
	return &Snapshot{tx: tx}, nil
}

// Release ends the read.
func (s *Snapshot) Release() { _ = s.tx.Rollback() }

// Stdin reads a call's stdin as of the snapshot (a copy), mem being the
// memdb read taken with it: the state store writes it inside the record
// of its call.
func (s *Snapshot) Stdin(mem *memdb.Txn, callID string) []byte { return stdin(mem, s.tx, callID) }

// Each calls fn with every record, function by function, ended calls,
// then outputs, then logs, each oldest first. rec is valid only during
// the call.
func (s *Snapshot) Each(fn func(kind RecordKind, rec []byte) error) error {
	return s.tx.ForEach(func(name []byte, fb *bolt.Bucket) error {
		if bytes.Equal(name, bucketIDs) || bytes.Equal(name, bucketStdin) {
			return nil
		}
		for _, k := range []struct {
			name []byte
			kind RecordKind
		}{{bucketEnded, RecordEnded}, {bucketOutputs, RecordOutput}, {bucketLogs, RecordLog}} {
			b := fb.Bucket(k.name)
			if b == nil {
				continue
			}
			if err := b.ForEach(func(_, v []byte) error {
				if k.kind == RecordEnded {
					_, rec, err := splitEnded(v)
					if err != nil {
						return err
					}
					v = rec
				}
				return fn(k.kind, v)
			}); err != nil {
				return err
			}
		}
		return nil
	})
}

// loadBatch is how many bytes a restore writes per bbolt transaction: big
// enough that commits do not dominate, small enough to bound the dirty
// pages bbolt keeps in the heap until commit.
const loadBatch = 16 << 20

// Loader fills an empty store from a snapshot's records and counts the
// usage rows into a memdb write transaction (recomputed, not read: the
// counts are always the sums of what is stored).
type Loader struct {
	db      *DB
	mem     *memdb.Txn
	tx      *bolt.Tx
	pending int
}

// NewLoader starts a restore into db.
func NewLoader(db *DB, mem *memdb.Txn) *Loader { return &Loader{db: db, mem: mem} }

func (l *Loader) begin(n int) (*bolt.Tx, error) {
	if l.tx != nil && l.pending+n > loadBatch {
		if err := l.tx.Commit(); err != nil {
			l.tx = nil
			return nil, fmt.Errorf("cache store restore: %w", err)
		}
		l.tx = nil
	}
	if l.tx == nil {
		tx, err := l.db.bolt.Begin(true)
		if err != nil {
			return nil, fmt.Errorf("cache store restore: %w", err)
		}
		l.tx, l.pending = tx, 0
	}
	l.pending += n
	return l.tx, nil
}

// Output loads an output.
func (l *Loader) Output(o *Output) error {
	tx, err := l.begin(len(o.Data))
	if err != nil {
		return err
	}
	if _, err := putOutput(tx, o); err != nil {
		return err
	}
	_, err = addUsage(l.mem, KindOutput, o.Function, o.Size(), 1)
	return err
}

// Log loads a log entry.
func (l *Loader) Log(e *LogEntry) error {
	tx, err := l.begin(len(e.Text) + 64)
	if err != nil {
		return err
	}
	if _, err := putLog(tx, e); err != nil {
		return err
	}
	_, err = addUsage(l.mem, KindLog, e.Function, e.Size(), 1)
	return err
}

// Stdin loads a queued call's stdin.
func (l *Loader) Stdin(callID string, data []byte) error {
	tx, err := l.begin(len(data))
	if err != nil {
		return err
	}
	return putStdin(tx, callID, data)
}

// Ended loads an ended call's record.
func (l *Loader) Ended(function string, seq uint64, callID string, rec []byte) error {
	tx, err := l.begin(len(rec))
	if err != nil {
		return err
	}
	return putEnded(tx, function, seq, callID, rec)
}

// Close commits what is left; Abort drops it.
func (l *Loader) Close() error {
	if l.tx == nil {
		return nil
	}
	err := l.tx.Commit()
	l.tx = nil
	if err != nil {
		return fmt.Errorf("cache store restore: %w", err)
	}
	return nil
}

// Abort drops the open batch (the caller drops the store).
func (l *Loader) Abort() {
	if l.tx != nil {
		_ = l.tx.Rollback()
		l.tx = nil
	}
}
