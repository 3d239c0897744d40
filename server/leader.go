package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"

	"github.com/hyperfunc/hyperfunc/fsm"
)

// monitorLeadership starts the leader's duties when this server takes
// office and stops them when it loses it. While following, it makes sure
// the leader knows this server's HTTP address.
func (s *Server) monitorLeadership() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	trims := 0
	for {
		select {
		case isLeader := <-s.raft.LeaderCh():
			if isLeader {
				s.startLeading()
			} else {
				s.stopLeading()
			}
		case <-tick.C:
			if !s.IsLeader() {
				s.ensureMember()
			}
			s.savePeers()
			s.metrics.refresh()
			trims++
			// Reads (outputs, logs) and writes leave the state file's
			// pages mapped; they are page cache, handed back
			// (fsm.Store.Trim) every 10 s, or sooner once writes passed
			// trimWrittenBytes (1 MiB outputs write ~10 MiB/s here).
			if trims%10 == 0 || s.store.WrittenSinceTrim() >= trimWrittenBytes {
				if err := s.store.Trim(); err != nil {
					s.log.Debug("trimming the state file's mapping failed", "error", err)
				}
			}
		case <-s.shutdownCh:
			return
		}
	}
}

// trimWrittenBytes is how much the state file's writes may leave mapped
// before a trim (checked every second).
const trimWrittenBytes = 16 << 20

// ensureMember sends this server's record to the leader when the
// replicated member table lacks it or holds stale addresses.
func (s *Server) ensureMember() {
	ms, _ := s.store.Members(nil)
	for _, m := range ms {
		if *m == *memberRecord(s.self) {
			return
		}
	}
	addr := s.leaderHTTP()
	if addr == "" {
		return
	}
	if err := s.internalCall(context.Background(), http.MethodPost, addr, "/v1/internal/member", s.self, nil); err != nil {
		s.log.Debug("member registration with the leader failed", "error", err)
	}
}

func (s *Server) startLeading() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leaderStop != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.leaderStop, s.leaderDone = cancel, done
	go func() {
		defer close(done)
		s.lead(ctx)
	}()
}

func (s *Server) stopLeading() {
	s.mu.Lock()
	stop, done := s.leaderStop, s.leaderDone
	s.leaderStop, s.leaderDone = nil, nil
	s.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// lead runs for one term: it waits until the FSM has applied everything
// the previous leader committed (barrier), records this server, creates
// the bootstrap admin on a new cluster, then runs the dispatcher.
func (s *Server) lead(ctx context.Context) {
	s.log.Info("took leadership")
	for ctx.Err() == nil {
		if err := s.raft.Barrier(s.cfg.ApplyTimeout).Error(); err != nil {
			s.log.Warn("barrier failed; retrying", "error", err)
			sleepCtx(ctx, time.Second)
			continue
		}
		if err := s.recordSelf(); err != nil {
			s.log.Warn("recording this server failed; retrying", "error", err)
			sleepCtx(ctx, time.Second)
			continue
		}
		if err := s.bootstrapACL(); err != nil {
			s.log.Warn("ACL bootstrap failed; retrying", "error", err)
			sleepCtx(ctx, time.Second)
			continue
		}
		break
	}
	if ctx.Err() != nil {
		return
	}
	s.leaderReady.Store(true)
	defer s.leaderReady.Store(false)
	go s.dropStaged(ctx)
	newDispatcher(s).run(ctx)
	s.log.Info("leadership duties stopped")
}

func (s *Server) recordSelf() error {
	ms, _ := s.store.Members(nil)
	for _, m := range ms {
		if *m == *memberRecord(s.self) {
			return nil
		}
	}
	_, _, err := s.raftApply(fsm.MemberUpsertType, &fsm.MemberUpsertRequest{Member: memberRecord(s.self)})
	return err
}

// BootstrapTokenFile is where a new cluster's leader writes the first admin
// token when none was given, readable only by the agent's user.
const BootstrapTokenFile = "bootstrap-token"

// bootstrapACL creates the admin user and its first token on a new
// cluster (no users yet) with ACLs on.
func (s *Server) bootstrapACL() error {
	if !s.cfg.ACL {
		return nil
	}
	users, err := s.store.Users(nil)
	if err != nil || len(users) > 0 {
		return err
	}
	secret := s.cfg.BootstrapToken
	generated := secret == ""
	if generated {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		secret = hex.EncodeToString(b)
	}
	now := time.Now().UTC()
	if _, _, err := s.raftApply(fsm.UserUpsertType, &fsm.UserUpsertRequest{User: &fsm.User{Name: "admin", Admin: true, CreatedAt: now}, Create: true}); err != nil {
		return err
	}
	tok := &fsm.Token{AccessorID: uuid.NewString(), SecretHash: hashSecret(secret), User: "admin", Description: "bootstrap token", CreatedAt: now}
	if _, _, err := s.raftApply(fsm.TokenUpsertType, &fsm.TokenUpsertRequest{Token: tok}); err != nil {
		return err
	}
	if generated {
		p := filepath.Join(s.cfg.DataDir, BootstrapTokenFile)
		if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
			return fmt.Errorf("writing the bootstrap token: %w", err)
		}
		s.log.Warn("created the bootstrap admin token", "file", p)
	} else {
		s.log.Info("created the bootstrap admin token from the configured secret")
	}
	return nil
}
