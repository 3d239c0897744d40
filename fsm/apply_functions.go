package fsm

import (
	"fmt"

	"github.com/hyperfunc/hyperfunc/cachestore"
)

// MaxWarm bounds Function.Warm: a pool is a standing cost on the agent.
const MaxWarm = 16

func (p *processor) applyFunctionUpsert(txn *cachestore.Txn, index uint64, req *FunctionUpsertRequest) any {
	f := *req.Function
	if f.Warm < 0 || f.Warm > MaxWarm {
		return fmt.Errorf("function %q: warm %d is outside 0..%d: %w", f.Name, f.Warm, MaxWarm, ErrLimit)
	}
	raw, err := txn.First(TableFunctions, IndexID, f.ID)
	if err != nil {
		return fmt.Errorf("function lookup: %w", err)
	}
	switch {
	case raw != nil && req.Create:
		return fmt.Errorf("function %q %w", f.Name, ErrExists)
	case raw == nil && !req.Create:
		return fmt.Errorf("function %q %w", f.Name, ErrNotFound)
	case raw != nil:
		old := raw.(*Function)
		f.CreateIndex, f.CreatedAt = old.CreateIndex, old.CreatedAt
	default:
		if req.MaxPerOwner > 0 {
			it, err := txn.Get(TableFunctions, IndexOwner, f.Owner)
			if err != nil {
				return fmt.Errorf("functions of %s: %w", f.Owner, err)
			}
			n := 0
			for x := it.Next(); x != nil; x = it.Next() {
				n++
			}
			if n >= req.MaxPerOwner {
				return fmt.Errorf("user %q has %d functions, the most a user may have: %w", f.Owner, n, ErrLimit)
			}
		}
		f.CreateIndex = index
	}
	f.ModifyIndex = index
	if err := txn.Insert(TableFunctions, &f); err != nil {
		return fmt.Errorf("function insert: %w", err)
	}
	return setIndex(txn, TableFunctions, index)
}

// applyFunctionDelete refuses while a call of the function holds an
// executor slot (the container or Nomad job would be orphaned); queued
// calls end CANCELED, and the function's calls and caches go with it.
func (p *processor) applyFunctionDelete(txn *cachestore.Txn, index uint64, req *FunctionDeleteRequest) any {
	raw, err := txn.First(TableFunctions, IndexID, req.ID)
	if err != nil {
		return fmt.Errorf("function lookup: %w", err)
	}
	if raw == nil {
		return fmt.Errorf("function %q %w", req.ID, ErrNotFound)
	}
	it, err := txn.Get(TableCalls, IndexFunction+"_prefix", cachestore.Exact(req.ID))
	if err != nil {
		return fmt.Errorf("calls of %s: %w", req.ID, err)
	}
	var calls []*Call
	for c := it.Next(); c != nil; c = it.Next() {
		call := c.(*Call)
		if Started(call.State) {
			return fmt.Errorf("function %q has a call running (%s): %w", raw.(*Function).Name, call.ID, ErrConflict)
		}
		calls = append(calls, call)
	}
	for _, c := range calls {
		if c.State == StatePending {
			if err := bumpOwner(txn, c.Owner, -1, 0, -c.StdinSize); err != nil {
				return err
			}
		}
		if err := txn.Delete(TableCalls, c); err != nil {
			return fmt.Errorf("call delete: %w", err)
		}
		if err := cachestore.DeleteStdin(txn, c.ID); err != nil {
			return err
		}
	}
	if _, err := txn.DeleteAll(TableFnStats, IndexID, req.ID); err != nil {
		return fmt.Errorf("stats delete: %w", err)
	}
	if err := cachestore.DeleteFunction(txn, req.ID); err != nil {
		return err
	}
	if err := txn.Delete(TableFunctions, raw); err != nil {
		return fmt.Errorf("function delete: %w", err)
	}
	for _, t := range []string{TableFunctions, TableCalls, TableOwnerUsage} {
		if err := setIndex(txn, t, index); err != nil {
			return err
		}
	}
	return nil
}
