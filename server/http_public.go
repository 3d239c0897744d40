package server

import (
	"bufio"
	"crypto/subtle"
	"encoding/json"
	"fmt"

	"github.com/gin-gonic/gin"
	memdb "github.com/hashicorp/go-memdb"

	"github.com/hyperfunc/hyperfunc/fsm"
)

// publicRoutes are the per-function addresses, the Hyper way: the secret
// in the path is the credential, rotatable with `update --refresh`.
func (s *Server) publicRoutes(e *gin.Engine) {
	r := e.Group("", s.awaitReady)
	w, rd := s.toLeader(true), s.toLeader(false)
	r.POST("/call/:name/:secret", s.checkStdinLength, s.toLeaderUnlessAsyncCall(func(*gin.Context) bool { return false }, s.knownSecretFunction), s.publicCall(false))
	r.POST("/call/:name/:secret/sync", s.checkStdinLength, w, s.publicCall(true))
	r.GET("/output/:name/:secret/:callid", rd, s.publicOutput(false))
	r.GET("/output/:name/:secret/:callid/wait", rd, s.publicOutput(true))
	r.GET("/logs/:name/:secret", rd, s.publicLogs)
	r.GET("/status/:name/:secret", rd, s.publicStatus)
}

// secretFunction resolves name+secret. The lookup goes by the secret's
// hash and the name is compared in constant time; any mismatch is the
// same "not found", so the answer says nothing about which part was wrong.
func (s *Server) secretFunction(c *gin.Context) (*fsm.Function, error) {
	name, secret := c.Param("name"), c.Param("secret")
	f, err := s.store.FunctionBySecretHash(hashSecret(secret))
	if err != nil {
		return nil, err
	}
	if f == nil || subtle.ConstantTimeCompare([]byte(f.Name), []byte(name)) != 1 {
		return nil, fmt.Errorf("function %w (or wrong address)", fsm.ErrNotFound)
	}
	return f, nil
}

func (s *Server) publicCall(sync bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		f, err := s.secretFunction(c)
		if err != nil {
			writeError(c, err)
			return
		}
		s.submitCall(c, f, sync, credential{SecretHash: hashSecret(c.Param("secret"))})
	}
}

func (s *Server) publicOutput(wait bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		f, err := s.secretFunction(c)
		if err != nil {
			writeError(c, err)
			return
		}
		call, err := s.store.Call(nil, c.Param("callid"))
		if err != nil {
			writeError(c, err)
			return
		}
		if call == nil || call.Function != f.ID {
			writeError(c, fmt.Errorf("call %q %w", c.Param("callid"), fsm.ErrNotFound))
			return
		}
		if wait && !fsm.Final(call.State) {
			if call, err = s.waitCall(c.Request.Context(), call.ID); err != nil {
				waitEnded(c, err)
				return
			}
		}
		s.writeOutput(c, call)
	}
}

func (s *Server) publicLogs(c *gin.Context) {
	f, err := s.secretFunction(c)
	if err != nil {
		writeError(c, err)
		return
	}
	s.streamLogs(c, f, "text")
}

func (s *Server) publicStatus(c *gin.Context) {
	f, err := s.secretFunction(c)
	if err != nil {
		writeError(c, err)
		return
	}
	s.blocking(c, func(ws memdb.WatchSet) (uint64, any, error) { return s.statusOf(ws, f) })
}

func writeNDJSON(w *bufio.Writer, v any) {
	b, _ := json.Marshal(v)
	w.Write(b)
	w.WriteByte('\n')
}
