package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"github.com/hyperfunc/hyperfunc/fsm"
)

// ClusterTLS is the Raft transport's TLS config for key, for tests that
// play a peer.
func ClusterTLS(key string) (*tls.Config, error) {
	a, err := newClusterAuth(key)
	if err != nil {
		return nil, err
	}
	return a.tlsConfig(), nil
}

// InternalToken is the internal routes' token for key.
func InternalToken(key string) string {
	a, err := newClusterAuth(key)
	if err != nil {
		panic(err)
	}
	return a.httpToken
}

// HashSecret is how tokens are stored.
func HashSecret(s string) string { return hashSecret(s) }

// LargestEntry is the largest Raft entry the server applied, in bytes.
func (s *Server) LargestEntry() int64 { return s.sized.largest.Load() }

// EnqueueAsLeader queues a call of fnID with stdin through the leader's
// batcher, as a handler does, under ctx.
func (s *Server) EnqueueAsLeader(ctx context.Context, fnID string, stdin []byte) (string, error) {
	f, err := s.store.Function(nil, fnID)
	if err != nil || f == nil {
		return "", fmt.Errorf("function %s: %v", fnID, err)
	}
	call, err := s.newCall(f, stdin, nil)
	if err != nil {
		return "", err
	}
	return call.ID, s.enqueuer.enqueue(ctx, call)
}

// BatchedBodyMax is the largest async call body a follower batches.
const BatchedBodyMax = batchedBodyMax

// AnnounceProtocol makes the server record protocol p instead of
// fsm.Protocol, as an older version would.
func AnnounceProtocol(cfg *Config, p int) { cfg.announceProtocol = &p }

// StageType is the entry type the server would stage a chunk in now.
func StageType(s *Server) fsm.MessageType { return s.stageType() }

// DispatchSafetyNet makes the dispatcher look at its queues with nothing
// changed only every d instead of every 2 s.
func DispatchSafetyNet(cfg *Config, d time.Duration) { cfg.dispatchSafetyNet = d }
