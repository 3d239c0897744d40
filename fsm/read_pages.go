package fsm

import (
	"fmt"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/hyperfunc/hyperfunc/cachestore"
)

// Paged reads walk an index in either direction and stop when the visitor
// says so, so a page of 50 out of 100,000 calls costs ~50 steps (plus the
// skipped ones before a cursor), never a copy of the whole list.

func walk(s *Store, ws memdb.WatchSet, desc bool, visit func(*Call) bool, index string, args ...any) error {
	txn := s.ReadTxn()
	var it memdb.ResultIterator
	var err error
	if desc {
		it, err = txn.GetReverse(TableCalls, index, args...)
	} else {
		it, err = txn.Get(TableCalls, index, args...)
	}
	if err != nil {
		return fmt.Errorf("calls walk: %w", err)
	}
	ws.Add(it.WatchCh())
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if !visit(raw.(*Call)) {
			return nil
		}
	}
	return nil
}

// WalkCallsOfFunction visits a function's calls in acceptance order
// (newest first when desc) until visit returns false.
func (s *Store) WalkCallsOfFunction(ws memdb.WatchSet, fnID string, desc bool, visit func(*Call) bool) error {
	return walk(s, ws, desc, visit, IndexFunction+"_prefix", cachestore.Exact(fnID))
}

// WalkCallsInState visits owner's calls in one stored state (STARTING is
// its own state here) in acceptance order, newest first when desc.
func (s *Store) WalkCallsInState(ws memdb.WatchSet, owner, state string, desc bool, visit func(*Call) bool) error {
	return walk(s, ws, desc, visit, IndexQueue+"_prefix", owner, cachestore.Exact(state))
}
