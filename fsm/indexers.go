package fsm

import (
	"encoding/binary"
	"fmt"
)

// Indexers of the calls table read fields through plain functions instead
// of memdb's reflection-based field indexers: a restore of many calls
// spends most of its time computing index keys. They encode exactly as
// memdb's StringFieldIndex and UintFieldIndex do (a string and a NUL; 8
// bytes big-endian), so prefix lookups keep their meaning
// (cachestore.Exact).

// StringIndex indexes a string field of *T.
type StringIndex[T any] struct {
	Field string // for the schema's golden description
	Get   func(*T) string
}

// FromObject implements memdb.SingleIndexer.
func (x StringIndex[T]) FromObject(raw any) (bool, []byte, error) {
	o, ok := raw.(*T)
	if !ok {
		return false, nil, fmt.Errorf("index on %s: unexpected %T", x.Field, raw)
	}
	v := x.Get(o)
	if v == "" {
		return false, nil, nil
	}
	b := make([]byte, len(v)+1)
	copy(b, v)
	return true, b, nil
}

// FromArgs implements memdb.Indexer.
func (x StringIndex[T]) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("index on %s takes one argument", x.Field)
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("index on %s: argument must be a string: %#v", x.Field, args[0])
	}
	return append([]byte(s), 0), nil
}

// PrefixFromArgs implements memdb.PrefixIndexer.
func (x StringIndex[T]) PrefixFromArgs(args ...any) ([]byte, error) {
	b, err := x.FromArgs(args...)
	if err != nil {
		return nil, err
	}
	return b[:len(b)-1], nil
}

// UintIndex indexes a uint64 field of *T.
type UintIndex[T any] struct {
	Field string
	Get   func(*T) uint64
}

// FromObject implements memdb.SingleIndexer.
func (x UintIndex[T]) FromObject(raw any) (bool, []byte, error) {
	o, ok := raw.(*T)
	if !ok {
		return false, nil, fmt.Errorf("index on %s: unexpected %T", x.Field, raw)
	}
	return true, binary.BigEndian.AppendUint64(nil, x.Get(o)), nil
}

// FromArgs implements memdb.Indexer.
func (x UintIndex[T]) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("index on %s takes one argument", x.Field)
	}
	v, ok := args[0].(uint64)
	if !ok {
		return nil, fmt.Errorf("index on %s: argument must be a uint64: %#v", x.Field, args[0])
	}
	return binary.BigEndian.AppendUint64(nil, v), nil
}

func (x StringIndex[T]) String() string { return "string(" + x.Field + ")" }

func (x UintIndex[T]) String() string { return "uint64(" + x.Field + ")" }
