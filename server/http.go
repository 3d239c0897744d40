package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	memdb "github.com/hashicorp/go-memdb"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/fsm"
	"github.com/hyperfunc/hyperfunc/ui"
)

// Errors of the HTTP layer; with fsm's sentinels they are all that
// writeError maps to a status.
var (
	ErrBadRequest   = errors.New("bad request")
	ErrUnauthorized = errors.New("unauthorized")
	ErrForbidden    = errors.New("permission denied")
	ErrTooLarge     = errors.New("too large")
	ErrUnavailable  = errors.New("unavailable")
	// ErrOutcomeUnknown: a write reached the leader and no answer came
	// back; it may have been applied. 504, which clients do not retry.
	ErrOutcomeUnknown = errors.New("outcome unknown")
)

// maxJSONBody bounds every JSON request body.
const maxJSONBody = 1 << 20

func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, fsm.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, fsm.ErrExists), errors.Is(err, fsm.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, fsm.ErrQueueFull), errors.Is(err, fsm.ErrLimit):
		return http.StatusTooManyRequests
	case errors.Is(err, ErrNoLeader), errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrOutcomeUnknown):
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

// writeError is the one place an error becomes an HTTP answer.
func writeError(c *gin.Context, err error) {
	code := statusOf(err)
	if code == http.StatusInternalServerError {
		c.Error(err) //nolint:errcheck // recorded for the access log
	}
	c.AbortWithStatusJSON(code, api.ErrorBody{Error: err.Error()})
}

// noSniff: answers carry tenants' bytes (outputs, logs) from the origin
// that also serves the UI; a browser must take them for what their
// Content-Type says, never sniff them into HTML or script.
func noSniff(c *gin.Context) { c.Header("X-Content-Type-Options", "nosniff") }

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

// bindJSON decodes a bounded JSON body strictly: unknown fields, trailing
// data and oversized bodies are client errors.
func bindJSON(c *gin.Context, out any) error { return bindJSONLimit(c, out, maxJSONBody) }

// bindJSONLimit is bindJSON with another bound (server-to-server batches).
func bindJSONLimit(c *gin.Context, out any, limit int64) error {
	body := http.MaxBytesReader(c.Writer, c.Request.Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("%w: request body exceeds %d bytes", ErrTooLarge, limit)
		}
		if errors.Is(err, io.EOF) {
			return badRequest("empty request body")
		}
		return badRequest("invalid JSON body: %v", err)
	}
	// Only whitespace may follow the value, and it counts against the
	// limit too (dec.More would accept a stray '}' or ']' and stop at the
	// limit without saying so).
	rest, err := io.ReadAll(io.MultiReader(dec.Buffered(), body))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("%w: request body exceeds %d bytes", ErrTooLarge, limit)
		}
		return badRequest("reading the request body: %v", err)
	}
	if len(bytes.Trim(rest, " \t\r\n")) > 0 {
		return badRequest("invalid JSON body: trailing data after the object")
	}
	return nil
}

// errShuttingDown ends the requests of a server that stops.
var errShuttingDown = fmt.Errorf("%w: this server is shutting down; retry on another", ErrUnavailable)

// waitEnded answers a request whose wait ended early: nothing when the
// client went away, 503 when this server stops, else the error (a queued
// call deleted with its function is a 404), never a silent empty 200.
func waitEnded(c *gin.Context, err error) {
	ctx := c.Request.Context()
	if ctx.Err() != nil {
		if !errors.Is(context.Cause(ctx), errShuttingDown) {
			return // the client went away; a call goes on and can be fetched
		}
		err = errShuttingDown
	}
	writeError(c, err)
}

// blocking runs a read as a blocking query: with ?index=N it waits (up to
// ?wait, default 5m, at most 10m) until the read's index passes N, then
// answers with X-Hyper-Index.
func (s *Server) blocking(c *gin.Context, read func(ws memdb.WatchSet) (uint64, any, error)) {
	var minIndex uint64
	if v := c.Query("index"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(c, badRequest("index must be a number: %q", v))
			return
		}
		minIndex = n
	}
	wait := 5 * time.Minute
	if v := c.Query("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			writeError(c, badRequest("wait must be a duration like 30s: %q", v))
			return
		}
		wait = min(d, 10*time.Minute)
	}
	deadline := time.Now().Add(wait)
	for reads := 1; ; reads++ {
		ws := memdb.NewWatchSet()
		ws.Add(s.store.AbandonCh())
		// A read takes its data and its index from different moments: a
		// change applied between them could give an index newer than the
		// data, and a client that then waits past that index never hears
		// of the change. So the store's latest index is taken first; an
		// index past it means something changed during the read: read
		// again (a few times under churn, then answer the older index,
		// which at worst wakes the client once more).
		pre := s.store.LatestIndex()
		idx, val, err := read(ws)
		if err != nil {
			writeError(c, err)
			return
		}
		if idx > pre {
			if reads < 5 {
				continue
			}
			idx = pre
		}
		if minIndex == 0 || idx > minIndex || !time.Now().Before(deadline) {
			c.Header(api.HeaderIndex, strconv.FormatUint(idx, 10))
			c.JSON(http.StatusOK, val)
			return
		}
		ctx, cancel := context.WithDeadline(c.Request.Context(), deadline)
		_ = ws.WatchCtx(ctx) // a change, the deadline, a gone client or shutdown
		cancel()
		if err := c.Request.Context().Err(); err != nil {
			waitEnded(c, err)
			return
		}
	}
}

// router builds the gin engine with both API faces.
func (s *Server) router() http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.Recovery(), s.accessLog(), bodyDeadline(s.cfg.BodyReadTimeout), noSniff)
	r.HandleMethodNotAllowed = true
	r.NoRoute(func(c *gin.Context) {
		c.JSON(http.StatusNotFound, api.ErrorBody{Error: "no such endpoint: " + c.Request.Method + " " + c.Request.URL.Path})
	})
	r.NoMethod(func(c *gin.Context) {
		c.JSON(http.StatusMethodNotAllowed, api.ErrorBody{Error: "method not allowed: " + c.Request.Method + " " + c.Request.URL.Path})
	})
	s.statusRoutes(r)
	s.internalRoutes(r)
	v1 := r.Group("/v1", s.awaitReady)
	s.functionRoutes(v1)
	s.callRoutes(v1)
	s.adminRoutes(v1)
	s.queueRoutes(v1)
	s.publicRoutes(r)
	s.artifactRoutes(r)
	ui.Register(r, r)
	return r
}

// accessLog logs requests by route pattern, never by raw path: the
// per-function paths carry secrets.
func (s *Server) accessLog() gin.HandlerFunc {
	log := s.log.Named("http")
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		code := c.Writer.Status()
		s.metrics.requests.WithLabelValues(c.Request.Method, route, strconv.Itoa(code)).Inc()
		if len(c.Errors) > 0 {
			log.Error("request failed", "method", c.Request.Method, "route", route, "status", code, "error", c.Errors.String())
		} else if log.IsTrace() {
			// Trace, not debug: at debug the log tells what became of
			// each call, which health and status polls would drown.
			log.Trace("request", "method", c.Request.Method, "route", route, "status", code, "duration", time.Since(start))
		}
	}
}

func isStale(c *gin.Context) bool {
	_, ok := c.GetQuery("stale")
	return ok
}

// lowerName validates a function name as DESIGN.md §3 defines it.
func validName(n string) bool {
	if n == "" || len(n) > 63 {
		return false
	}
	for i := 0; i < len(n); i++ {
		ch := n[i]
		alnum := (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')
		if !alnum && !(ch == '-' && i > 0 && i < len(n)-1) {
			return false
		}
	}
	return true
}

// validEnvKey accepts POSIX-style variable names only, so nothing in a key
// can inject into the container's environment or a Nomad job.
func validEnvKey(k string) bool {
	if k == "" || len(k) > 256 {
		return false
	}
	for i := 0; i < len(k); i++ {
		ch := k[i]
		ok := ch == '_' || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (i > 0 && ch >= '0' && ch <= '9')
		if !ok {
			return false
		}
	}
	return true
}

func validateEnv(env map[string]string) error {
	size := 0
	for k, v := range env {
		if !validEnvKey(k) {
			return badRequest("invalid env key %q: use letters, digits and _ and do not start with a digit", k)
		}
		if strings.ContainsRune(v, 0) {
			return badRequest("env value of %s contains a NUL byte", k)
		}
		size += len(k) + len(v)
	}
	if size > 64<<10 {
		return badRequest("env exceeds 64 KiB")
	}
	return nil
}
