package cachestore

import (
	"fmt"

	memdb "github.com/hashicorp/go-memdb"
	bolt "go.etcd.io/bbolt"
)

// Output is the stdout of one finished call.
type Output struct {
	CallID   string
	Function string
	Seq      uint64 // the call's sequence number: insertion order within the function
	Data     []byte
}

// Size is what the output counts against its function's cap: its bytes,
// so that the cap means what a user reads (MaxEntries bounds the count).
func (o *Output) Size() int64 { return int64(len(o.Data)) }

// PutOutput stores an output and rotates the function's oldest outputs out
// until its cache is within limit bytes and MaxEntries. It returns the call
// IDs that rotated out (possibly o's own, when o alone exceeds limit).
func PutOutput(t *Txn, o *Output, limit int64) ([]string, error) {
	tx, err := t.diskTx()
	if err != nil {
		return nil, err
	}
	b, err := putOutput(tx, o)
	if err != nil {
		return nil, err
	}
	u, err := addUsage(t.Txn, KindOutput, o.Function, o.Size(), 1)
	if err != nil {
		return nil, err
	}
	var rotated []string
	for u.over(limit) {
		k, v := b.Cursor().First()
		if k == nil {
			return nil, fmt.Errorf("output usage of %s says %d bytes but no output is left", o.Function, u.Bytes)
		}
		id, n, err := outputHead(v)
		if err != nil {
			return nil, fmt.Errorf("oldest output of %s: %w", o.Function, err)
		}
		if err := b.Delete(k); err != nil {
			return nil, fmt.Errorf("rotate output %s: %w", id, err)
		}
		if u, err = addUsage(t.Txn, KindOutput, o.Function, -n, -1); err != nil {
			return nil, err
		}
		rotated = append(rotated, id)
	}
	return rotated, nil
}

// GetOutput reads a call's output (a copy); nil when absent (never stored,
// or rotated out). The watch set fires when the function's output cache
// changes.
func GetOutput(r *Read, ws memdb.WatchSet, callID string) (*Output, error) {
	fn, seq, ok := lookupID(r.disk, callID)
	if !ok {
		return nil, nil
	}
	_, ch, err := usageWatch(r.Mem, KindOutput, fn)
	if err != nil {
		return nil, err
	}
	ws.Add(ch)
	return getOutput(r.disk.Bucket([]byte(fn)), seq)
}

// HasOutput reports whether a call's output is in the cache, without
// reading it.
func HasOutput(t *Txn, callID string) (bool, error) {
	tx, err := t.diskTx()
	if err != nil {
		return false, err
	}
	fn, seq, ok := lookupID(tx, callID)
	if !ok {
		return false, nil
	}
	b, err := bucket(tx, fn, bucketOutputs, false)
	if err != nil || b == nil {
		return false, err
	}
	return b.Get(seqKey(seq)) != nil, nil
}

// putOutput writes an output and its call's ID entry; it answers the
// function's output bucket.
func putOutput(tx *bolt.Tx, o *Output) (*bolt.Bucket, error) {
	b, err := bucket(tx, o.Function, bucketOutputs, true)
	if err != nil {
		return nil, err
	}
	if err := b.Put(seqKey(o.Seq), EncodeOutput(o, nil)); err != nil {
		return nil, fmt.Errorf("put output %s: %w", o.CallID, err)
	}
	if err := tx.Bucket(bucketIDs).Put([]byte(o.CallID), idValue(o.Function, o.Seq)); err != nil {
		return nil, fmt.Errorf("put output %s: %w", o.CallID, err)
	}
	return b, nil
}
