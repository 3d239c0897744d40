package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

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
	"Cookie": true, "Content-Length": true, "Expect": true, api.HeaderEarlyCallID: true,
}

// headerEnv turns request headers into HTTP_* variables (Content-Type ->
// HTTP_CONTENT_TYPE). Go's server already refused header names that are
// not tokens and values with newlines; names are mapped to [A-Z0-9_].
// Distinct headers that map to the same name (X-A-B, X_A_B, X.A.B) are a
// 400 naming them: picking one would depend on map order.
func headerEnv(h http.Header) (map[string]string, error) {
	env := map[string]string{}
	from := map[string]string{} // env name -> the header it came from
	// In sorted order: the same headers always name the same pair.
	for _, k := range slices.Sorted(maps.Keys(h)) {
		vs := h[k]
		if hopHeaders[http.CanonicalHeaderKey(k)] {
			continue
		}
		name := "HTTP_" + strings.Map(func(r rune) rune {
			switch {
			case r >= 'a' && r <= 'z':
				return r - 'a' + 'A'
			case (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9'):
				return r
			}
			return '_'
		}, k)
		if other, ok := from[name]; ok {
			a, b := min(k, other), max(k, other)
			return nil, badRequest("headers %q and %q both map to the variable %s: send only one of them", a, b, name)
		}
		from[name] = k
		env[name] = strings.Join(vs, ",")
	}
	return env, nil
}

// callHeaders are the request headers a function may see (headerEnv's
// input): what a follower forwards to the leader, without the client's
// credentials and the connection's own headers.
func callHeaders(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for k, vs := range h {
		if !hopHeaders[http.CanonicalHeaderKey(k)] {
			out[k] = vs
		}
	}
	return out
}

// stdinDrainMax and stdinDrainTime bound what the agent still reads of a
// refused body after its 413: enough for a client that is still sending
// (a photo of a few MB) to finish and read the answer, instead of meeting
// a reset because the agent closed with its data unread.
const (
	stdinDrainMax  = 64 << 20
	stdinDrainTime = 10 * time.Second
)

// checkStdinLength refuses a call whose declared Content-Length exceeds the
// stdin limit before anything reads the body (or forwards it): with
// `Expect: 100-continue` the client then never sends it, since the agent
// never answered 100 Continue.
func (s *Server) checkStdinLength(c *gin.Context) {
	if c.Request.ContentLength > s.cfg.MaxStdin {
		s.refuseStdin(c)
	}
}

// refuseStdin answers 413 and closes the connection. A client that is
// sending its body (no Expect, or already told to continue) gets its body
// read and dropped, bounded in bytes and time, after the answer went out.
func (s *Server) refuseStdin(c *gin.Context) {
	rc := http.NewResponseController(c.Writer)
	sending := !strings.EqualFold(c.GetHeader("Expect"), "100-continue") || c.GetBool(ctxStdinRead)
	if c.Request.ContentLength > stdinDrainMax {
		sending = false // more than the drain would take: no use reading any
	}
	if sending {
		// Reads after the answer need full duplex on HTTP/1.x; without
		// it the server drops the body once the header is written.
		_ = rc.EnableFullDuplex()
	}
	c.Header("Connection", "close")
	writeError(c, s.stdinTooLarge())
	if !sending {
		return
	}
	c.Writer.Flush()
	_ = rc.SetReadDeadline(time.Now().Add(stdinDrainTime))
	_, _ = io.CopyN(io.Discard, c.Request.Body, stdinDrainMax)
}

// ctxStdinRead marks a request whose body reading began (so a 100
// Continue went out if the client asked for one).
const ctxStdinRead = "hyperfunc.stdin-read"

// readStdin reads a call's body up to the stdin limit: one byte more is a
// 413 (answered here; ok is false) and nothing is queued.
func (s *Server) readStdin(c *gin.Context) (b []byte, ok bool) {
	if c.Request.ContentLength > s.cfg.MaxStdin {
		s.refuseStdin(c)
		return nil, false
	}
	c.Set(ctxStdinRead, true)
	b, err := io.ReadAll(io.LimitReader(c.Request.Body, s.cfg.MaxStdin+1))
	if err != nil {
		writeError(c, badRequest("reading the request body: %v", err))
		return nil, false
	}
	if int64(len(b)) > s.cfg.MaxStdin {
		s.refuseStdin(c)
		return nil, false
	}
	return b, true
}

func (s *Server) stdinTooLarge() error {
	return fmt.Errorf("%w: stdin exceeds %s", ErrTooLarge, executor.SizeText(s.cfg.MaxStdin))
}

// newCall is a call of f as the leader queues it: a new ID, key and time,
// the request's headers as env (the function's env is added at start).
// Headers that map to one variable name are a 400.
func (s *Server) newCall(f *fsm.Function, stdin []byte, headers http.Header) (*fsm.Call, error) {
	env, err := headerEnv(headers)
	if err != nil {
		return nil, err
	}
	return &fsm.Call{
		ID: uuid.NewString(), Function: f.ID, Owner: f.Owner, Stdin: stdin,
		Env: env, Key: newSecret(), CreatedAt: now(),
	}, nil
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
	// Colliding headers are refused before the body is read.
	if _, err := headerEnv(c.Request.Header); err != nil {
		writeError(c, err)
		return
	}
	stdin, ok := s.readStdin(c)
	if !ok {
		return
	}
	call, err := s.newCall(f, stdin, c.Request.Header)
	if err != nil {
		writeError(c, err)
		return
	}
	enqueue := func(call *fsm.Call) error { return s.enqueuer.enqueue(c.Request.Context(), call) }
	if !s.IsLeader() {
		// An async call on a follower: batched to the leader, which checks
		// it again and queues it under an ID of its own.
		enqueue = func(call *fsm.Call) error { return s.forwardEnqueue(call, cr, callHeaders(c.Request.Header)) }
	}
	if err := enqueue(call); err != nil {
		writeError(c, err)
		return
	}
	s.log.Debug("call queued", "call", call.ID, "function", f.ID, "sync", sync, "stdin", len(stdin))
	c.Header(api.HeaderCallID, call.ID)
	if !sync {
		c.JSON(http.StatusAccepted, api.CallAccepted{CallID: call.ID})
		return
	}
	if c.GetHeader(api.HeaderEarlyCallID) == "true" {
		sendCallID(c)
	}
	final, err := s.waitCall(c.Request.Context(), call.ID)
	if err != nil {
		waitEnded(c, err)
		return
	}
	s.writeOutput(c, final)
}

// sendCallID sends the call ID (set as a header) in an informational 102
// Processing answer before a sync call waits, when the client asked for it
// (api.HeaderEarlyCallID: hyper and the Go client do; curl users may), so a client whose proxy cuts
// the wait still knows which call to fetch later. The final answer repeats
// the header. Gin's writer keeps only the last status, so the 1xx goes to
// the connection's own writer.
func sendCallID(c *gin.Context) {
	if !c.Request.ProtoAtLeast(1, 1) {
		return // HTTP/1.0 clients must not get a 1xx
	}
	connWriter(c.Writer).WriteHeader(http.StatusProcessing)
}

// informationalWriter passes 1xx answers straight to the connection,
// which gin's writer would otherwise keep as the status of the final
// answer: a follower proxying a sync call then relays the leader's 102
// with the call ID as it comes.
type informationalWriter struct{ gin.ResponseWriter }

func (w informationalWriter) WriteHeader(code int) {
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		connWriter(w.ResponseWriter).WriteHeader(code)
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

// connWriter is the net/http writer under gin's.
func connWriter(w http.ResponseWriter) http.ResponseWriter {
	if u, ok := w.(interface{ Unwrap() http.ResponseWriter }); ok {
		return u.Unwrap()
	}
	return w
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
	// A function's output is untrusted bytes: a browser saves it, never
	// renders or sniffs it (the call ID is a UUID, safe in the header).
	c.Header("Content-Disposition", `attachment; filename="`+call.ID+`.out"`)
	c.Header("X-Content-Type-Options", "nosniff")
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
