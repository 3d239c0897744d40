package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/hashicorp/raft"

	"github.com/hyperfunc/hyperfunc/fsm"
)

// raftApply is the one path by which commands reach Raft. It returns the
// FSM's answer, and a business error from Apply keeps its identity (so the
// HTTP layer maps fsm.ErrNotFound and friends with errors.Is).
func (s *Server) raftApply(t fsm.MessageType, req any) (any, uint64, error) {
	f, err := s.raftApplyAsync(t, req)
	if err != nil {
		return nil, 0, err
	}
	return s.resolve(t, f)
}

// raftApplyAsync hands a command to Raft and returns at once; entries
// given in order are committed in that order.
func (s *Server) raftApplyAsync(t fsm.MessageType, req any) (raft.ApplyFuture, error) {
	b, err := fsm.Encode(t, req)
	if err != nil {
		return nil, err
	}
	return s.raft.Apply(b, s.cfg.ApplyTimeout), nil
}

// resolve waits for an applied command and unwraps its answer.
func (s *Server) resolve(t fsm.MessageType, f raft.ApplyFuture) (any, uint64, error) {
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) ||
			errors.Is(err, raft.ErrEnqueueTimeout) || errors.Is(err, raft.ErrRaftShutdown) ||
			errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return nil, 0, fmt.Errorf("%w: %s: %w", ErrNoLeader, t, err)
		}
		return nil, 0, fmt.Errorf("raft apply %s: %w", t, err)
	}
	if err, ok := f.Response().(error); ok {
		return nil, f.Index(), err
	}
	return f.Response(), f.Index(), nil
}

// enqueuer batches call enqueues: requests that arrive while earlier
// batches are in Raft wait together and go in the next entry, so N
// concurrent clients cost about one disk sync, not N. Up to maxInFlight
// batches are in Raft at once; they are handed to Raft in arrival order,
// which keeps the queue FIFO.
type enqueuer struct {
	s        *Server
	ch       chan *enqueueReq
	inFlight chan struct{}
}

const maxInFlight = 4

type enqueueReq struct {
	call *fsm.Call
	cred credential // what authorized it, for a follower's forward
	// headers are the request's, for a follower's forward: the leader
	// builds the call's env from them itself.
	headers http.Header
	done    chan error
}

func newEnqueuer(s *Server) *enqueuer {
	return &enqueuer{s: s, ch: make(chan *enqueueReq, 4096), inFlight: make(chan struct{}, maxInFlight)}
}

// enqueue queues one call through the batcher and waits for its commit.
// A stdin too large for an entry is staged in chunks first. When ctx ends
// before the call is handed to the batcher (its sender gave up during a
// long staging), it is not queued, and the error says so; once handed
// over, it is queued whatever ctx says, and the answer waits for that.
func (e *enqueuer) enqueue(ctx context.Context, c *fsm.Call) error {
	c, err := e.s.stageStdin(ctx, c)
	if err != nil {
		return err
	}
	if ctx.Err() != nil { // checked first: select picks among ready cases at random
		return fmt.Errorf("call not queued: its sender gave up: %w", context.Cause(ctx))
	}
	r := &enqueueReq{call: c, done: make(chan error, 1)}
	select {
	case e.ch <- r:
	case <-e.s.shutdownCh:
		return ErrNoLeader
	case <-ctx.Done():
		return fmt.Errorf("call not queued: its sender gave up: %w", context.Cause(ctx))
	}
	return <-r.done
}

func (e *enqueuer) run(stop <-chan struct{}) {
	var held *enqueueReq // the head of the next batch, when the last one was full
	for {
		first := held
		if first == nil {
			select {
			case first = <-e.ch:
			case <-stop:
				e.drain()
				return
			}
		}
		select {
		case e.inFlight <- struct{}{}:
		case <-stop:
			first.done <- ErrNoLeader
			e.drain()
			return
		}
		// Take what arrived while waiting for a slot.
		var batch []*enqueueReq
		batch, held = fillBatch(first, e.ch)
		e.apply(batch)
	}
}

// fillBatch takes the requests waiting behind first, up to one entry's
// worth: fsm.MaxBatch calls and fsm.MaxEntryPayload bytes (entryCost;
// first alone may carry more). A request that would pass the bound is held for
// the next batch, never reordered behind later ones.
func fillBatch(first *enqueueReq, ch <-chan *enqueueReq) ([]*enqueueReq, *enqueueReq) {
	batch, size := []*enqueueReq{first}, entryCost(first.call)
	for len(batch) < fsm.MaxBatch {
		select {
		case r := <-ch:
			if size+entryCost(r.call) > fsm.MaxEntryPayload {
				return batch, r
			}
			batch = append(batch, r)
			size += entryCost(r.call)
		default:
			return batch, nil
		}
	}
	return batch, nil
}

// entryCost is about what a call adds to an enqueue entry: its stdin, its
// environment (the request's headers) and its record.
func entryCost(c *fsm.Call) int {
	n := len(c.Stdin) + 128
	for k, v := range c.Env {
		n += len(k) + len(v)
	}
	return n
}

// apply hands the batch to Raft now (order) and waits for it elsewhere.
func (e *enqueuer) apply(batch []*enqueueReq) {
	req := &fsm.CallEnqueueRequest{MaxQueued: e.s.cfg.MaxQueued, MaxQueuedBytes: e.s.cfg.MaxQueuedBytes}
	for _, r := range batch {
		req.Calls = append(req.Calls, r.call)
	}
	f, err := e.s.raftApplyAsync(fsm.CallEnqueueBinType, req)
	go func() {
		defer func() { <-e.inFlight }()
		var res any
		if err == nil {
			res, _, err = e.s.resolve(fsm.CallEnqueueBinType, f)
		}
		for i, r := range batch {
			if err != nil {
				r.done <- err
			} else {
				r.done <- res.(*fsm.EnqueueResult).Errors[i]
			}
		}
		if err == nil {
			e.s.metrics.enqueued.Add(float64(len(batch)))
		}
	}()
}

func (e *enqueuer) drain() {
	for {
		select {
		case r := <-e.ch:
			r.done <- ErrNoLeader
		default:
			return
		}
	}
}
