package cachestore

import (
	"fmt"

	memdb "github.com/hashicorp/go-memdb"
)

// Output is the stdout of one finished call.
type Output struct {
	CallID   string
	Function string
	Seq      uint64 // insertion order within the function (leader-stamped)
	Data     []byte
}

// OutputOverhead is what an output costs besides its data (the row and its
// index entries, roughly). Counting it keeps the number of outputs under a
// cap finite even when they are empty.
const OutputOverhead = 128

// Size is what the output counts against its function's cap.
func (o *Output) Size() int64 { return OutputOverhead + int64(len(o.Data)) }

func outputsTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: TableOutputs,
		Indexes: map[string]*memdb.IndexSchema{
			IndexID: {
				Name:    IndexID,
				Unique:  true,
				Indexer: StringIndex[Output]{Field: "CallID", Get: func(o *Output) string { return o.CallID }},
			},
			IndexFunction: functionSeqIndex(IndexFunction,
				func(o *Output) string { return o.Function }, func(o *Output) uint64 { return o.Seq }),
		},
	}
}

// PutOutput stores an output and rotates the function's oldest outputs out
// until its cache holds at most limit bytes. It returns the call IDs that
// rotated out (possibly including o itself, when o alone exceeds limit).
func PutOutput(txn *memdb.Txn, o *Output, limit int64) ([]string, error) {
	if err := txn.Insert(TableOutputs, o); err != nil {
		return nil, fmt.Errorf("insert output %s: %w", o.CallID, err)
	}
	u, err := addUsage(txn, KindOutput, o.Function, o.Size(), 1)
	if err != nil {
		return nil, err
	}
	var rotated []string
	for u.Bytes > limit {
		raw, err := txn.First(TableOutputs, IndexFunction+"_prefix", Exact(o.Function))
		if err != nil {
			return nil, fmt.Errorf("oldest output of %s: %w", o.Function, err)
		}
		if raw == nil {
			return nil, fmt.Errorf("output usage of %s says %d bytes but no output is left", o.Function, u.Bytes)
		}
		old := raw.(*Output)
		if err := txn.Delete(TableOutputs, old); err != nil {
			return nil, fmt.Errorf("rotate output %s: %w", old.CallID, err)
		}
		if u, err = addUsage(txn, KindOutput, o.Function, -old.Size(), -1); err != nil {
			return nil, err
		}
		rotated = append(rotated, old.CallID)
	}
	return rotated, nil
}

// GetOutput reads a call's output; nil when absent (never stored, or rotated out).
func GetOutput(txn *memdb.Txn, ws memdb.WatchSet, callID string) (*Output, error) {
	ch, raw, err := txn.FirstWatch(TableOutputs, IndexID, callID)
	if err != nil {
		return nil, fmt.Errorf("output lookup: %w", err)
	}
	ws.Add(ch)
	if raw == nil {
		return nil, nil
	}
	return raw.(*Output), nil
}

// DeleteOutput drops one output.
func DeleteOutput(txn *memdb.Txn, callID string) error {
	raw, err := txn.First(TableOutputs, IndexID, callID)
	if err != nil || raw == nil {
		return err
	}
	o := raw.(*Output)
	if err := txn.Delete(TableOutputs, o); err != nil {
		return fmt.Errorf("delete output %s: %w", callID, err)
	}
	_, err = addUsage(txn, KindOutput, o.Function, -o.Size(), -1)
	return err
}

// RestoreOutput inserts an output as read from a snapshot (usage rows are
// restored separately, as they were).
func RestoreOutput(txn *memdb.Txn, o *Output) error {
	return txn.Insert(TableOutputs, o)
}
