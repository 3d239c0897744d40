package server

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	memdb "github.com/hashicorp/go-memdb"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/fsm"
)

// maxQuota bounds a user's quota; more is almost surely a typo.
const maxQuota = 10000

func (s *Server) adminRoutes(g *gin.RouterGroup) {
	w, r := s.toLeader(true), s.toLeader(false)
	g.POST("/users", w, s.authenticate, requireAdmin, s.createUser)
	g.GET("/users", r, s.authenticate, requireAdmin, s.listUsers)
	g.GET("/users/:name", r, s.authenticate, s.getUser)
	g.PUT("/users/:name/quota", w, s.authenticate, requireAdmin, s.setQuota)
	g.DELETE("/users/:name", w, s.authenticate, requireAdmin, s.deleteUser)
	g.POST("/tokens", w, s.authenticate, requireAdmin, s.createToken)
	g.GET("/tokens", r, s.authenticate, requireAdmin, s.listTokens)
	g.GET("/tokens/self", r, s.authenticate, s.selfToken)
	g.DELETE("/tokens/:accessor", w, s.authenticate, requireAdmin, s.deleteToken)
	g.POST("/images/pull", w, s.authenticate, s.pullImage)
}

func toAPIUser(u *fsm.User) *api.User {
	return &api.User{Name: u.Name, Admin: u.Admin, Quota: u.Quota, CreatedAt: u.CreatedAt, ModifyIndex: u.ModifyIndex}
}

func (s *Server) createUser(c *gin.Context) {
	var u api.User
	if err := bindJSON(c, &u); err != nil {
		writeError(c, err)
		return
	}
	if !validName(u.Name) {
		writeError(c, badRequest("invalid user name %q: use 1-63 lowercase letters, digits and dashes", u.Name))
		return
	}
	if u.Quota < 0 || u.Quota > maxQuota {
		writeError(c, badRequest("quota must be between 0 and %d", maxQuota))
		return
	}
	fu := &fsm.User{Name: u.Name, Admin: u.Admin, Quota: u.Quota, CreatedAt: now()}
	_, idx, err := s.raftApply(fsm.UserUpsertType, &fsm.UserUpsertRequest{User: fu, Create: true})
	if err != nil {
		writeError(c, err)
		return
	}
	fu.ModifyIndex = idx
	c.JSON(http.StatusCreated, toAPIUser(fu))
}

func (s *Server) listUsers(c *gin.Context) {
	s.blocking(c, func(ws memdb.WatchSet) (uint64, any, error) {
		us, err := s.store.Users(ws)
		if err != nil {
			return 0, nil, err
		}
		out := make([]*api.User, 0, len(us))
		for _, u := range us {
			out = append(out, toAPIUser(u))
		}
		return s.store.Index(ws, fsm.TableUsers), out, nil
	})
}

func (s *Server) getUser(c *gin.Context) {
	name := c.Param("name")
	if me := identity(c); !me.Admin && me.User != name {
		writeError(c, fmt.Errorf("%w: admin token required", ErrForbidden))
		return
	}
	s.blocking(c, func(ws memdb.WatchSet) (uint64, any, error) {
		u, err := s.store.User(ws, name)
		if err != nil {
			return 0, nil, err
		}
		if u == nil {
			return 0, nil, fmt.Errorf("user %q %w", name, fsm.ErrNotFound)
		}
		return u.ModifyIndex, toAPIUser(u), nil
	})
}

func (s *Server) setQuota(c *gin.Context) {
	var q api.QuotaUpdate
	if err := bindJSON(c, &q); err != nil {
		writeError(c, err)
		return
	}
	if q.Quota < 0 || q.Quota > maxQuota {
		writeError(c, badRequest("quota must be between 0 and %d", maxQuota))
		return
	}
	name := c.Param("name")
	u, err := s.store.User(nil, name)
	if err != nil {
		writeError(c, err)
		return
	}
	if u == nil {
		// The default user of an ACL-less agent exists implicitly.
		if s.cfg.ACL || name != DefaultUser {
			writeError(c, fmt.Errorf("user %q %w", name, fsm.ErrNotFound))
			return
		}
		u = &fsm.User{Name: name, Admin: true, CreatedAt: now()}
	}
	nu := *u
	nu.Quota = q.Quota
	_, idx, err := s.raftApply(fsm.UserUpsertType, &fsm.UserUpsertRequest{User: &nu})
	if err != nil {
		writeError(c, err)
		return
	}
	nu.ModifyIndex = idx
	c.JSON(http.StatusOK, toAPIUser(&nu))
}

func (s *Server) deleteUser(c *gin.Context) {
	if _, _, err := s.raftApply(fsm.UserDeleteType, &fsm.UserDeleteRequest{Name: c.Param("name")}); err != nil {
		writeError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func toAPIToken(t *fsm.Token) *api.Token {
	return &api.Token{AccessorID: t.AccessorID, User: t.User, ReadOnly: t.ReadOnly, Description: t.Description, CreatedAt: t.CreatedAt}
}

func (s *Server) createToken(c *gin.Context) {
	var r api.TokenRequest
	if err := bindJSON(c, &r); err != nil {
		writeError(c, err)
		return
	}
	if len(r.Description) > 256 {
		writeError(c, badRequest("description exceeds 256 bytes"))
		return
	}
	secret := newSecret() + newSecret()
	t := &fsm.Token{AccessorID: uuid.NewString(), SecretHash: hashSecret(secret), User: r.User, ReadOnly: r.ReadOnly, Description: r.Description, CreatedAt: now()}
	if _, _, err := s.raftApply(fsm.TokenUpsertType, &fsm.TokenUpsertRequest{Token: t}); err != nil {
		writeError(c, err)
		return
	}
	out := toAPIToken(t)
	out.Secret = secret
	c.JSON(http.StatusCreated, out)
}

func (s *Server) listTokens(c *gin.Context) {
	s.blocking(c, func(ws memdb.WatchSet) (uint64, any, error) {
		ts, err := s.store.Tokens(ws)
		if err != nil {
			return 0, nil, err
		}
		out := make([]*api.Token, 0, len(ts))
		for _, t := range ts {
			out = append(out, toAPIToken(t))
		}
		return s.store.Index(ws, fsm.TableTokens), out, nil
	})
}

func (s *Server) selfToken(c *gin.Context) {
	me := identity(c)
	if me.Accessor == "" {
		c.JSON(http.StatusOK, &api.Token{User: me.User, Description: "ACLs are off"})
		return
	}
	t, err := s.store.Token(nil, me.Accessor)
	if err != nil || t == nil {
		writeError(c, fmt.Errorf("token %w", fsm.ErrNotFound))
		return
	}
	c.JSON(http.StatusOK, toAPIToken(t))
}

func (s *Server) deleteToken(c *gin.Context) {
	if _, _, err := s.raftApply(fsm.TokenDeleteType, &fsm.TokenDeleteRequest{AccessorID: c.Param("accessor")}); err != nil {
		writeError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) pullImage(c *gin.Context) {
	var r api.PullRequest
	if err := bindJSON(c, &r); err != nil {
		writeError(c, err)
		return
	}
	if err := checkImage(r.Image); err != nil {
		writeError(c, err)
		return
	}
	if err := s.exec.Pull(c.Request.Context(), r.Image); err != nil {
		if errors.Is(err, executor.ErrNoImage) {
			writeError(c, fmt.Errorf("image %s %w: %v", r.Image, fsm.ErrNotFound, executor.ErrNoImage))
			return
		}
		writeError(c, fmt.Errorf("%w: pulling %s: %v", ErrUnavailable, r.Image, err))
		return
	}
	c.Status(http.StatusNoContent)
}
