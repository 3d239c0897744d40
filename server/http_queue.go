package server

import (
	"sort"

	"github.com/gin-gonic/gin"
	memdb "github.com/hashicorp/go-memdb"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/fsm"
)

// queueRoutes serve the per-user queue (the web UI's queue page).
func (s *Server) queueRoutes(g *gin.RouterGroup) {
	g.GET("/queue", s.toLeader(false), s.authenticate, s.listQueue)
}

// listQueue is GET /v1/queue, a blocking query: each user's queued and
// running calls with the quota that bounds the running ones. An admin sees
// every user (those with an account or with calls); anyone else only
// themselves.
func (s *Server) listQueue(c *gin.Context) {
	me := identity(c)
	s.blocking(c, func(ws memdb.WatchSet) (uint64, any, error) {
		byUser := map[string]*api.UserQueue{}
		entry := func(name string) *api.UserQueue {
			q := byUser[name]
			if q == nil {
				q = &api.UserQueue{User: name, Quota: s.cfg.DefaultQuota}
				byUser[name] = q
			}
			return q
		}
		users, err := s.store.Users(ws)
		if err != nil {
			return 0, nil, err
		}
		for _, u := range users {
			if me.Admin || u.Name == me.User {
				if q := entry(u.Name); u.Quota > 0 {
					q.Quota = u.Quota
				}
			}
		}
		usages, err := s.store.OwnerUsages(ws)
		if err != nil {
			return 0, nil, err
		}
		for _, u := range usages {
			if me.Admin || u.Owner == me.User {
				q := entry(u.Owner)
				q.Pending, q.Running, q.StdinBytes = u.Pending, u.Running, u.StdinBytes
			}
		}
		entry(me.User) // the caller is always listed, idle or not
		out := make([]*api.UserQueue, 0, len(byUser))
		for _, q := range byUser {
			out = append(out, q)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].User < out[j].User })
		return s.store.Index(ws, fsm.TableUsers, fsm.TableOwnerUsage, fsm.TableCalls), out, nil
	})
}
