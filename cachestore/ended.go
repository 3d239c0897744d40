package cachestore

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/hyperfunc/hyperfunc/internal/record"
)

// Ended calls' records are the state store's (an opaque record here); the
// caches keep them on disk beside the outputs and log events that outlive
// the call. A value is the call ID, then the record.

func endedValue(callID string, rec []byte) []byte {
	e := record.Enc{B: make([]byte, 0, len(callID)+len(rec)+2)}
	e.Str(callID)
	e.B = append(e.B, rec...)
	return e.B
}

// EndedCallID reads the call ID of an ended-call value.
func EndedCallID(v []byte) (string, error) {
	id, _, err := splitEnded(v)
	return id, err
}

func splitEnded(v []byte) (string, []byte, error) {
	d := record.Dec{B: v}
	id := d.Str()
	if d.Err != nil {
		return "", nil, fmt.Errorf("ended call record: %w", d.Err)
	}
	return id, d.B, nil
}

// PutEnded stores (or replaces) the record of an ended call of function at
// its sequence number.
func PutEnded(t *Txn, function string, seq uint64, callID string, rec []byte) error {
	tx, err := t.diskTx()
	if err != nil {
		return err
	}
	return putEnded(tx, function, seq, callID, rec)
}

func putEnded(tx *bolt.Tx, function string, seq uint64, callID string, rec []byte) error {
	b, err := bucket(tx, function, bucketEnded, true)
	if err != nil {
		return err
	}
	if err := b.Put(seqKey(seq), endedValue(callID, rec)); err != nil {
		return fmt.Errorf("put ended call %s: %w", callID, err)
	}
	if err := tx.Bucket(bucketIDs).Put([]byte(callID), idValue(function, seq)); err != nil {
		return fmt.Errorf("put ended call %s: %w", callID, err)
	}
	return nil
}

// Ended reads an ended call's record (a copy); nil when there is none.
func Ended(t *Txn, callID string) ([]byte, error) {
	tx, err := t.diskTx()
	if err != nil {
		return nil, err
	}
	return ended(tx, callID)
}

// EndedRead is Ended in a read.
func EndedRead(r *Read, callID string) ([]byte, error) { return ended(r.disk, callID) }

func ended(tx *bolt.Tx, callID string) ([]byte, error) {
	fn, seq, ok := lookupID(tx, callID)
	if !ok {
		return nil, nil
	}
	b, err := bucket(tx, fn, bucketEnded, false)
	if err != nil || b == nil {
		return nil, err
	}
	v := b.Get(seqKey(seq))
	if v == nil {
		return nil, nil
	}
	_, rec, err := splitEnded(v)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), rec...), nil
}

// DeleteEnded drops an ended call's record; the state store forgets a
// call only once its output rotated out.
func DeleteEnded(t *Txn, callID string) error {
	tx, err := t.diskTx()
	if err != nil {
		return err
	}
	fn, seq, ok := lookupID(tx, callID)
	if !ok {
		return nil
	}
	if b, err := bucket(tx, fn, bucketEnded, false); err != nil {
		return err
	} else if b != nil {
		if err := b.Delete(seqKey(seq)); err != nil {
			return fmt.Errorf("delete ended call %s: %w", callID, err)
		}
	}
	if err := tx.Bucket(bucketIDs).Delete([]byte(callID)); err != nil {
		return fmt.Errorf("delete ended call %s: %w", callID, err)
	}
	return nil
}

// EndedOfFunction returns the records of a function's ended calls with a
// sequence number past after, oldest first, at most n of them when n > 0.
func EndedOfFunction(r *Read, function string, after uint64, n int) ([][]byte, error) {
	b, err := bucket(r.disk, function, bucketEnded, false)
	if err != nil || b == nil {
		return nil, err
	}
	var out [][]byte
	c := b.Cursor()
	for k, v := c.Seek(seqKey(after + 1)); k != nil && (n <= 0 || len(out) < n); k, v = c.Next() {
		_, rec, err := splitEnded(v)
		if err != nil {
			return nil, err
		}
		out = append(out, append([]byte(nil), rec...))
	}
	return out, nil
}

// EndedCursor walks a function's ended calls by sequence number, oldest
// first or newest first, inside a Read.
type EndedCursor struct {
	c    *bolt.Cursor
	desc bool
	k, v []byte
}

// OpenEnded positions a cursor on the function's first ended call in the
// walk's order (Valid is false when it has none).
func OpenEnded(r *Read, function string, desc bool) (*EndedCursor, error) {
	b, err := bucket(r.disk, function, bucketEnded, false)
	if err != nil || b == nil {
		return &EndedCursor{}, err
	}
	ec := &EndedCursor{c: b.Cursor(), desc: desc}
	if desc {
		ec.k, ec.v = ec.c.Last()
	} else {
		ec.k, ec.v = ec.c.First()
	}
	return ec, nil
}

// Valid reports whether the cursor is on a call.
func (ec *EndedCursor) Valid() bool { return ec.k != nil }

// Seq is the sequence number of the call the cursor is on.
func (ec *EndedCursor) Seq() uint64 { return binary.BigEndian.Uint64(ec.k) }

// Record is the record of the call the cursor is on, valid until the Read
// closes.
func (ec *EndedCursor) Record() ([]byte, error) {
	_, rec, err := splitEnded(ec.v)
	return rec, err
}

// Next moves to the next call in the walk's order.
func (ec *EndedCursor) Next() {
	if ec.desc {
		ec.k, ec.v = ec.c.Prev()
	} else {
		ec.k, ec.v = ec.c.Next()
	}
}
