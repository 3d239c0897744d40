package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	memdb "github.com/hashicorp/go-memdb"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/fsm"
)

func (s *Server) callRoutes(g *gin.RouterGroup) {
	w, r := s.toLeader(true), s.toLeader(false)
	g.GET("/calls", r, s.authenticate, s.listCalls)
	g.GET("/calls/:id", r, s.authenticate, s.getCall)
	g.GET("/calls/:id/output", r, s.authenticate, s.callOutput)
	g.POST("/calls/:id/cancel", w, s.authenticate, s.cancelCall)
}

// hopHeaders never reach a function: they describe the connection, or
// carry credentials the function has no business seeing.
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true, "Proxy-Authorization": true,
	"Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Authorization": true, "X-Hyper-Token": true, headerForwarded: true, headerClusterKey: true,
	"Cookie": true, "Content-Length": true, "Expect": true,
}

// headerEnv turns request headers into HTTP_* variables (Content-Type ->
// HTTP_CONTENT_TYPE). Go's server already refused header names that are
// not tokens and values with newlines; names are mapped to [A-Z0-9_].
func headerEnv(h http.Header) map[string]string {
	env := map[string]string{}
	for k, vs := range h {
		if hopHeaders[http.CanonicalHeaderKey(k)] {
			continue
		}
		name := strings.Map(func(r rune) rune {
			switch {
			case r >= 'a' && r <= 'z':
				return r - 'a' + 'A'
			case (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9'):
				return r
			}
			return '_'
		}, k)
		env["HTTP_"+name] = strings.Join(vs, ",")
	}
	return env
}

// readStdin reads a call's body up to the stdin limit: one byte more is a
// 413 and nothing is queued.
func (s *Server) readStdin(c *gin.Context) ([]byte, error) {
	body := http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxStdin)
	b, err := io.ReadAll(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, s.stdinTooLarge()
		}
		return nil, badRequest("reading the request body: %v", err)
	}
	return b, nil
}

func (s *Server) stdinTooLarge() error {
	return fmt.Errorf("%w: stdin exceeds %s", ErrTooLarge, executor.SizeText(s.cfg.MaxStdin))
}

// newCall is a call of f as the leader queues it: a new ID, key and time,
// the request's headers as env (the function's env is added at start).
func (s *Server) newCall(f *fsm.Function, stdin []byte, headers http.Header) *fsm.Call {
	return &fsm.Call{
		ID: uuid.NewString(), Function: f.ID, Owner: f.Owner, Stdin: stdin,
		Env: headerEnv(headers), Key: newSecret(), CreatedAt: now(),
	}
}

func (s *Server) callFunction(c *gin.Context) {
	f, err := s.ownFunction(c, nil)
	if err != nil {
		writeError(c, err)
		return
	}
	var cr credential
	if s.cfg.ACL {
		cr.TokenHash = hashSecret(tokenOf(c.Request))
	}
	s.submitCall(c, f, c.Query("sync") == "true", cr)
}

// submitCall queues a call of f with the request body as stdin. Async, it
// answers the call ID at once; sync, it waits for the end and answers as
// `get --wait` would.
func (s *Server) submitCall(c *gin.Context, f *fsm.Function, sync bool, cr credential) {
	stdin, err := s.readStdin(c)
	if err != nil {
		writeError(c, err)
		return
	}
	call := s.newCall(f, stdin, c.Request.Header)
	enqueue := s.enqueuer.enqueue
	if !s.IsLeader() {
		// An async call on a follower: batched to the leader, which checks
		// it again and queues it under an ID of its own.
		enqueue = func(call *fsm.Call) error { return s.forwardEnqueue(call, cr, c.Request.Header) }
	}
	if err := enqueue(call); err != nil {
		writeError(c, err)
		return
	}
	c.Header(api.HeaderCallID, call.ID)
	if !sync {
		c.JSON(http.StatusAccepted, api.CallAccepted{CallID: call.ID})
		return
	}
	final, err := s.waitCall(c.Request.Context(), call.ID)
	if err != nil {
		waitEnded(c, err)
		return
	}
	s.writeOutput(c, final)
}

// waitCall blocks until the call ends (or ctx ends).
func (s *Server) waitCall(ctx context.Context, id string) (*fsm.Call, error) {
	for {
		ws := memdb.NewWatchSet()
		ws.Add(s.store.AbandonCh())
		c, err := s.store.Call(ws, id)
		if err != nil {
			return nil, err
		}
		if c == nil {
			return nil, fmt.Errorf("call %s %w", id, fsm.ErrNotFound)
		}
		if fsm.Final(c.State) {
			return c, nil
		}
		if err := ws.WatchCtx(ctx); err != nil {
			return nil, err
		}
	}
}

// publicState is the state users see. STARTING shows as PENDING, not as
// RUNNING as DESIGN.md first had it: a STARTING call can go back to the
// queue (the executor was unavailable, or a new leader found it never
// started), and a state seen by a client must never go backwards. It is
// RUNNING once the executor confirmed the start.
func publicState(st string) string {
	if st == fsm.StateStarting {
		return fsm.StatePending
	}
	return st
}

// writeOutput answers a call's result with the status codes of Hyper's
// `get`: 200 stdout, 201 running, 202 queued, 410 rotated out, 500 failed,
// 504 timed out, 509 output too large.
func (s *Server) writeOutput(c *gin.Context, call *fsm.Call) {
	state := publicState(call.State)
	c.Header(api.HeaderCallID, call.ID)
	c.Header(api.HeaderCallState, state)
	switch call.State {
	case fsm.StatePending, fsm.StateStarting:
		c.JSON(http.StatusAccepted, toAPICall(call))
	case fsm.StateRunning:
		c.JSON(http.StatusCreated, toAPICall(call))
	case fsm.StateFinished:
		out, err := s.store.Output(nil, call.ID)
		if err != nil {
			writeError(c, err)
			return
		}
		if out == nil || call.Rotated {
			c.AbortWithStatusJSON(http.StatusGone, api.ErrorBody{Error: "the output of call " + call.ID + " rotated out of the function's output cache", CallID: call.ID})
			return
		}
		c.Data(http.StatusOK, "application/octet-stream", out.Data)
	default:
		code := http.StatusInternalServerError
		switch call.Reason {
		case api.ReasonTimeout:
			code = http.StatusGatewayTimeout
		case api.ReasonOutput:
			code = 509
		}
		msg := call.Message
		if msg == "" {
			msg = "call " + strings.ToLower(call.State)
		}
		c.AbortWithStatusJSON(code, api.ErrorBody{Error: msg, CallID: call.ID})
	}
}

func toAPICall(c *fsm.Call) *api.Call {
	return &api.Call{
		ID: c.ID, Function: c.Function[strings.IndexByte(c.Function, '/')+1:], Owner: c.Owner,
		State: publicState(c.State), Reason: c.Reason, Message: c.Message, ExitCode: c.ExitCode,
		StdinSize: c.StdinSize, StdoutSize: c.StdoutSize, Rotated: c.Rotated,
		CreatedAt: c.CreatedAt, StartedAt: c.StartedAt, FinishedAt: c.FinishedAt,
	}
}

// ownCall finds a call of the caller (any call for an admin).
func (s *Server) ownCall(c *gin.Context, ws memdb.WatchSet) (*fsm.Call, error) {
	id := c.Param("id")
	call, err := s.store.Call(ws, id)
	if err != nil {
		return nil, err
	}
	me := identity(c)
	if call == nil || (call.Owner != me.User && !me.Admin) {
		return nil, fmt.Errorf("call %q %w", id, fsm.ErrNotFound)
	}
	return call, nil
}

func (s *Server) getCall(c *gin.Context) {
	s.blocking(c, func(ws memdb.WatchSet) (uint64, any, error) {
		call, err := s.ownCall(c, ws)
		if err != nil {
			return 0, nil, err
		}
		return call.ModifyIndex, toAPICall(call), nil
	})
}

func (s *Server) callOutput(c *gin.Context) {
	call, err := s.ownCall(c, nil)
	if err != nil {
		writeError(c, err)
		return
	}
	if c.Query("wait") == "true" && !fsm.Final(call.State) {
		if call, err = s.waitCall(c.Request.Context(), call.ID); err != nil {
			waitEnded(c, err)
			return
		}
	}
	s.writeOutput(c, call)
}

func (s *Server) cancelCall(c *gin.Context) {
	call, err := s.ownCall(c, nil)
	if err != nil {
		writeError(c, err)
		return
	}
	if _, _, err := s.raftApply(fsm.CallCancelType, &fsm.CallCancelRequest{ID: call.ID, Time: now()}); err != nil {
		writeError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) listCalls(c *gin.Context) {
	name := c.Query("function")
	if !validName(name) {
		writeError(c, badRequest("function=<name> is required"))
		return
	}
	fnID := fsm.FunctionID(identity(c).User, name)
	s.blocking(c, func(ws memdb.WatchSet) (uint64, any, error) {
		calls, err := s.store.CallsOfFunction(ws, fnID)
		if err != nil {
			return 0, nil, err
		}
		out := make([]*api.Call, 0, len(calls))
		for _, call := range calls {
			out = append(out, toAPICall(call))
		}
		return s.store.Index(ws, fsm.TableCalls), out, nil
	})
}

func (s *Server) functionLogs(c *gin.Context) {
	f, err := s.ownFunction(c, nil)
	if err != nil {
		writeError(c, err)
		return
	}
	s.streamLogs(c, f, "ndjson")
}

// streamLogs writes a function's log events (?tail=N, ?callid=, ?follow=true)
// as NDJSON or in the seed's line format (?format=text).
func (s *Server) streamLogs(c *gin.Context, f *fsm.Function, defaultFormat string) {
	tail := 0
	if v := c.Query("tail"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(c, badRequest("tail must be a non-negative number: %q", v))
			return
		}
		tail = n
	}
	format := c.DefaultQuery("format", defaultFormat)
	if format != "ndjson" && format != "text" {
		writeError(c, badRequest("format must be ndjson or text"))
		return
	}
	callID := c.Query("callid")
	follow := c.Query("follow") == "true"
	if format == "text" {
		c.Header("Content-Type", "text/plain; charset=utf-8")
	} else {
		c.Header("Content-Type", "application/x-ndjson")
	}
	c.Status(http.StatusOK)
	w := bufio.NewWriter(c.Writer)
	var after uint64
	ctx := c.Request.Context()
	for {
		ws := memdb.NewWatchSet()
		ws.Add(s.store.AbandonCh())
		// With a call ID filter the tail is of that call's lines, so the
		// store cannot cut it.
		storeTail := tail
		if callID != "" {
			storeTail = 0
		}
		entries, err := s.store.Logs(ws, f.ID, after, storeTail)
		if err != nil {
			return
		}
		var events []api.LogEvent
		for _, e := range entries {
			after = e.Seq
			if callID != "" && e.CallID != callID {
				continue
			}
			for _, l := range e.Lines() {
				events = append(events, api.LogEvent{Time: e.Time, Function: f.Name, CallID: e.CallID, Kind: l[0], Text: l[1], Index: e.Seq})
			}
		}
		// Only the first batch is cut to the tail, counted in lines (an
		// entry may stand for two).
		if tail > 0 && len(events) > tail {
			events = events[len(events)-tail:]
		}
		tail = 0
		for _, ev := range events {
			if format == "text" {
				w.WriteString(ev.Line())
				w.WriteByte('\n')
			} else {
				writeNDJSON(w, ev)
			}
		}
		w.Flush()
		c.Writer.Flush()
		if !follow {
			return
		}
		if err := ws.WatchCtx(ctx); err != nil {
			return
		}
		if fn, _ := s.store.Function(nil, f.ID); fn == nil {
			return // the function was deleted
		}
	}
}
