package server

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// Route is one method and path pattern the HTTP API serves.
type Route struct {
	Method string
	Path   string // gin pattern, e.g. /v1/functions/:name
}

// Routes lists every route of the HTTP API, so tests can check each one
// (auth, errors) and none is forgotten when a route is added.
func (s *Server) Routes() []Route {
	var out []Route
	if e, ok := s.Handler().(*gin.Engine); ok {
		for _, r := range e.Routes() {
			out = append(out, Route{Method: r.Method, Path: r.Path})
		}
	}
	return out
}

// Handler is the HTTP API of a started server, for driving it in process
// (httptest, fuzzing) without a listener.
func (s *Server) Handler() http.Handler {
	if s.httpSrv == nil {
		return nil
	}
	return s.httpSrv.Handler
}
