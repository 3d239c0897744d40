package server

import (
	"io"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/hyperfunc/hyperfunc/fsm"
)

// Raft compacts its log by entry count (SnapshotThreshold); entries of
// hyperfunc range from a few bytes to a few MiB (stdin, outputs), so a
// count bounds nothing. sizedFSM counts the bytes applied since the last
// snapshot and asks for one when they pass the budget, so the log on disk,
// and what a rejoining server replays, stays bounded in bytes too.
type sizedFSM struct {
	*fsm.FSM
	budget  int64
	applied atomic.Int64
	kick    chan struct{} // one pending snapshot request at most
}

// DefaultLogBytesPerSnapshot is the Raft log bytes applied before a
// snapshot is taken whatever the entry count.
const DefaultLogBytesPerSnapshot = 256 << 20

func newSizedFSM(f *fsm.FSM, budget int64) *sizedFSM {
	return &sizedFSM{FSM: f, budget: budget, kick: make(chan struct{}, 1)}
}

func (s *sizedFSM) count(n int) {
	if s.applied.Add(int64(n)) >= s.budget {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

func (s *sizedFSM) Apply(l *raft.Log) any {
	s.count(len(l.Data))
	return s.FSM.Apply(l)
}

func (s *sizedFSM) ApplyBatch(logs []*raft.Log) []any {
	n := 0
	for _, l := range logs {
		n += len(l.Data)
	}
	s.count(n)
	return s.FSM.ApplyBatch(logs)
}

// Snapshot resets the count: whatever triggered it, the log up to here
// may now be compacted.
func (s *sizedFSM) Snapshot() (raft.FSMSnapshot, error) {
	s.applied.Store(0)
	return s.FSM.Snapshot()
}

func (s *sizedFSM) Restore(rc io.ReadCloser) error {
	s.applied.Store(0)
	return s.FSM.Restore(rc)
}

// runCompactor takes a snapshot each time the applied bytes pass the
// budget. Raft then truncates the log behind it, keeping TrailingLogs.
func (s *Server) runCompactor() {
	for {
		select {
		case <-s.sized.kick:
		case <-s.shutdownCh:
			return
		}
		if err := s.raft.Snapshot().Error(); err != nil {
			s.log.Warn("snapshot for log size failed", "error", err)
		} else {
			s.metrics.sizeSnapshots.Inc()
		}
	}
}
