package server

import (
	"context"
	"fmt"
	"time"

	"github.com/hyperfunc/hyperfunc/fsm"
)

// stageChunk is the payload of one PayloadStageBin entry (raw bytes, a
// key and an offset besides).
const stageChunk = fsm.MaxEntryPayload * 3 / 4

// stagedMaxAge is how long staged chunks wait for the entry that takes
// them before the leader drops them: far past any enqueue or finish that
// follows its chunks on a live leader, which takes them within one apply.
const stagedMaxAge = 10 * time.Minute

// stage writes data to Raft in chunks under key (fsm/staged.go), on the
// leader. It resumes after the chunks already staged under key (a retry
// after a failed apply), so it may be called again with the same data.
func (s *Server) stage(ctx context.Context, key string, data []byte) error {
	off, err := s.store.StagedBytes(key)
	if err != nil {
		return err
	}
	if off > int64(len(data)) {
		off = 0 // not ours to resume; the FSM refuses the chunk
	}
	t := now()
	for off < int64(len(data)) {
		end := min(off+stageChunk, int64(len(data)))
		req := &fsm.PayloadStageRequest{Key: key, Offset: off, Data: data[off:end], Time: t}
		if err := s.applyChunk(ctx, req); err != nil {
			return err
		}
		off = end
	}
	return nil
}

// stageLanes is how many chunks may be in Raft at once, whoever sends
// them. Raft has one log: every entry waits for those ahead of it to be
// written and replicated. Unbounded, eight clients sending 1 MiB each put
// megabytes ahead of every small call; bounded, large payloads queue among
// themselves, here, and a small call waits behind at most this many
// chunks. Measured (bench TestMemoryIssue12, load): a small call's accept
// p99 beside 8 such clients was 1,068 ms unbounded, 172 ms with 2 lanes,
// 111 ms with 1, for the same 1 MiB throughput (~10 MiB/s).
const stageLanes = 1

func (s *Server) applyChunk(ctx context.Context, req *fsm.PayloadStageRequest) error {
	if ctx.Err() != nil { // checked first: select picks among ready cases at random
		return fmt.Errorf("call not queued: its sender gave up while its payload was staged: %w", context.Cause(ctx))
	}
	select {
	case s.stageLane <- struct{}{}:
	case <-s.shutdownCh:
		return ErrNoLeader
	case <-ctx.Done():
		return fmt.Errorf("call not queued: its sender gave up while its payload was staged: %w", context.Cause(ctx))
	}
	defer func() { <-s.stageLane }()
	_, _, err := s.raftApply(s.stageType(), req)
	return err
}

// stageStdin stages a call's stdin when it is too large for an enqueue
// entry; the call then carries its size and no bytes.
func (s *Server) stageStdin(ctx context.Context, c *fsm.Call) (*fsm.Call, error) {
	if len(c.Stdin) <= fsm.MaxEntryPayload {
		return c, nil
	}
	if err := s.stage(ctx, c.ID, c.Stdin); err != nil {
		return nil, err
	}
	nc := *c
	nc.StdinSize, nc.Stdin = int64(len(c.Stdin)), nil
	return &nc, nil
}

// stageStdout does the same for a result's stdout.
func (s *Server) stageStdout(rs []*fsm.CallResult) error {
	for i, r := range rs {
		if len(r.Stdout) <= fsm.MaxEntryPayload {
			continue
		}
		if err := s.stage(context.Background(), fsm.StagedStdout(r.ID), r.Stdout); err != nil {
			return err
		}
		nr := *r
		nr.StdoutSize, nr.Stdout = int64(len(r.Stdout)), nil
		rs[i] = &nr
	}
	return nil
}

// dropStaged runs while leading: chunks older than stagedMaxAge lost their
// taker (a leader failed between them and it) and are dropped.
func (s *Server) dropStaged(ctx context.Context) {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
		before := now().Add(-stagedMaxAge)
		if old, err := s.store.StagedBefore(before); err != nil || !old {
			continue
		}
		if _, _, err := s.raftApply(fsm.PayloadDropType, &fsm.PayloadDropRequest{Before: before}); err != nil {
			s.log.Warn("dropping old staged chunks failed", "error", err)
		}
	}
}
