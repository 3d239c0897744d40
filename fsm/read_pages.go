package fsm

import (
	"fmt"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/hyperfunc/hyperfunc/cachestore"
)

// Paged reads walk in either direction and stop when the visitor says so,
// so a page of 50 out of 100,000 calls costs ~50 steps (plus the skipped
// ones before a cursor), never a copy of the whole list. Calls that have
// not ended come from memdb's indexes, ended ones from the disk half's
// per-function order; a walk merges them by sequence number.

// before reports whether sequence number a comes first in the walk.
func before(a, b uint64, desc bool) bool {
	if desc {
		return a > b
	}
	return a < b
}

// liveCalls iterates memdb's calls on an index in the walk's order.
func liveCalls(r *cachestore.Read, ws memdb.WatchSet, desc bool, index string, args ...any) (memdb.ResultIterator, error) {
	var it memdb.ResultIterator
	var err error
	if desc {
		it, err = r.Mem.GetReverse(TableCalls, index, args...)
	} else {
		it, err = r.Mem.Get(TableCalls, index, args...)
	}
	if err != nil {
		return nil, fmt.Errorf("calls walk: %w", err)
	}
	ws.Add(it.WatchCh())
	return it, nil
}

// merge visits live (memdb) and ended (disk cursors) calls in the walk's
// order until visit returns false; keep filters the ended ones.
func merge(live memdb.ResultIterator, ended []*cachestore.EndedCursor, desc bool, keep func(*Call) bool, visit func(*Call) bool) error {
	intern := map[string]string{}
	next := live.Next()
	for {
		var best *cachestore.EndedCursor
		for _, ec := range ended {
			if ec.Valid() && (best == nil || before(ec.Seq(), best.Seq(), desc)) {
				best = ec
			}
		}
		if next != nil && (best == nil || before(next.(*Call).Seq, best.Seq(), desc)) {
			if !visit(next.(*Call)) {
				return nil
			}
			next = live.Next()
			continue
		}
		if best == nil {
			return nil
		}
		rec, err := best.Record()
		if err != nil {
			return err
		}
		c, err := decodeCall(rec, intern)
		if err != nil {
			return fmt.Errorf("calls walk: %w", err)
		}
		best.Next()
		if keep(c) && !visit(c) {
			return nil
		}
	}
}

// WalkCallsOfFunction visits a function's calls in acceptance order
// (newest first when desc) until visit returns false.
func (s *Store) WalkCallsOfFunction(ws memdb.WatchSet, fnID string, desc bool, visit func(*Call) bool) error {
	r, err := s.read()
	if err != nil {
		return err
	}
	defer r.Close()
	live, err := liveCalls(r, ws, desc, IndexFunction+"_prefix", cachestore.Exact(fnID))
	if err != nil {
		return err
	}
	ec, err := cachestore.OpenEnded(r, fnID, desc)
	if err != nil {
		return err
	}
	return merge(live, []*cachestore.EndedCursor{ec}, desc, func(*Call) bool { return true }, visit)
}

// WalkCallsInState visits owner's calls in one stored state (STARTING is
// its own state here) in acceptance order, newest first when desc. Calls
// not ended come from the queue index; ended ones from a merge of the
// owner's functions' ended calls, filtered by state (so a page of a rare
// state may read many records).
func (s *Store) WalkCallsInState(ws memdb.WatchSet, owner, state string, desc bool, visit func(*Call) bool) error {
	r, err := s.read()
	if err != nil {
		return err
	}
	defer r.Close()
	live, err := liveCalls(r, ws, desc, IndexQueue+"_prefix", owner, cachestore.Exact(state))
	if err != nil {
		return err
	}
	var ended []*cachestore.EndedCursor
	if Final(state) {
		it, err := r.Mem.Get(TableFunctions, IndexOwner, owner)
		if err != nil {
			return fmt.Errorf("functions of %s: %w", owner, err)
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			ec, err := cachestore.OpenEnded(r, raw.(*Function).ID, desc)
			if err != nil {
				return err
			}
			ended = append(ended, ec)
		}
	}
	return merge(live, ended, desc, func(c *Call) bool { return c.State == state }, visit)
}
