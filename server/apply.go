package server

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"

	"github.com/hyperfunc/hyperfunc/fsm"
)

// raftApply is the one path by which commands reach Raft. It returns the
// FSM's answer, and a business error from Apply keeps its identity (so the
// HTTP layer maps fsm.ErrNotFound and friends with errors.Is).
func (s *Server) raftApply(t fsm.MessageType, req any) (any, uint64, error) {
	b, err := fsm.Encode(t, req)
	if err != nil {
		return nil, 0, err
	}
	f := s.raft.Apply(b, s.cfg.ApplyTimeout)
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

// enqueuer batches call enqueues: requests that arrive while a batch is in
// Raft wait together and go in the next entry, so N concurrent clients
// cost about one disk sync, not N.
type enqueuer struct {
	s  *Server
	ch chan *enqueueReq
}

type enqueueReq struct {
	call *fsm.Call
	done chan error
}

func newEnqueuer(s *Server) *enqueuer {
	return &enqueuer{s: s, ch: make(chan *enqueueReq, 4096)}
}

// enqueue queues one call through the batcher and waits for its commit.
func (e *enqueuer) enqueue(c *fsm.Call) error {
	r := &enqueueReq{call: c, done: make(chan error, 1)}
	select {
	case e.ch <- r:
	case <-e.s.shutdownCh:
		return ErrNoLeader
	}
	return <-r.done
}

func (e *enqueuer) run(stop <-chan struct{}) {
	for {
		var first *enqueueReq
		select {
		case first = <-e.ch:
		case <-stop:
			e.drain()
			return
		}
		batch := []*enqueueReq{first}
	fill:
		for len(batch) < fsm.MaxBatch && batchBytes(batch) < 8<<20 {
			select {
			case r := <-e.ch:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		e.apply(batch)
	}
}

func batchBytes(b []*enqueueReq) int {
	n := 0
	for _, r := range b {
		n += len(r.call.Stdin)
	}
	return n
}

func (e *enqueuer) apply(batch []*enqueueReq) {
	req := &fsm.CallEnqueueRequest{MaxQueued: e.s.cfg.MaxQueued}
	for _, r := range batch {
		req.Calls = append(req.Calls, r.call)
	}
	res, _, err := e.s.raftApply(fsm.CallEnqueueType, req)
	for i, r := range batch {
		switch {
		case err != nil:
			r.done <- err
		default:
			r.done <- res.(*fsm.EnqueueResult).Errors[i]
		}
	}
	if err == nil {
		e.s.metrics.enqueued.Add(float64(len(batch)))
	}
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
