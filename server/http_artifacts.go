package server

import (
	"crypto/subtle"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/hyperfunc/hyperfunc/fsm"
)

// artifactRoutes serve what Nomad clients fetch for a call: the shim binary
// (checksummed in the job) and a large stdin, guarded by the call's key.
// Any server answers from its own replica, so they are never forwarded.
func (s *Server) artifactRoutes(r *gin.Engine) {
	r.GET("/v1/artifacts/hf-shim.tar.gz", s.serveShim)
	r.GET("/v1/artifacts/stdin/:callid", s.serveStdin)
}

func (s *Server) serveShim(c *gin.Context) {
	if len(s.cfg.ShimArchive) == 0 {
		writeError(c, fmt.Errorf("%w: this server serves no shim (-shim-path)", fsm.ErrNotFound))
		return
	}
	c.Data(http.StatusOK, "application/gzip", s.cfg.ShimArchive)
}

func (s *Server) serveStdin(c *gin.Context) {
	call, err := s.store.Call(nil, c.Param("callid"))
	if err != nil {
		writeError(c, err)
		return
	}
	key := c.Query("key")
	// A call that ended has dropped its stdin and key: nothing to serve.
	if call == nil || call.Key == "" || subtle.ConstantTimeCompare([]byte(key), []byte(call.Key)) != 1 {
		writeError(c, fmt.Errorf("stdin %w", fsm.ErrNotFound))
		return
	}
	stdin, err := s.store.Stdin(call.ID)
	if err != nil {
		writeError(c, err)
		return
	}
	c.Data(http.StatusOK, "application/octet-stream", stdin)
}
