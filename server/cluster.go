package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/fsm"
)

// Discovery finds the other servers (Consul's catalog, as Nomad servers
// do). discovery.Consul satisfies it through a small adapter in main.
type Discovery interface {
	Register(ctx context.Context, self api.Member) error
	Deregister(ctx context.Context) error
	Members(ctx context.Context) ([]api.Member, error)
}

// agentSelf is what /v1/agent/self answers: who this server is and whom it
// follows, which is all a joining server needs to know.
type agentSelf struct {
	Member     api.Member `json:"member"`
	Leader     string     `json:"leader"`      // Raft address, "" when none
	HasState   bool       `json:"has_state"`   // part of a bootstrapped cluster
	LeaderHTTP string     `json:"leader_http"` // when known
	Voters     []string   `json:"voters"`      // server IDs in its Raft configuration
}

func (s *Server) selfInfo() agentSelf {
	leader, _ := s.leaderMember()
	info := agentSelf{Member: s.self, Leader: leader}
	info.HasState = s.hasState()
	info.LeaderHTTP = s.leaderHTTP()
	if cf := s.raft.GetConfiguration(); cf.Error() == nil {
		for _, srv := range cf.Configuration().Servers {
			info.Voters = append(info.Voters, string(srv.ID))
		}
	}
	return info
}

func (s *Server) hasState() bool {
	cf := s.raft.GetConfiguration()
	return cf.Error() == nil && len(cf.Configuration().Servers) > 0
}

// joinCluster bootstraps a new cluster once BootstrapExpect servers know of
// each other, or joins one that already runs. It retries until it is part
// of a cluster or the agent stops.
func (s *Server) joinCluster(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	go func() { <-s.shutdownCh; cancel() }()
	defer cancel()
	if s.cfg.Discovery != nil {
		for ctx.Err() == nil {
			if err := s.cfg.Discovery.Register(ctx, s.self); err == nil {
				break
			} else {
				s.log.Warn("registering with discovery failed; retrying", "error", err)
			}
			sleepCtx(ctx, 2*time.Second)
		}
	}
	if s.hasState() {
		s.rejoin(ctx)
		return
	}
	for ctx.Err() == nil {
		peers := s.peers(ctx)
		// A peer that already follows a leader means the cluster exists:
		// join it instead of bootstrapping a second one.
		for _, p := range peers {
			if p.HasState && p.Member.ID != s.self.ID {
				if err := s.requestJoin(ctx, p.Member.HTTPAddr); err != nil {
					s.log.Warn("join request failed", "peer", p.Member.HTTPAddr, "error", err)
					continue
				}
				s.log.Info("joined the cluster", "via", p.Member.HTTPAddr)
				return
			}
		}
		if len(peers) >= s.cfg.BootstrapExpect && !s.hasState() {
			if err := s.bootstrap(peers); err != nil {
				s.log.Error("bootstrap failed", "error", err)
			} else {
				return
			}
		}
		if s.hasState() {
			return
		}
		sleepCtx(ctx, time.Second)
	}
}

// rejoin runs when a server starts on existing state. Usually a leader
// contacts it soon. But a server that left (SIGTERM) is no longer in the
// others' configuration, and no leader will ever call: when the cluster's
// leader does not count this server as a voter, ask it to add it again
// (it then catches up from its own log).
func (s *Server) rejoin(ctx context.Context) {
	for ctx.Err() == nil {
		sleepCtx(ctx, time.Second)
		if leader, _ := s.leaderMember(); leader != "" {
			return
		}
		for _, p := range s.peers(ctx) {
			if p.Member.ID == s.self.ID || p.LeaderHTTP == "" || slices.Contains(p.Voters, s.self.ID) {
				continue
			}
			if err := s.requestJoin(ctx, p.Member.HTTPAddr); err != nil {
				s.log.Warn("rejoin request failed", "peer", p.Member.HTTPAddr, "error", err)
				continue
			}
			s.log.Info("rejoined the cluster after having left it", "via", p.Member.HTTPAddr)
			return
		}
	}
}

// peers collects the servers known through -join and discovery, self
// included, deduplicated by ID.
func (s *Server) peers(ctx context.Context) []agentSelf {
	byID := map[string]agentSelf{s.self.ID: s.selfInfo()}
	addrs := append([]string{}, s.cfg.Join...)
	// A server restarted on its state also knows the members it saw last:
	// its FSM is empty until a leader tells it what is committed, so they
	// are kept in a file of its own.
	addrs = append(addrs, s.knownPeers()...)
	if s.cfg.Discovery != nil {
		ms, err := s.cfg.Discovery.Members(ctx)
		if err != nil {
			s.log.Warn("discovery lookup failed", "error", err)
		}
		for _, m := range ms {
			if m.ID != s.self.ID {
				addrs = append(addrs, m.HTTPAddr)
			}
		}
	}
	for _, a := range addrs {
		if a == s.self.HTTPAddr {
			continue
		}
		var info agentSelf
		if err := s.internalCall(ctx, http.MethodGet, a, "/v1/agent/self", nil, &info); err != nil {
			s.log.Debug("peer not answering yet", "peer", a, "error", err)
			continue
		}
		byID[info.Member.ID] = info
	}
	out := make([]agentSelf, 0, len(byID))
	for _, p := range byID {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Member.ID < out[j].Member.ID })
	return out
}

// bootstrap starts a new cluster with exactly the expected servers. Every
// one of them computes the same configuration, so whichever bootstraps
// first, the others' attempts agree with it.
func (s *Server) bootstrap(peers []agentSelf) error {
	peers = peers[:s.cfg.BootstrapExpect]
	var servers []raft.Server
	for _, p := range peers {
		servers = append(servers, raft.Server{ID: raft.ServerID(p.Member.ID), Address: raft.ServerAddress(p.Member.RaftAddr), Suffrage: raft.Voter})
	}
	s.log.Info("bootstrapping the cluster", "servers", len(servers))
	err := s.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	if errors.Is(err, raft.ErrCantBootstrap) {
		return nil
	}
	return err
}

func (s *Server) requestJoin(ctx context.Context, via string) error {
	return s.internalCall(ctx, http.MethodPost, via, "/v1/internal/join", s.self, nil)
}

// internalCall is a server-to-server request carrying the cluster key.
// internalStatusError is a peer's error answer (as opposed to no answer).
type internalStatusError struct{ msg string }

func (e *internalStatusError) Error() string { return e.msg }

func (s *Server) internalCall(ctx context.Context, method, addr, path string, in, out any) error {
	var body *bytes.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	} else {
		body = bytes.NewReader(nil)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, body)
	if err != nil {
		return err
	}
	req.Header.Set(headerClusterKey, s.auth.httpToken)
	resp, err := internalClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var eb api.ErrorBody
		_ = json.NewDecoder(resp.Body).Decode(&eb)
		return &internalStatusError{msg: fmt.Sprintf("%s %s: HTTP %d: %s", method, addr+path, resp.StatusCode, eb.Error)}
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// internalClient keeps connections to the other servers alive: the
// forwarder sends the leader a batch of calls many times a second.
var internalClient = &http.Client{Transport: forwardTransport}

// addVoter is the leader's side of a join.
func (s *Server) addVoter(m api.Member) error {
	// A server whose data dir was wiped comes back at its old address with
	// a new ID: the old ID goes first (as Consul's leader does), or Raft
	// refuses the duplicate address and the server stays outside for good.
	// Only cluster members reach this (the internal routes need the key).
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("add voter %s: %w", m.ID, err)
	}
	for _, old := range f.Configuration().Servers {
		if string(old.Address) != m.RaftAddr || string(old.ID) == m.ID {
			continue
		}
		s.log.Info("removing a server that a new one replaced at its address", "old", old.ID, "new", m.ID, "address", m.RaftAddr)
		if err := s.raft.RemoveServer(old.ID, 0, s.cfg.ApplyTimeout).Error(); err != nil {
			return fmt.Errorf("remove %s, replaced at %s: %w", old.ID, m.RaftAddr, err)
		}
		if _, _, err := s.raftApply(fsm.MemberDeleteType, &fsm.MemberDeleteRequest{ID: string(old.ID)}); err != nil {
			return err
		}
	}
	if err := s.raft.AddVoter(raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr), 0, s.cfg.ApplyTimeout).Error(); err != nil {
		return fmt.Errorf("add voter %s: %w", m.ID, err)
	}
	_, _, err := s.raftApply(fsm.MemberUpsertType, &fsm.MemberUpsertRequest{Member: memberRecord(m)})
	return err
}

// leave hands leadership over if this server leads, then asks the leader
// to remove it from the voters, so the remaining servers keep a quorum
// sized for what is left.
func (s *Server) leave() error {
	if s.IsLeader() {
		if len(s.raft.GetConfiguration().Configuration().Servers) <= 1 {
			return nil
		}
		if err := s.raft.LeadershipTransfer().Error(); err != nil {
			return fmt.Errorf("leadership transfer: %w", err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if addr := s.leaderHTTP(); addr != "" && !s.IsLeader() {
			ctx := context.Background()
			err := s.internalCall(ctx, http.MethodPost, addr, "/v1/internal/leave", s.self, nil)
			if err == nil {
				s.log.Info("left the cluster")
				return nil
			}
			s.log.Warn("leave request failed; retrying", "error", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return errors.New("no leader took the leave request")
}

// leaderHTTP is the leader's HTTP address, from the replicated member
// table (the leader records itself when it takes office).
func (s *Server) leaderHTTP() string {
	_, id := s.leaderMember()
	if id == "" {
		return ""
	}
	if id == s.self.ID {
		return s.self.HTTPAddr
	}
	ms, _ := s.store.Members(nil)
	for _, m := range ms {
		if m.ID == id {
			return m.HTTPAddr
		}
	}
	return ""
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// peersFile keeps the HTTP addresses of the members this server saw, for a
// restart that finds no leader (see rejoin).
const peersFile = "peers.json"

func (s *Server) knownPeers() []string {
	b, err := os.ReadFile(filepath.Join(s.cfg.DataDir, peersFile))
	if err != nil {
		return nil
	}
	var addrs []string
	if err := json.Unmarshal(b, &addrs); err != nil {
		s.log.Warn("ignoring a corrupt peers file", "error", err)
		return nil
	}
	return addrs
}

// savePeers records the members' HTTP addresses when they changed. It
// runs every second, so it compares with what it wrote last, not with the
// file.
func (s *Server) savePeers() {
	ms, err := s.store.Members(nil)
	if err != nil || len(ms) == 0 {
		return
	}
	var addrs []string
	for _, m := range ms {
		if m.ID != s.self.ID {
			addrs = append(addrs, m.HTTPAddr)
		}
	}
	sort.Strings(addrs)
	s.peersMu.Lock()
	defer s.peersMu.Unlock()
	if s.savedPeers != nil && slices.Equal(addrs, s.savedPeers) {
		return
	}
	s.savedPeers = addrs
	b, _ := json.Marshal(addrs)
	tmp := filepath.Join(s.cfg.DataDir, peersFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err == nil {
		_ = os.Rename(tmp, filepath.Join(s.cfg.DataDir, peersFile))
	}
}
