package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hyperfunc/hyperfunc/fsm"
)

// Async calls that reach a follower are not proxied one by one: the
// follower authenticates them and builds the call from its own replica
// (the leader's Apply checks the function and the queue bound again), and a
// batcher sends what arrived meanwhile to the leader in one request. Two
// thirds of a spread load thus cost one HTTP exchange per batch instead of
// one per call. Sync calls are still proxied: they wait at the leader.

// toLeaderUnlessAsyncCall forwards like toLeader(true), except async calls
// on a follower whose replica already knows the caller's token and the
// function: the handler queues those through the follower's batcher. What
// the replica does not know yet (a function or token created a moment
// ago) goes to the leader, so a client reads its own writes. So does a
// call whose body is larger than batchedBodyMax.
func (s *Server) toLeaderUnlessAsyncCall(sync func(*gin.Context) bool, known func(*gin.Context) bool) gin.HandlerFunc {
	proxy := s.toLeader(true)
	return func(c *gin.Context) {
		if s.IsLeader() || sync(c) || s.leaderHTTP() == "" || c.Request.ContentLength > batchedBodyMax || !known(c) {
			proxy(c)
		}
	}
}

// batchedBodyMax is the largest body (by Content-Length) an async call on
// a follower may have to go through the batcher; a larger one is proxied
// to the leader as it came. Batching saves an exchange per call, which
// matters for small calls only; the batch is JSON, so its stdin travels in
// base64 and both ends code it: with 8 clients sending 1 MiB, that was the
// agents' largest CPU cost after the kernel's (bench TestMemoryIssue12,
// load). A chunked body (no length) is batched, as it is read whole first.
const batchedBodyMax = 64 << 10

// knownOwnFunction: the replica resolves the token and the function of a
// /v1 call.
func (s *Server) knownOwnFunction(c *gin.Context) bool {
	user := DefaultUser
	if s.cfg.ACL {
		tok, err := s.store.TokenBySecretHash(hashSecret(tokenOf(c.Request)))
		if err != nil || tok == nil {
			return false
		}
		user = tok.User
	}
	f, err := s.store.Function(nil, fsm.FunctionID(user, c.Param("name")))
	return err == nil && f != nil
}

// knownSecretFunction: the replica resolves a per-function address.
func (s *Server) knownSecretFunction(c *gin.Context) bool {
	f, err := s.secretFunction(c)
	return err == nil && f != nil
}

// internalEnqueue is the leader's side: one batch from a follower, one
// answer per call. Each call carries the hash of the credential it came
// with, which the leader checks against its own state: a follower's
// replica may not have seen a secret rotated or a token revoked a moment
// ago, and such a call must not be queued. A forwarded call is what the
// client sent, not a call record: the leader checks it as it checks a
// client's (stdin limit, the function, the credential) and builds the call
// itself (its ID, time, key, and env from the headers and the function),
// so a peer, even one holding the cluster key, cannot queue what no client
// could.
type internalEnqueue struct {
	Calls []forwardedCall `json:"calls"`
	Creds []credential    `json:"creds"`
}

// forwardedCall is a client's async call as a follower received it.
type forwardedCall struct {
	Function string      `json:"function"` // owner/name
	Owner    string      `json:"owner"`
	Stdin    []byte      `json:"stdin,omitempty"`
	Headers  http.Header `json:"headers,omitempty"`
}

// maxForwardBody bounds one forwarded batch: fillBatch stops at
// fsm.MaxEntryPayload of stdin or one call's, base64 adds a third,
// headers and up to fsm.MaxBatch records the rest.
func (s *Server) maxForwardBody() int64 { return 16<<20 + 2*max(s.cfg.MaxStdin, fsm.MaxEntryPayload) }

// credential is what authorized a call: the hash of the per-function
// address secret, or of the API token (ACLs on); both empty with ACLs off.
type credential struct {
	SecretHash string `json:"secret_hash,omitempty"`
	TokenHash  string `json:"token_hash,omitempty"`
}

// check is the leader's authorization of a forwarded call; it answers the
// call as the leader builds it.
func (s *Server) check(fc forwardedCall, cr credential) (*fsm.Call, error) {
	if int64(len(fc.Stdin)) > s.cfg.MaxStdin {
		return nil, s.stdinTooLarge()
	}
	f, err := s.store.Function(nil, fc.Function)
	if err != nil {
		return nil, err
	}
	if f == nil || f.Owner != fc.Owner {
		return nil, fmt.Errorf("function %w", fsm.ErrNotFound)
	}
	if err := s.checkCred(f, cr); err != nil {
		return nil, err
	}
	return s.newCall(f, fc.Stdin, fc.Headers)
}

func (s *Server) checkCred(f *fsm.Function, cr credential) error {
	switch {
	case cr.SecretHash != "":
		if subtle.ConstantTimeCompare([]byte(cr.SecretHash), []byte(f.SecretHash)) != 1 {
			return fmt.Errorf("function %w (or wrong address)", fsm.ErrNotFound)
		}
	case s.cfg.ACL:
		tok, err := s.store.TokenBySecretHash(cr.TokenHash)
		if err != nil {
			return err
		}
		if tok == nil || tok.ReadOnly || tok.User != f.Owner {
			return fmt.Errorf("%w: token not found or not allowed to call", ErrForbidden)
		}
	}
	return nil
}

// enqueueOutcome carries an error's message and kind across the wire, so
// the follower answers the same status the leader would have.
type enqueueOutcome struct {
	CallID string `json:"call_id,omitempty"` // the leader's ID of a queued call
	Error  string `json:"error,omitempty"`
	Kind   string `json:"kind,omitempty"`
}

var outcomeKinds = []struct {
	kind string
	err  error
}{
	{"not_found", fsm.ErrNotFound},
	{"exists", fsm.ErrExists},
	{"queue_full", fsm.ErrQueueFull},
	{"no_leader", ErrNoLeader},
	{"forbidden", ErrForbidden},
	{"too_large", ErrTooLarge},
	{"limit", fsm.ErrLimit},
}

func outcomeOf(err error) enqueueOutcome {
	if err == nil {
		return enqueueOutcome{}
	}
	for _, k := range outcomeKinds {
		if errors.Is(err, k.err) {
			return enqueueOutcome{Error: err.Error(), Kind: k.kind}
		}
	}
	return enqueueOutcome{Error: err.Error()}
}

func (o enqueueOutcome) err() error {
	if o.Error == "" {
		return nil
	}
	for _, k := range outcomeKinds {
		if o.Kind == k.kind {
			return fmt.Errorf("%w: %s", k.err, o.Error)
		}
	}
	return errors.New(o.Error)
}

func (s *Server) internalEnqueueHandler(c *gin.Context) {
	var req internalEnqueue
	if err := bindJSONLimit(c, &req, s.maxForwardBody()); err != nil {
		writeError(c, err)
		return
	}
	if len(req.Creds) != len(req.Calls) {
		writeError(c, badRequest("%d credentials for %d calls", len(req.Creds), len(req.Calls)))
		return
	}
	if len(req.Calls) > fsm.MaxBatch {
		writeError(c, badRequest("%d calls in one batch, at most %d", len(req.Calls), fsm.MaxBatch))
		return
	}
	out := make([]enqueueOutcome, len(req.Calls))
	done := make(chan struct{})
	for i, fc := range req.Calls {
		go func() {
			call, err := s.check(fc, req.Creds[i])
			if err == nil {
				err = s.enqueuer.enqueue(c.Request.Context(), call)
			}
			out[i] = outcomeOf(err)
			if err == nil {
				out[i].CallID = call.ID
			}
			done <- struct{}{}
		}()
	}
	for range req.Calls {
		<-done
	}
	c.JSON(http.StatusOK, out)
}

// forwardTimeout bounds a forwarded batch: an apply, and one more for each
// chunk the leader stages of its large stdins (stage.go), which wait for
// one another. It catches a leader that hangs; the leader gives up on
// calls it has not queued yet when this ends (their request's context).
func (s *Server) forwardTimeout(batch []*enqueueReq) time.Duration {
	chunks := 0
	for _, r := range batch {
		if n := len(r.call.Stdin); n > fsm.MaxEntryPayload {
			chunks += (n + stageChunk - 1) / stageChunk
		}
	}
	return s.cfg.ApplyTimeout + 5*time.Second + time.Duration(chunks)*s.cfg.ApplyTimeout
}

// forwardError says what a failed forward means for its calls: a request
// that never reached the leader queued nothing (503, safe to retry); one
// that did and got no answer may have queued them (504, not retried).
func forwardError(addr string, err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return fmt.Errorf("%w: forwarding to the leader at %s: %v", ErrNoLeader, addr, err)
	}
	var answered *internalStatusError
	if errors.As(err, &answered) { // the leader answered, with an error
		return fmt.Errorf("%w: forwarding to the leader at %s: %v", ErrNoLeader, addr, err)
	}
	return fmt.Errorf("%w: the leader at %s took the call and did not answer (%v): it may be queued; look at the function's log (hyper func logs) before sending it again",
		ErrOutcomeUnknown, addr, err)
}

// forwardEnqueue queues a call through this follower's batcher; call.ID
// is the leader's once it returns nil.
func (s *Server) forwardEnqueue(call *fsm.Call, cr credential, headers http.Header) error {
	r := &enqueueReq{call: call, cred: cr, headers: headers, done: make(chan error, 1)}
	select {
	case s.fwdQueue <- r:
	case <-s.shutdownCh:
		return ErrNoLeader
	}
	return <-r.done
}

// runForwarder sends the calls that arrived while the previous batch was
// in flight to the leader in one request; a few batches may be in flight.
func (s *Server) runForwarder() {
	inFlight := make(chan struct{}, maxInFlight)
	var held *enqueueReq // the head of the next batch, when the last one was full
	for {
		first := held
		if first == nil {
			select {
			case first = <-s.fwdQueue:
			case <-s.shutdownCh:
				return
			}
		}
		inFlight <- struct{}{}
		var batch []*enqueueReq
		batch, held = fillBatch(first, s.fwdQueue)
		go func() {
			defer func() { <-inFlight }()
			s.sendBatch(batch)
		}()
	}
}

func (s *Server) sendBatch(batch []*enqueueReq) {
	fail := func(err error) {
		for _, r := range batch {
			r.done <- err
		}
	}
	addr := s.leaderHTTP()
	if addr == "" {
		fail(fmt.Errorf("%w: this server knows no leader", ErrNoLeader))
		return
	}
	req := internalEnqueue{Calls: make([]forwardedCall, len(batch)), Creds: make([]credential, len(batch))}
	for i, r := range batch {
		req.Calls[i] = forwardedCall{Function: r.call.Function, Owner: r.call.Owner, Stdin: r.call.Stdin, Headers: r.headers}
		req.Creds[i] = r.cred
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.forwardTimeout(batch))
	defer cancel()
	var out []enqueueOutcome
	if err := s.internalCall(ctx, http.MethodPost, addr, "/v1/internal/enqueue", req, &out); err != nil {
		fail(forwardError(addr, err))
		return
	}
	if len(out) != len(batch) {
		fail(fmt.Errorf("%w: the leader answered %d outcomes for %d calls", ErrNoLeader, len(out), len(batch)))
		return
	}
	s.metrics.batched.Add(float64(len(batch)))
	for i, r := range batch {
		err := out[i].err()
		if err == nil && out[i].CallID == "" {
			err = fmt.Errorf("%w: the leader queued a call without an ID", ErrNoLeader)
		}
		if err == nil {
			r.call.ID = out[i].CallID
		}
		r.done <- err
	}
}
