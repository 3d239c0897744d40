package server

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hashicorp/raft"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/fsm"
)

func (s *Server) statusRoutes(r *gin.Engine) {
	r.GET("/v1/status/leader", s.statusLeader)
	r.GET("/v1/status/peers", s.statusPeers)
	r.GET("/v1/agent/health", s.health)
	// Per-user and per-function figures name users and functions: with ACLs
	// on, a scraper needs an admin token (Prometheus: authorization).
	r.GET("/metrics", s.authenticate, requireAdmin, gin.WrapH(s.metrics.handler()))
	r.GET("/v1/operator/raft/configuration", s.authenticate, requireAdmin, s.raftConfiguration)
	r.GET("/v1/operator/state", s.authenticate, requireAdmin, s.stateHash)
	r.DELETE("/v1/operator/raft/peer", s.toLeader(true), s.authenticate, requireAdmin, s.removePeer)
}

// internalRoutes serve the other servers of the cluster; they need the
// cluster key, never a user token.
func (s *Server) internalRoutes(r *gin.Engine) {
	w := s.toLeader(true)
	r.GET("/v1/agent/self", s.requireClusterKey, func(c *gin.Context) { c.JSON(http.StatusOK, s.selfInfo()) })
	r.POST("/v1/internal/join", s.requireClusterKey, w, s.internalJoin)
	r.POST("/v1/internal/member", s.requireClusterKey, w, s.internalMember)
	r.POST("/v1/internal/leave", s.requireClusterKey, w, s.internalLeave)
	r.POST("/v1/internal/enqueue", s.requireClusterKey, w, s.internalEnqueueHandler)
}

func (s *Server) statusLeader(c *gin.Context) {
	addr, _ := s.leaderMember()
	c.JSON(http.StatusOK, addr)
}

func (s *Server) statusPeers(c *gin.Context) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		writeError(c, err)
		return
	}
	out := []string{}
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			out = append(out, string(srv.Address))
		}
	}
	c.JSON(http.StatusOK, out)
}

// health answers 200 when this server is ready to take API requests:
// it sees a leader whose HTTP address it knows, that leader finished
// setting up (here: when this server leads; with ACLs on: the bootstrap
// user is replicated here), and its executor answers (the leader's
// executor is the one that runs calls). Else 503, with the reason in
// checks.
func (s *Server) health(c *gin.Context) {
	h := api.Health{OK: true, Executor: s.exec.Name(), Checks: map[string]string{}, AppliedIndex: s.raft.AppliedIndex()}
	h.Leader, _ = s.leaderMember()
	if why := s.notReady(); why != "" {
		h.OK = false
		h.Checks["raft"] = why
	} else {
		h.Checks["raft"] = "ok"
	}
	if s.cfg.ACL {
		h.Checks["acl"] = "ok"
		if !s.aclBootstrapped() {
			h.Checks["acl"] = "bootstrap pending"
		}
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 3*time.Second)
	defer cancel()
	if err := s.exec.Health(ctx); err != nil {
		h.Checks["executor"] = err.Error()
		if s.IsLeader() {
			h.OK = false
		}
		s.metrics.executorUp.Set(0)
	} else {
		h.Checks["executor"] = "ok"
		s.metrics.executorUp.Set(1)
	}
	code := http.StatusOK
	if !h.OK {
		code = http.StatusServiceUnavailable
	}
	c.JSON(code, h)
}

func (s *Server) raftConfiguration(c *gin.Context) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		writeError(c, err)
		return
	}
	leader, _ := s.leaderMember()
	ms, _ := s.store.Members(nil)
	httpOf := map[string]string{}
	for _, m := range ms {
		httpOf[m.ID] = m.HTTPAddr
	}
	out := []*api.RaftServer{}
	for _, srv := range f.Configuration().Servers {
		out = append(out, &api.RaftServer{
			ID: string(srv.ID), Address: string(srv.Address), Leader: string(srv.Address) == leader,
			Voter: srv.Suffrage == raft.Voter, HTTPAddr: httpOf[string(srv.ID)],
		})
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) removePeer(c *gin.Context) {
	which := c.Query("id")
	if which == "" {
		writeError(c, badRequest("id=<server ID or raft address> is required"))
		return
	}
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		writeError(c, err)
		return
	}
	for _, srv := range f.Configuration().Servers {
		if string(srv.ID) == which || string(srv.Address) == which {
			if err := s.removeServer(string(srv.ID)); err != nil {
				writeError(c, err)
				return
			}
			c.Status(http.StatusNoContent)
			return
		}
	}
	writeError(c, fmt.Errorf("server %q %w in the raft configuration", which, fsm.ErrNotFound))
}

func (s *Server) removeServer(id string) error {
	if err := s.raft.RemoveServer(raft.ServerID(id), 0, s.cfg.ApplyTimeout).Error(); err != nil {
		return fmt.Errorf("remove server %s: %w", id, err)
	}
	_, _, err := s.raftApply(fsm.MemberDeleteType, &fsm.MemberDeleteRequest{ID: id})
	return err
}

func (s *Server) bindMember(c *gin.Context) (api.Member, bool) {
	var m api.Member
	if err := bindJSON(c, &m); err != nil {
		writeError(c, err)
		return m, false
	}
	if m.ID == "" || m.RaftAddr == "" || m.HTTPAddr == "" {
		writeError(c, badRequest("member needs id, raft_addr and http_addr"))
		return m, false
	}
	return m, true
}

func (s *Server) internalJoin(c *gin.Context) {
	m, ok := s.bindMember(c)
	if !ok {
		return
	}
	if err := s.addVoter(m); err != nil {
		writeError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) internalMember(c *gin.Context) {
	m, ok := s.bindMember(c)
	if !ok {
		return
	}
	if _, _, err := s.raftApply(fsm.MemberUpsertType, &fsm.MemberUpsertRequest{Member: memberRecord(m)}); err != nil {
		writeError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) internalLeave(c *gin.Context) {
	m, ok := s.bindMember(c)
	if !ok {
		return
	}
	if err := s.removeServer(m.ID); err != nil {
		writeError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// stateHash answers the applied index and a digest of the local replica, so
// that a checker can prove every server holds the same state.
func (s *Server) stateHash(c *gin.Context) {
	// The digest must be of the state at the index it reports: wait for
	// the FSM to be idle at one index before and after hashing.
	for i := 0; i < 50; i++ {
		before := s.raft.AppliedIndex()
		h, err := s.store.Hash()
		if err != nil {
			writeError(c, err)
			return
		}
		if s.raft.AppliedIndex() == before {
			c.JSON(http.StatusOK, gin.H{"index": before, "hash": h, "latest": s.store.LatestIndex()})
			return
		}
	}
	writeError(c, fmt.Errorf("%w: the state kept changing while hashing", ErrUnavailable))
}
