package server

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/raft"
)

const (
	raftDir       = "raft"
	nodeIDFile    = "node-id"
	snapshotsKept = 2
)

func loadOrCreateNodeID(dir string) (string, error) {
	p := filepath.Join(dir, nodeIDFile)
	b, err := os.ReadFile(p)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if _, perr := uuid.Parse(id); perr != nil {
			return "", fmt.Errorf("node ID file %s is corrupt (%q): %w", p, id, perr)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("node ID file: %w", err)
	}
	id := uuid.NewString()
	if err := os.WriteFile(p, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("node ID file: %w", err)
	}
	return id, nil
}

func (s *Server) setupRaft() error {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(s.cfg.NodeID)
	rc.Logger = s.log.Named("raft")
	rc.SnapshotThreshold = 16384
	rc.TrailingLogs = maxTrailingLogs // lowered by the compactor for large entries (compact.go)
	// Batched applies let many small enqueue commands share one disk sync.
	rc.MaxAppendEntries = 256
	if s.cfg.RaftTuning != nil {
		s.cfg.RaftTuning(rc)
	}
	dir := filepath.Join(s.cfg.DataDir, raftDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("raft dir: %w", err)
	}
	store, closeStore, err := openLogStore(dir, s.cfg.RaftSegmentBytes, s.log.Named("wal"))
	if err != nil {
		return err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, snapshotsKept, s.log.Named("snapshot"))
	if err != nil {
		closeStore()
		return fmt.Errorf("raft snapshot store: %w", err)
	}
	if err := checkSnapshots(snaps); err != nil {
		closeStore()
		return err
	}
	var advertise net.Addr
	if s.cfg.AdvertiseRaft != "" {
		advertise, err = net.ResolveTCPAddr("tcp", s.cfg.AdvertiseRaft)
		if err != nil {
			closeStore()
			return fmt.Errorf("raft advertise address: %w", err)
		}
	}
	stream, err := newTLSStream(s.cfg.RaftAddr, advertise, s.auth.tlsConfig())
	if err != nil {
		closeStore()
		return fmt.Errorf("raft listen %s: %w", s.cfg.RaftAddr, err)
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 3, Timeout: 10 * time.Second, Logger: s.log.Named("transport"),
	})
	if err != nil {
		closeStore()
		return fmt.Errorf("raft listen %s: %w", s.cfg.RaftAddr, err)
	}
	stable := &stableStore{StableStore: store, close: closeStore}
	r, err := raft.NewRaft(rc, s.sized, newLogCache(store, logCacheBytes, logCacheEntries), stable, snaps, trans)
	if err != nil {
		trans.Close()
		closeStore()
		return fmt.Errorf("raft: %w", err)
	}
	s.raft, s.trans, s.closer = r, trans, stable.Close
	return nil
}

// checkSnapshots opens the newest snapshot and reads its header before
// Raft restores it, so a corrupt one is reported by name instead of as a
// panic deep in startup.
func checkSnapshots(snaps *raft.FileSnapshotStore) error {
	list, err := snaps.List()
	if err != nil {
		return fmt.Errorf("raft snapshots: %w", err)
	}
	if len(list) == 0 {
		return nil
	}
	_, rc, err := snaps.Open(list[0].ID)
	if err != nil {
		return fmt.Errorf("raft snapshot %s is unreadable: %w", list[0].ID, err)
	}
	defer rc.Close()
	head := make([]byte, 7)
	if _, err := io.ReadFull(rc, head); err != nil || string(head[:6]) != "HFSNAP" {
		return fmt.Errorf("raft snapshot %s is corrupt (bad header): refusing to start with bad state", list[0].ID)
	}
	return nil
}

// ErrNoLeader means the cluster has no leader this node can reach.
var ErrNoLeader = errors.New("no cluster leader")

// leaderMember returns the member record of the current leader.
func (s *Server) leaderMember() (addr, id string) {
	a, i := s.raft.LeaderWithID()
	return string(a), string(i)
}

// stableStore is the StableStore Raft keeps its term and vote in, closed
// with the log store. Raft's transport answers heartbeats on goroutines
// that Raft's Shutdown does not wait for: one that passed Raft's shutdown
// check may write the term after the store closed, and Raft panics on a
// failed term write ("database not open"). After Close the writes are
// dropped: the server is stopping, and a term it learned from a heartbeat
// it learns again at its next start (votes are not written on this path).
type stableStore struct {
	raft.StableStore
	close func() error

	mu     sync.RWMutex
	closed bool
}

func (s *stableStore) Set(k, v []byte) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil
	}
	return s.StableStore.Set(k, v)
}

func (s *stableStore) SetUint64(k []byte, v uint64) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil
	}
	return s.StableStore.SetUint64(k, v)
}

// Close closes the store once the writes in flight are done.
func (s *stableStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return s.close()
}
