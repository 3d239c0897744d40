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
	applied atomic.Int64  // bytes since the last snapshot
	entries atomic.Int64  // entries since the last snapshot
	largest atomic.Int64  // the largest entry applied since start, in bytes
	kick    chan struct{} // one pending snapshot request at most
}

// Raft keeps TrailingLogs entries behind a snapshot, so that a follower a
// little behind catches up from the log rather than a snapshot. Counted in
// entries, that is anything from kilobytes to gigabytes; the compactor sets
// it before each snapshot so that the entries kept hold about
// trailingBytes, at the size entries had since the last snapshot.
const (
	maxTrailingLogs = 10240 // hashicorp/raft's default
	minTrailingLogs = 64
)

// trailingLogs is the TrailingLogs that keeps about keep bytes of entries
// of the given mean size.
func trailingLogs(bytes, entries, keep int64) uint64 {
	if entries <= 0 || bytes <= 0 {
		return maxTrailingLogs
	}
	mean := max(bytes/entries, 1)
	return uint64(min(max(keep/mean, minTrailingLogs), maxTrailingLogs))
}

// DefaultLogBytesPerSnapshot is the Raft log bytes applied before a
// snapshot is taken whatever the entry count.
const DefaultLogBytesPerSnapshot = 256 << 20

func newSizedFSM(f *fsm.FSM, budget int64) *sizedFSM {
	return &sizedFSM{FSM: f, budget: budget, kick: make(chan struct{}, 1)}
}

func (s *sizedFSM) count(n, entries int) {
	s.entries.Add(int64(entries))
	if entries == 1 {
		s.noteSize(n)
	}
	if s.applied.Add(int64(n)) >= s.budget {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

func (s *sizedFSM) Apply(l *raft.Log) any {
	s.count(len(l.Data), 1)
	return s.FSM.Apply(l)
}

func (s *sizedFSM) ApplyBatch(logs []*raft.Log) []any {
	n := 0
	for _, l := range logs {
		n += len(l.Data)
		s.noteSize(len(l.Data))
	}
	s.count(n, len(logs))
	return s.FSM.ApplyBatch(logs)
}

func (s *sizedFSM) noteSize(n int) {
	for {
		old := s.largest.Load()
		if int64(n) <= old || s.largest.CompareAndSwap(old, int64(n)) {
			return
		}
	}
}

// Snapshot resets the count: whatever triggered it, the log up to here
// may now be compacted.
func (s *sizedFSM) Snapshot() (raft.FSMSnapshot, error) {
	s.applied.Store(0)
	s.entries.Store(0)
	return s.FSM.Snapshot()
}

func (s *sizedFSM) Restore(rc io.ReadCloser) error {
	s.applied.Store(0)
	s.entries.Store(0)
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
		s.setTrailingLogs(trailingLogs(s.sized.applied.Load(), s.sized.entries.Load(), s.sized.budget/4))
		if err := s.raft.Snapshot().Error(); err != nil {
			s.log.Warn("snapshot for log size failed", "error", err)
		} else {
			s.metrics.sizeSnapshots.Inc()
		}
	}
}

// setTrailingLogs changes Raft's TrailingLogs, for the next truncation.
func (s *Server) setTrailingLogs(n uint64) {
	rc := s.raft.ReloadableConfig()
	if rc.TrailingLogs == n {
		return
	}
	rc.TrailingLogs = n
	if err := s.raft.ReloadConfig(rc); err != nil {
		s.log.Warn("setting TrailingLogs failed", "trailing_logs", n, "error", err)
		return
	}
	s.log.Debug("TrailingLogs set for the log's byte budget", "trailing_logs", n)
}
