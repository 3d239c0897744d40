package server

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/gin-gonic/gin"
)

// headerForwarded marks a request a follower passed to the leader, so a
// leader that lost office meanwhile answers 503 instead of bouncing it on.
const headerForwarded = "X-Hyper-Forwarded"

var forwardTransport = &http.Transport{
	Proxy:                 nil,
	DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
	MaxIdleConnsPerHost:   64,
	IdleConnTimeout:       90 * time.Second,
	ResponseHeaderTimeout: 0, // sync calls and --wait may take hours
}

// toLeader runs the handler here when this server leads (or when a read
// may be stale) and proxies the request to the leader otherwise.
func (s *Server) toLeader(write bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		if !write && isStale(c) {
			return
		}
		if s.IsLeader() {
			// A consistent read must not come from a deposed leader that
			// has not noticed yet: confirm the lease with a quorum first.
			if !write {
				if err := s.raft.VerifyLeader().Error(); err != nil {
					writeError(c, fmt.Errorf("%w: leadership could not be confirmed: %v", ErrNoLeader, err))
				}
			}
			return
		}
		if c.GetHeader(headerForwarded) != "" {
			writeError(c, fmt.Errorf("%w: this server is not the leader any more", ErrNoLeader))
			return
		}
		addr := s.leaderHTTP()
		if addr == "" {
			writeError(c, fmt.Errorf("%w: this server (%s) knows no leader; the cluster may have lost its quorum", ErrNoLeader, s.self.HTTPAddr))
			return
		}
		s.metrics.forwarded.Inc()
		proxy := &httputil.ReverseProxy{
			Transport:     forwardTransport,
			FlushInterval: -1, // stream logs and long answers as they come
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.Out.URL.Scheme = "http"
				pr.Out.URL.Host = addr
				pr.Out.Host = addr
				pr.Out.Header.Set(headerForwarded, s.self.ID)
			},
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				// A *url.Error names the URL, and per-function paths carry
				// secrets: keep only the cause.
				var ue *url.Error
				if errors.As(err, &ue) {
					err = ue.Err
				}
				// A failed dial sent nothing: the client may send again
				// (a leader that just died; the election follows).
				var op *net.OpError
				if errors.As(err, &op) && op.Op == "dial" {
					c.Header("Retry-After", "1")
				}
				writeError(c, fmt.Errorf("%w: leader at %s unreachable: %v", ErrNoLeader, addr, err))
			},
		}
		proxy.ServeHTTP(informationalWriter{c.Writer}, c.Request)
		c.Abort()
	}
}
