package fsm

import (
	"fmt"

	"github.com/hyperfunc/hyperfunc/cachestore"
)

// bumpOwner adjusts an owner's pending and running counts and the stdin
// bytes its calls hold; a row that drops to zero is removed so the
// dispatcher only visits busy owners.
func bumpOwner(txn *cachestore.Txn, owner string, dPending, dRunning int, dStdin int64) error {
	u := OwnerUsage{Owner: owner}
	raw, err := txn.First(TableOwnerUsage, IndexID, owner)
	if err != nil {
		return fmt.Errorf("owner usage lookup: %w", err)
	}
	if raw != nil {
		u = *raw.(*OwnerUsage)
	}
	u.Pending += dPending
	u.Running += dRunning
	u.StdinBytes += dStdin
	if u.Pending < 0 || u.Running < 0 || u.StdinBytes < 0 {
		return fmt.Errorf("owner usage of %s would go negative (%d pending, %d running, %d stdin bytes)", owner, u.Pending, u.Running, u.StdinBytes)
	}
	if u.Pending == 0 && u.Running == 0 {
		if raw != nil {
			if err := txn.Delete(TableOwnerUsage, raw); err != nil {
				return fmt.Errorf("owner usage delete: %w", err)
			}
		}
		return nil
	}
	if err := txn.Insert(TableOwnerUsage, &u); err != nil {
		return fmt.Errorf("owner usage update: %w", err)
	}
	return nil
}

// moveStats moves one call of fnID from state from to state to ("" for
// none) in the function's per-state counters.
func moveStats(txn *cachestore.Txn, fnID, from, to string) error {
	st := FunctionStats{Function: fnID}
	raw, err := txn.First(TableFnStats, IndexID, fnID)
	if err != nil {
		return fmt.Errorf("function stats lookup: %w", err)
	}
	if raw != nil {
		st = *raw.(*FunctionStats)
	}
	st.add(from, -1)
	st.add(to, 1)
	if err := txn.Insert(TableFnStats, &st); err != nil {
		return fmt.Errorf("function stats update: %w", err)
	}
	return nil
}

// setState moves a call to a new state and keeps both counters exact. The
// call is replaced by a copy: rows in memdb are never mutated in place,
// since readers of older snapshots still hold them.
func setState(txn *cachestore.Txn, index uint64, c *Call, state string) (*Call, error) {
	nc := *c
	nc.State = state
	nc.ModifyIndex = index
	dPending, dRunning, dStdin := 0, 0, int64(0)
	if Final(state) && !Final(c.State) {
		dStdin = -c.StdinSize // the call drops its input as it ends
	}
	switch {
	case c.State == StatePending:
		dPending--
	case Started(c.State):
		dRunning--
	}
	switch {
	case state == StatePending:
		dPending++
	case Started(state):
		dRunning++
	}
	if dPending != 0 || dRunning != 0 || dStdin != 0 {
		if err := bumpOwner(txn, c.Owner, dPending, dRunning, dStdin); err != nil {
			return nil, err
		}
	}
	if err := moveStats(txn, c.Function, c.State, state); err != nil {
		return nil, err
	}
	return &nc, nil
}
