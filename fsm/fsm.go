// Package fsm is hyperfunc's replicated state: the typed command log, the
// go-memdb schema and store, and the Raft FSM that applies commands and
// takes and restores snapshots. It never does I/O beyond the snapshot
// streams and never reads a clock: times and IDs come inside commands.
package fsm

import (
	"io"

	"github.com/hashicorp/raft"
)

// FSM adapts the store to raft.FSM.
type FSM struct {
	store *Store
	proc  *processor
}

// New builds an FSM over a new, empty store whose disk half lives in dir
// (see NewStore).
func New(cfg Config, dir string) (*FSM, error) {
	s, err := NewStore(cfg, dir)
	if err != nil {
		return nil, err
	}
	return &FSM{store: s, proc: newProcessor(s)}, nil
}

// Store is the state the FSM applies to.
func (f *FSM) Store() *Store { return f.store }

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	return f.proc.apply(l.Index, l.Data)
}

// ApplyBatch implements raft.BatchingFSM: the entries of one batch apply
// one after the other, each in its own transaction, as Apply would.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	for i, l := range logs {
		out[i] = f.Apply(l)
	}
	return out
}

// Snapshot implements raft.FSM with memdb's O(1) snapshot and a read
// transaction of the disk half, taken together between two applies; the
// records are written out later, off the apply path.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	h := f.store.state.Load()
	disk, err := h.disk.Snapshot()
	if err != nil {
		return nil, err
	}
	return &snapshot{txn: h.mem.Txn(false), disk: disk}, nil
}

// Restore implements raft.FSM: it reads the snapshot into a new pair of
// halves and swaps them in.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	h, err := f.store.newHalves()
	if err != nil {
		return err
	}
	if err := readSnapshot(rc, h); err != nil {
		h.disk.Close()
		return err
	}
	f.store.swap(h)
	return nil
}
