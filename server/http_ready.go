package server

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
)

// readyPoll paces the wait for readiness of a request that arrived during
// an election; readyWait bounds it.
const readyPoll = 25 * time.Millisecond

// NotReady says why this server cannot serve the API yet ("no cluster
// leader", ...), "" when it can; /v1/agent/health answers the same.
func (s *Server) NotReady() string { return s.notReady() }

// notReady says why this server cannot serve the API yet, "" when it can:
// it needs a leader it can reach (its own duties set up when it is the
// leader: barrier, member record, ACL bootstrap, dispatcher) and, with
// ACLs on, a bootstrapped user table.
func (s *Server) notReady() string {
	addr, id := s.leaderMember()
	switch {
	case addr == "":
		return "no cluster leader"
	case id == s.self.ID && !s.leaderReady.Load():
		return "this server just took leadership and is still setting up"
	case s.leaderHTTP() == "":
		return "the leader's HTTP address is not known here yet"
	case s.cfg.ACL && !s.aclBootstrapped():
		return "the ACL bootstrap is not done yet"
	}
	return ""
}

// aclBootstrapped: the bootstrap admin token is in this server's replica
// (the leader applies the admin user first, then its token).
func (s *Server) aclBootstrapped() bool {
	toks, err := s.store.Tokens(nil)
	return err == nil && len(toks) > 0
}

// awaitReady holds API requests that arrive while there is no leader (an
// agent that just started, an election) for up to the apply timeout, so
// the first user of a fresh agent neither waits for nothing nor fails.
// When the wait runs out the answer is 503 with Retry-After: nothing was
// done, the client may send the request again. Stale reads never wait:
// they are what a cluster without a leader can still answer.
func (s *Server) awaitReady(c *gin.Context) {
	if isStale(c) {
		return
	}
	why := s.notReady()
	if why == "" {
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.ApplyTimeout)
	defer cancel()
	t := time.NewTicker(readyPoll)
	defer t.Stop()
	for why != "" {
		select {
		case <-ctx.Done():
			if c.Request.Context().Err() != nil {
				waitEnded(c, c.Request.Context().Err())
				return
			}
			c.Header("Retry-After", strconv.Itoa(1))
			writeError(c, fmt.Errorf("%w: %s; retry in a moment", ErrNoLeader, why))
			return
		case <-t.C:
			why = s.notReady()
		}
	}
}
