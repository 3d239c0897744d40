package fsm

import (
	"fmt"
	"strings"
	"time"

	"github.com/hyperfunc/hyperfunc/cachestore"
)

// EnqueueResult answers a CallEnqueueRequest: one entry per call, nil
// where the call was queued.
type EnqueueResult struct {
	Errors []error
}

// seqShift leaves room for the calls and log events of one entry inside
// the sequence numbers derived from its Raft index.
const seqShift = 16

// MaxBatch bounds the calls of one enqueue entry (their log events must
// fit under seqShift).
const MaxBatch = 1 << (seqShift - 2)

// MaxEntryPayload bounds the payload bytes (stdin of enqueues, stdout of
// finishes) that one Raft entry carries when it batches several calls; a
// single call's payload larger than this goes alone, so an entry is at
// most max(MaxEntryPayload, -max-stdin or -max-stdout) plus its records
// (1 MiB by default). Each entry is written to every server's log, sent in
// AppendEntries and applied while the entries behind it wait: at 512 KiB
// (the bound hashicorp/raft's users keep values under: Consul's KV limit)
// one takes ~5 ms on a gigabit link, and a small call never queues behind
// megabytes of other users' payloads.
const MaxEntryPayload = 512 << 10

// ShortBytes is how much of stdin, stdout and stderr the log lines show.
const ShortBytes = 255

// logWriter stamps the log events of one entry with increasing sequence
// numbers.
type logWriter struct {
	txn   *cachestore.Txn
	index uint64
	n     uint64
	limit int64
}

func (p *processor) logWriter(txn *cachestore.Txn, index uint64) *logWriter {
	return &logWriter{txn: txn, index: index, limit: p.store.cfg.LogCacheBytes}
}

// add appends one event and answers its sequence number. A final event
// that rotates out takes its call's record with it when the call's output
// is gone too.
func (w *logWriter) add(fnID, callID, kind, text string, t time.Time) (uint64, error) {
	seq := w.index<<seqShift | w.n
	e := &cachestore.LogEntry{Function: fnID, Seq: seq, Time: t, CallID: callID, Kind: kind, Text: text}
	w.n++
	rotated, err := cachestore.AppendLog(w.txn, e, w.limit)
	if err != nil {
		return 0, err
	}
	for _, old := range rotated {
		if !Final(old.Kind) {
			continue
		}
		has, err := cachestore.HasOutput(w.txn, old.CallID)
		if err != nil {
			return 0, err
		}
		if !has {
			if err := forgetCall(w.txn, old.CallID); err != nil {
				return 0, err
			}
		}
	}
	return seq, nil
}

// forgetCall drops the record of an ended call whose output and final log
// event both rotated out: nothing of it is left to show.
func forgetCall(txn *cachestore.Txn, id string) error {
	c, err := getCall(txn, id)
	if err != nil || c == nil || !Final(c.State) {
		return err
	}
	return cachestore.DeleteEnded(txn, id)
}

// finalEventGone reports whether a call's final log event rotated out.
func finalEventGone(txn *cachestore.Txn, c *Call) (bool, error) {
	oldest, ok, err := cachestore.OldestLogSeq(txn, c.Function)
	if err != nil {
		return false, err
	}
	return !ok || oldest > c.LogSeq, nil
}

// short renders the head of a stream for a log line. Invalid UTF-8 is
// replaced here, in Apply, because the log entry's byte size counts against
// the cache cap and must not change when a snapshot re-encodes it as JSON.
func short(b []byte) string {
	if len(b) > ShortBytes {
		b = b[:ShortBytes]
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

func (p *processor) applyCallEnqueue(txn *cachestore.Txn, index uint64, req *CallEnqueueRequest) any {
	if len(req.Calls) > MaxBatch {
		return fmt.Errorf("enqueue batch of %d calls exceeds %d", len(req.Calls), MaxBatch)
	}
	res := &EnqueueResult{Errors: make([]error, len(req.Calls))}
	lw := p.logWriter(txn, index)
	queued := 0
	for i, in := range req.Calls {
		// A stdin staged in chunks (StdinSize and no Stdin) is taken
		// first, so that it goes whether or not the call is queued.
		stdin := in.Stdin
		if len(stdin) == 0 && in.StdinSize > 0 {
			data, ok, err := takeStaged(txn, in.ID, in.StdinSize)
			if err != nil {
				return err
			}
			if !ok {
				res.Errors[i] = fmt.Errorf("the stdin of call %s was not staged: %w", in.ID, ErrNotFound)
				continue
			}
			stdin = data
		}
		fn, err := txn.First(TableFunctions, IndexID, in.Function)
		if err != nil {
			return fmt.Errorf("function lookup: %w", err)
		}
		if fn == nil {
			res.Errors[i] = fmt.Errorf("function %q %w", in.Function, ErrNotFound)
			continue
		}
		if dup, err := getCall(txn, in.ID); err != nil {
			return err
		} else if dup != nil {
			res.Errors[i] = fmt.Errorf("call %q %w", in.ID, ErrExists)
			continue
		}
		if req.MaxQueued > 0 || req.MaxQueuedBytes > 0 {
			raw, err := txn.First(TableOwnerUsage, IndexID, in.Owner)
			if err != nil {
				return fmt.Errorf("owner usage lookup: %w", err)
			}
			var u OwnerUsage
			if raw != nil {
				u = *raw.(*OwnerUsage)
			}
			if req.MaxQueued > 0 && u.Pending >= req.MaxQueued {
				res.Errors[i] = fmt.Errorf("%d calls of user %q are queued already: %w", req.MaxQueued, in.Owner, ErrQueueFull)
				continue
			}
			if req.MaxQueuedBytes > 0 && u.StdinBytes+int64(len(stdin)) > req.MaxQueuedBytes {
				res.Errors[i] = fmt.Errorf("the unfinished calls of user %q hold %d bytes of stdin; %d more would pass the bound of %d bytes: %w",
					in.Owner, u.StdinBytes, len(stdin), req.MaxQueuedBytes, ErrQueueFull)
				continue
			}
		}
		c := *in
		c.State = StatePending
		c.Seq = index<<seqShift | uint64(i)
		c.StdinSize = int64(len(stdin))
		c.CreateIndex, c.ModifyIndex = index, index
		// The record stays small; the bytes wait on disk (Store.Stdin).
		c.Stdin = nil
		if len(stdin) > 0 {
			if err := cachestore.PutStdin(txn, c.ID, stdin); err != nil {
				return err
			}
		}
		if err := txn.Insert(TableCalls, &c); err != nil {
			return fmt.Errorf("call insert: %w", err)
		}
		if err := bumpOwner(txn, c.Owner, 1, 0, c.StdinSize); err != nil {
			return err
		}
		if err := moveStats(txn, c.Function, "", StatePending); err != nil {
			return err
		}
		// One entry stands for the seed's CALL and PENDING lines: a call is
		// queued the moment it is accepted (cachestore.KindCall).
		if _, err := lw.add(c.Function, c.ID, cachestore.KindCall, "ShortStdin: "+short(stdin), c.CreatedAt); err != nil {
			return err
		}
		queued++
	}
	if queued > 0 {
		for _, t := range []string{TableCalls, TableOwnerUsage} {
			if err := setIndex(txn, t, index); err != nil {
				return err
			}
		}
	}
	return res
}

// getCall reads a call: from memdb while it has not ended, from the disk
// half once it has.
func getCall(txn *cachestore.Txn, id string) (*Call, error) {
	raw, err := txn.First(TableCalls, IndexID, id)
	if err != nil {
		return nil, fmt.Errorf("call lookup: %w", err)
	}
	if raw != nil {
		return raw.(*Call), nil
	}
	rec, err := cachestore.Ended(txn, id)
	if err != nil || rec == nil {
		return nil, err
	}
	return decodeEnded(id, rec)
}

func decodeEnded(id string, rec []byte) (*Call, error) {
	c, err := decodeCall(rec, nil)
	if err != nil {
		return nil, fmt.Errorf("ended call %s: %w", id, err)
	}
	return c, nil
}

// putEnded moves a call that just ended out of memdb into the disk half,
// or updates one that is there.
func putEnded(txn *cachestore.Txn, c *Call) error {
	if _, err := txn.DeleteAll(TableCalls, IndexID, c.ID); err != nil {
		return fmt.Errorf("call delete: %w", err)
	}
	return cachestore.PutEnded(txn, c.Function, c.Seq, c.ID, encodeCall(c, nil))
}

// applyCallStart answers the IDs it moved to STARTING; calls that are no
// longer PENDING (canceled meanwhile) are skipped.
func (p *processor) applyCallStart(txn *cachestore.Txn, index uint64, req *CallStartRequest) any {
	var started []string
	for _, id := range req.IDs {
		c, err := getCall(txn, id)
		if err != nil {
			return err
		}
		if c == nil || c.State != StatePending {
			continue
		}
		nc, err := setState(txn, index, c, StateStarting)
		if err != nil {
			return err
		}
		nc.StartedAt = req.Time
		if err := txn.Insert(TableCalls, nc); err != nil {
			return fmt.Errorf("call update: %w", err)
		}
		started = append(started, id)
	}
	if err := setIndex(txn, TableCalls, index); err != nil {
		return err
	}
	return started
}

func (p *processor) applyCallRunning(txn *cachestore.Txn, index uint64, req *CallRunningRequest) any {
	lw := p.logWriter(txn, index)
	for _, r := range req.Running {
		c, err := getCall(txn, r.ID)
		if err != nil {
			return err
		}
		if c == nil || !Started(c.State) {
			continue
		}
		nc := *c
		if c.State == StateStarting {
			n, err := setState(txn, index, c, StateRunning)
			if err != nil {
				return err
			}
			nc = *n
			if _, err := lw.add(c.Function, c.ID, StateRunning, "", r.Time); err != nil {
				return err
			}
		}
		if r.Ref != "" {
			nc.Ref = r.Ref
		}
		nc.ModifyIndex = index
		if err := txn.Insert(TableCalls, &nc); err != nil {
			return fmt.Errorf("call update: %w", err)
		}
	}
	return setIndex(txn, TableCalls, index)
}

// applyCallRequeue puts STARTING calls back in the queue at their old place.
func (p *processor) applyCallRequeue(txn *cachestore.Txn, index uint64, req *CallRequeueRequest) any {
	for _, id := range req.IDs {
		c, err := getCall(txn, id)
		if err != nil {
			return err
		}
		if c == nil || c.State != StateStarting {
			continue
		}
		nc, err := setState(txn, index, c, StatePending)
		if err != nil {
			return err
		}
		nc.Ref, nc.StartedAt, nc.Message = "", time.Time{}, req.Message
		if err := txn.Insert(TableCalls, nc); err != nil {
			return fmt.Errorf("call update: %w", err)
		}
	}
	for _, t := range []string{TableCalls, TableOwnerUsage} {
		if err := setIndex(txn, t, index); err != nil {
			return err
		}
	}
	return nil
}

func (p *processor) applyCallFinish(txn *cachestore.Txn, index uint64, req *CallFinishRequest) any {
	lw := p.logWriter(txn, index)
	for _, r := range req.Results {
		c, err := getCall(txn, r.ID)
		if err != nil {
			return err
		}
		if len(r.Stdout) == 0 && r.StdoutSize > 0 {
			if r, err = takeStdout(txn, r); err != nil {
				return err
			}
		}
		if c == nil || Final(c.State) {
			continue // reported twice, or its function is gone
		}
		if err := p.finish(txn, lw, index, c, r); err != nil {
			return err
		}
	}
	for _, t := range []string{TableCalls, TableOwnerUsage} {
		if err := setIndex(txn, t, index); err != nil {
			return err
		}
	}
	return nil
}

// finish ends one call: its record keeps the outcome and drops its input,
// its stdout goes to the output cache (rotating older outputs out) and the
// final event to the log cache.
func (p *processor) finish(txn *cachestore.Txn, lw *logWriter, index uint64, c *Call, r *CallResult) error {
	if !Final(r.State) {
		return fmt.Errorf("call %s: %q is not a final state", c.ID, r.State)
	}
	nc, err := setState(txn, index, c, r.State)
	if err != nil {
		return err
	}
	nc.Reason, nc.Message, nc.ExitCode = r.Reason, r.Message, r.ExitCode
	nc.StdoutSize = int64(len(r.Stdout))
	nc.FinishedAt = r.Time
	nc.Stdin, nc.Env, nc.Key = nil, nil, ""
	if err := cachestore.DeleteStdin(txn, c.ID); err != nil {
		return err
	}
	if nc.Ref == "" {
		nc.Ref = r.Ref
	}
	if r.State != StateCanceled {
		rotated, err := cachestore.PutOutput(txn, &cachestore.Output{
			CallID: c.ID, Function: c.Function, Seq: c.Seq, Data: r.Stdout,
		}, p.store.cfg.OutputCacheBytes)
		if err != nil {
			return err
		}
		for _, id := range rotated {
			if id == c.ID {
				nc.Rotated = true
				continue
			}
			if err := outputRotated(txn, index, id); err != nil {
				return err
			}
		}
	}
	text := "ShortStdout: " + short(r.Stdout) + ", ShortStderr: " + shortString(r.Stderr)
	if r.State != StateFinished {
		text = "Message: " + r.Message
	}
	if nc.LogSeq, err = lw.add(c.Function, c.ID, r.State, text, r.Time); err != nil {
		return err
	}
	return putEnded(txn, nc)
}

func shortString(s string) string { return short([]byte(s)) }

// takeStdout joins a result's staged stdout to it; a stdout that is not
// all there (dropped as too old) fails the call rather than pass a part
// for the whole.
func takeStdout(txn *cachestore.Txn, r *CallResult) (*CallResult, error) {
	data, ok, err := takeStaged(txn, StagedStdout(r.ID), r.StdoutSize)
	if err != nil {
		return nil, err
	}
	nr := *r
	nr.Stdout = data
	if !ok {
		nr.Stdout = nil
		nr.State, nr.Reason = StateFailed, "executor" // api.ReasonExecutor
		nr.Message = "the call's output was lost before it was recorded"
	}
	return &nr, nil
}

// outputRotated records that a call's output rotated out: get answers 410
// while its final log event is still there, and the record goes once both
// are gone.
func outputRotated(txn *cachestore.Txn, index uint64, id string) error {
	c, err := getCall(txn, id)
	if err != nil || c == nil {
		return err
	}
	gone, err := finalEventGone(txn, c)
	if err != nil {
		return err
	}
	if gone {
		return forgetCall(txn, id)
	}
	nc := *c
	nc.Rotated, nc.ModifyIndex = true, index
	return putEnded(txn, &nc)
}

func (p *processor) applyCallCancel(txn *cachestore.Txn, index uint64, req *CallCancelRequest) any {
	c, err := getCall(txn, req.ID)
	if err != nil {
		return err
	}
	if c == nil {
		return fmt.Errorf("call %q %w", req.ID, ErrNotFound)
	}
	switch {
	case Final(c.State):
		return fmt.Errorf("call %s already ended %s: %w", c.ID, c.State, ErrConflict)
	case c.State == StatePending:
		lw := p.logWriter(txn, index)
		r := &CallResult{ID: c.ID, State: StateCanceled, Reason: "canceled", Message: "canceled before it started", Time: req.Time}
		if err := p.finish(txn, lw, index, c, r); err != nil {
			return err
		}
	default:
		nc := *c
		nc.CancelRequested, nc.ModifyIndex = true, index
		if err := txn.Insert(TableCalls, &nc); err != nil {
			return fmt.Errorf("call update: %w", err)
		}
	}
	for _, t := range []string{TableCalls, TableOwnerUsage} {
		if err := setIndex(txn, t, index); err != nil {
			return err
		}
	}
	return nil
}
