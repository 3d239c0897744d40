package server

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	memdb "github.com/hashicorp/go-memdb"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/fsm"
)

// dispatcher runs on the leader for one term. It first reconciles every
// started call with the executor, then starts the oldest eligible queued
// calls as quota frees up, and records what the executor reports.
type dispatcher struct {
	s      *Server
	exec   Executor
	log    hclog.Logger
	events chan executor.Event // from start goroutines, merged with exec.Events()

	canceling map[string]bool
	// asked holds, per call ID, when its Start was asked, until its
	// RUNNING is recorded: the executor's end of a short call can reach
	// collect before the Running event of the Start that is still
	// returning, and land in an earlier batch; record then writes the
	// RUNNING first, so a call's log never lacks it.
	asked sync.Map
}

func newDispatcher(s *Server) *dispatcher {
	return &dispatcher{
		s: s, exec: s.exec, log: s.log.Named("dispatcher"),
		events:    make(chan executor.Event, 1024),
		canceling: map[string]bool{},
	}
}

func (d *dispatcher) run(ctx context.Context) {
	collected := make(chan struct{})
	go func() { defer close(collected); d.collect(ctx) }()
	defer func() { <-collected }()
	if !d.reconcile(ctx) {
		return
	}
	d.cleanOrphans(ctx)
	warmed := make(chan struct{})
	go func() { defer close(warmed); d.s.runWarm(ctx) }()
	defer func() { <-warmed }()
	for ctx.Err() == nil {
		ws := memdb.NewWatchSet()
		if err := d.schedule(ctx, ws); err != nil {
			d.log.Warn("scheduling failed", "error", err)
			sleepCtx(ctx, 500*time.Millisecond)
			continue
		}
		d.propagateCancels(ctx, ws)
		ws.Add(d.s.store.AbandonCh())
		// A raised quota is a change of the users table: watch it too.
		if _, err := d.s.store.Users(ws); err != nil {
			d.log.Warn("watching users failed", "error", err)
		}
		// And wake up now and then regardless, as a safety net.
		safetyNet := 2 * time.Second
		if d.s.cfg.dispatchSafetyNet > 0 {
			safetyNet = d.s.cfg.dispatchSafetyNet
		}
		tctx, cancel := context.WithTimeout(ctx, safetyNet)
		_ = ws.WatchCtx(tctx)
		cancel()
	}
}

// startedCalls lists every STARTING and RUNNING call.
func (d *dispatcher) startedCalls(ws memdb.WatchSet) ([]*fsm.Call, error) {
	usages, err := d.s.store.OwnerUsages(ws)
	if err != nil {
		return nil, err
	}
	var out []*fsm.Call
	for _, u := range usages {
		if u.Running == 0 {
			continue
		}
		for _, st := range []string{fsm.StateStarting, fsm.StateRunning} {
			cs, err := d.s.store.Queue(ws, u.Owner, st, 0)
			if err != nil {
				return nil, err
			}
			out = append(out, cs...)
		}
	}
	return out, nil
}

// reconcile asks the executor what became of every call the previous
// leader started, before anything new starts: a call that never started is
// queued again, one that ended is recorded, one that runs is watched.
func (d *dispatcher) reconcile(ctx context.Context) bool {
	for backoff := 500 * time.Millisecond; ctx.Err() == nil; backoff = min(backoff*2, 10*time.Second) {
		calls, err := d.startedCalls(nil)
		if err != nil {
			d.log.Warn("listing started calls failed", "error", err)
			sleepCtx(ctx, backoff)
			continue
		}
		if len(calls) == 0 {
			return true
		}
		hs := make([]executor.Handle, len(calls))
		for i, c := range calls {
			hs[i] = executor.Handle{CallID: c.ID, Ref: c.Ref}
		}
		evs, err := d.exec.Reconcile(ctx, hs)
		if err != nil {
			d.log.Warn("reconcile with the executor failed; retrying", "calls", len(hs), "error", err)
			sleepCtx(ctx, backoff)
			continue
		}
		state := make(map[string]string, len(calls))
		for _, c := range calls {
			state[c.ID] = c.State
		}
		var requeue []string
		for _, ev := range evs {
			d.log.Debug("reconciled call", "call", ev.CallID, "outcome", ev.Kind.String())
			if ev.Kind == executor.NotFound {
				if state[ev.CallID] == fsm.StateStarting {
					// Never confirmed started: Start is idempotent on the
					// call ID, so it may go again.
					requeue = append(requeue, ev.CallID)
					continue
				}
				// RUNNING and gone (its engine was the old leader's, or
				// was reset): it ran, maybe to its end, so it must not
				// run again; it ends lost. CallRequeue takes only
				// STARTING calls, so requeueing it left it RUNNING for ever.
				ev = executor.Event{CallID: ev.CallID, Kind: executor.Failed, Reason: api.ReasonLost, EndedAt: now(),
					Message: "the call was running when the leader changed, and the executor no longer knows it"}
			}
			d.events <- ev
		}
		if len(requeue) > 0 {
			if _, _, err := d.s.raftApply(fsm.CallRequeueType, &fsm.CallRequeueRequest{IDs: requeue, Message: "never started; queued again after a leader change", Time: now()}); err != nil {
				d.log.Warn("requeue failed; retrying", "error", err)
				sleepCtx(ctx, backoff)
				continue
			}
		}
		d.log.Info("reconciled started calls", "calls", len(hs), "requeued", len(requeue))
		return true
	}
	return false
}

// orphanCleaner is implemented by executors that can find leftovers of
// calls by label (localexec): containers of calls that ended while no
// leader was there to remove them.
type orphanCleaner interface {
	CleanOrphans(ctx context.Context, keep func(callID string) bool) (int, error)
}

// cleanOrphans removes what the executor kept of calls this cluster knows
// to have ended. Calls it does not know are kept: another cluster may
// share the engine.
func (d *dispatcher) cleanOrphans(ctx context.Context) {
	oc, ok := d.exec.(orphanCleaner)
	if !ok {
		return
	}
	n, err := oc.CleanOrphans(ctx, func(id string) bool {
		c, err := d.s.store.Call(nil, id)
		return err != nil || c == nil || !fsm.Final(c.State)
	})
	if err != nil {
		d.log.Warn("cleaning orphaned containers failed", "error", err)
	} else if n > 0 {
		d.log.Info("removed orphaned containers", "count", n)
	}
}

// quota is how many calls owner may run at once; read at every pass so a
// raised quota takes effect at once.
func (d *dispatcher) quota(owner string) int {
	if u, err := d.s.store.User(nil, owner); err == nil && u != nil && u.Quota > 0 {
		return u.Quota
	}
	return d.s.cfg.DefaultQuota
}

// schedule starts the oldest eligible calls: each owner contributes the
// head of its queue up to its free quota, and the merged set starts in
// enqueue order. An owner at quota contributes nothing and blocks no one.
func (d *dispatcher) schedule(ctx context.Context, ws memdb.WatchSet) error {
	usages, err := d.s.store.OwnerUsages(ws)
	if err != nil {
		return err
	}
	var cands []*fsm.Call
	for _, u := range usages {
		free := d.quota(u.Owner) - u.Running
		if u.Pending > 0 && free <= 0 {
			// Why a queue does not move, for the agent's debug log.
			d.log.Debug("queue waits for quota", "owner", u.Owner, "pending", u.Pending, "started", u.Running, "quota", d.quota(u.Owner))
		}
		if u.Pending == 0 || free <= 0 {
			continue
		}
		cs, err := d.s.store.Queue(nil, u.Owner, fsm.StatePending, free)
		if err != nil {
			return err
		}
		cands = append(cands, cs...)
	}
	if len(cands) == 0 {
		return nil
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].Seq < cands[j].Seq })
	for len(cands) > 0 {
		n := min(len(cands), fsm.MaxBatch)
		batch := cands[:n]
		cands = cands[n:]
		ids := make([]string, n)
		byID := make(map[string]*fsm.Call, n)
		for i, c := range batch {
			ids[i] = c.ID
			byID[c.ID] = c
		}
		res, _, err := d.s.raftApply(fsm.CallStartType, &fsm.CallStartRequest{IDs: ids, Time: now()})
		if err != nil {
			return err
		}
		for _, id := range res.([]string) {
			d.log.Debug("call starting", "call", id, "function", byID[id].Function)
			go d.start(ctx, byID[id])
		}
	}
	return nil
}

// start hands one STARTING call to the executor.
func (d *dispatcher) start(ctx context.Context, c *fsm.Call) {
	fn, err := d.s.store.Function(nil, c.Function)
	if err != nil || fn == nil {
		d.send(ctx, executor.Event{CallID: c.ID, Kind: executor.Failed, Reason: api.ReasonExecutor, Message: "function was deleted"})
		return
	}
	if d.s.cfg.WarmAdaptive {
		d.s.warm.noteCall(fn.ID, time.Now(), d.s.cfg.WarmIdleTTL)
	}
	stdin, err := d.s.store.Stdin(c.ID)
	if err != nil {
		d.send(ctx, executor.Event{CallID: c.ID, Kind: executor.Failed, Reason: api.ReasonExecutor, Message: "reading the call's stdin failed"})
		d.log.Error("reading a call's stdin failed", "call", c.ID, "error", err)
		return
	}
	spec := executor.Spec{
		CallID:      c.ID,
		Function:    d.s.execFunction(fn),
		Env:         callEnv(fn, c),
		Stdin:       stdin,
		StdoutLimit: d.s.cfg.StdoutLimit,
		Key:         c.Key,
	}
	// A Start that hangs (an engine that stopped answering) would hold the
	// call as STARTING, shown as PENDING, for ever, and its quota slot with
	// it. Bounded, it goes back to the queue with a warning and is started
	// again: Start is idempotent on the call ID.
	// Image pulls go on past it (executors pull on their own context); the
	// retried Start joins them.
	timeout := d.s.cfg.StartTimeout
	sctx, cancel := context.WithTimeout(ctx, timeout)
	// The RUNNING event carries the time Start was asked, not answered: a
	// warm call may end before Start returns, and its log must not show
	// RUNNING after FINISHED.
	asked := now()
	d.asked.Store(c.ID, asked)
	h, err := d.exec.Start(sctx, spec)
	timedOut := err != nil && sctx.Err() != nil && ctx.Err() == nil
	cancel()
	if timedOut {
		err = fmt.Errorf("%w: the executor did not start the call within %s: %v", executor.ErrUnavailable, timeout, err)
	}
	switch {
	case err == nil && h.Ref == "":
		// Refused, its end to come as an event (a missing image):
		// never confirmed (executor.Handle), so no RUNNING.
		d.asked.Delete(c.ID)
		d.log.Debug("executor refused call; its end follows", "call", c.ID)
	case err == nil:
		d.log.Debug("executor started call", "call", c.ID, "ref", h.Ref)
		d.send(ctx, executor.Event{CallID: c.ID, Kind: executor.Running, Ref: h.Ref, StartedAt: asked})
	case ctx.Err() != nil:
		// Leadership ended mid-start; the next leader reconciles this call.
		d.log.Debug("leadership ended while the executor started call", "call", c.ID)
	case errors.Is(err, executor.ErrUnavailable):
		d.asked.Delete(c.ID)
		d.log.Warn("executor unavailable; call queued again", "call", c.ID, "error", err)
		d.s.metrics.executorErrors.Inc()
		sleepCtx(ctx, time.Second)
		if _, _, err := d.s.raftApply(fsm.CallRequeueType, &fsm.CallRequeueRequest{IDs: []string{c.ID}, Message: err.Error(), Time: now()}); err != nil {
			d.log.Warn("requeue failed", "call", c.ID, "error", err)
		}
	default:
		d.asked.Delete(c.ID) // it never ran: no RUNNING
		d.log.Debug("executor refused call", "call", c.ID, "error", err)
		d.send(ctx, executor.Event{CallID: c.ID, Kind: executor.Failed, Reason: api.ReasonExecutor, Message: err.Error()})
	}
}

func (d *dispatcher) send(ctx context.Context, ev executor.Event) {
	select {
	case d.events <- ev:
	case <-ctx.Done():
	}
}

// propagateCancels asks the executor to stop started calls that a user
// canceled. The executor's Failed(canceled) event then ends them.
func (d *dispatcher) propagateCancels(ctx context.Context, ws memdb.WatchSet) {
	calls, err := d.startedCalls(ws)
	if err != nil {
		return
	}
	for _, c := range calls {
		if !c.CancelRequested || c.Ref == "" || d.canceling[c.ID] {
			continue
		}
		d.canceling[c.ID] = true
		d.log.Debug("canceling call", "call", c.ID, "ref", c.Ref)
		go func(h executor.Handle) {
			if err := d.exec.Cancel(ctx, h); err != nil {
				d.log.Warn("cancel failed", "call", h.CallID, "error", err)
			}
		}(executor.Handle{CallID: c.ID, Ref: c.Ref})
	}
}

// collect records executor events, batching whatever has arrived into one
// CallRunning and one CallFinish entry.
func (d *dispatcher) collect(ctx context.Context) {
	for {
		var ev executor.Event
		select {
		case ev = <-d.events:
		case ev = <-d.exec.Events():
		case <-ctx.Done():
			return
		}
		batch := []executor.Event{ev}
	more:
		for len(batch) < 256 {
			select {
			case ev = <-d.events:
			case ev = <-d.exec.Events():
			default:
				break more
			}
			batch = append(batch, ev)
		}
		d.record(ctx, batch)
	}
}

func (d *dispatcher) record(ctx context.Context, batch []executor.Event) {
	run := &fsm.CallRunningRequest{}
	fin := &fsm.CallFinishRequest{}
	for _, ev := range batch {
		switch ev.Kind {
		case executor.Running:
			t := ev.StartedAt
			if t.IsZero() {
				t = now()
			}
			run.Running = append(run.Running, fsm.CallRunning{ID: ev.CallID, Ref: ev.Ref, Time: t})
			d.asked.Delete(ev.CallID)
		case executor.Finished, executor.Failed:
			// An end that overtook its Running event: RUNNING first
			// (CallRunning is applied before CallFinish, and a second
			// CallRunning of the call is a no-op).
			// An end without a Ref is of a call never confirmed started.
			if t, ok := d.asked.LoadAndDelete(ev.CallID); ok && ev.Ref != "" {
				run.Running = append(run.Running, fsm.CallRunning{ID: ev.CallID, Ref: ev.Ref, Time: t.(time.Time)})
			}
			r := resultOf(ev)
			// A canceled call that the executor saw die of its stop signal
			// is CANCELED, whatever reason the executor gave.
			if c, _ := d.s.store.Call(nil, ev.CallID); c != nil && c.CancelRequested && r.State == fsm.StateFailed {
				r.State, r.Reason, r.Message = fsm.StateCanceled, api.ReasonCancelled, "canceled"
			}
			fin.Results = append(fin.Results, r)
		}
	}
	for backoff := 200 * time.Millisecond; ctx.Err() == nil; backoff = min(2*backoff, 5*time.Second) {
		var err error
		if len(run.Running) > 0 {
			if _, _, err = d.s.raftApply(fsm.CallRunningType, run); err == nil {
				if d.log.IsDebug() {
					for _, r := range run.Running {
						d.log.Debug("call running", "call", r.ID, "ref", r.Ref)
					}
				}
				run.Running = nil
			}
		}
		// Ends go to Raft in entries of at most maxFinishBytes of stdout
		// (one larger result alone), not 256 MiB-outputs in one entry.
		if err == nil {
			// A stdout too large for an entry goes in chunks first.
			err = d.s.stageStdout(fin.Results)
		}
		for err == nil && len(fin.Results) > 0 {
			part := &fsm.CallFinishRequest{Results: firstBytes(fin.Results, maxFinishBytes)}
			if _, _, err = d.s.raftApply(fsm.CallFinishType, part); err == nil {
				if d.log.IsDebug() {
					for _, r := range part.Results {
						d.log.Debug("call ended", "call", r.ID, "state", r.State, "reason", r.Reason, "exit", r.ExitCode)
					}
				}
				d.s.metrics.finished.Add(float64(len(part.Results)))
				d.s.metrics.calls.observe(d.endedCalls(part.Results))
				d.release(ctx, part.Results)
				fin.Results = fin.Results[len(part.Results):]
			}
		}
		if err == nil {
			return
		}
		// Not leader any more: the next leader reconciles these calls.
		d.log.Warn("recording call events failed; retrying", "error", err)
		sleepCtx(ctx, backoff)
	}
}

// maxFinishBytes bounds the stdout carried by one CallFinish entry.
const maxFinishBytes = fsm.MaxEntryPayload

// firstBytes is the longest head of rs whose stdout adds up to at most max
// bytes, and at least one result.
func firstBytes(rs []*fsm.CallResult, max int) []*fsm.CallResult {
	n, size := 0, 0
	for n < len(rs) && (n == 0 || size+len(rs[n].Stdout) <= max) {
		size += len(rs[n].Stdout)
		n++
	}
	return rs[:n]
}

// endedCalls reads the records of calls whose end was just committed.
func (d *dispatcher) endedCalls(rs []*fsm.CallResult) []*fsm.Call {
	out := make([]*fsm.Call, 0, len(rs))
	for _, r := range rs {
		if c, err := d.s.store.Call(nil, r.ID); err == nil && c != nil && fsm.Final(c.State) {
			out = append(out, c)
		}
	}
	return out
}

// release lets the executor drop what it kept of calls whose end is now
// recorded. A failure only leaves garbage that cleanOrphans or the
// executor's own sweep removes later.
func (d *dispatcher) release(ctx context.Context, rs []*fsm.CallResult) {
	hs := make([]executor.Handle, 0, len(rs))
	for _, r := range rs {
		c, err := d.s.store.Call(nil, r.ID)
		if err != nil || c == nil {
			continue
		}
		hs = append(hs, executor.Handle{CallID: c.ID, Ref: c.Ref})
	}
	go func() {
		if err := d.exec.Release(ctx, hs); err != nil {
			d.log.Warn("releasing finished calls failed", "calls", len(hs), "error", err)
		}
	}()
}

func resultOf(ev executor.Event) *fsm.CallResult {
	r := &fsm.CallResult{
		ID: ev.CallID, State: fsm.StateFinished, ExitCode: ev.ExitCode,
		Stdout: ev.Stdout, Stderr: ev.Stderr, Reason: ev.Reason, Message: ev.Message, Time: ev.EndedAt,
		Ref: ev.Ref,
	}
	if r.Time.IsZero() {
		r.Time = now()
	}
	if ev.Kind == executor.Failed {
		r.State = fsm.StateFailed
		r.Message = safeMessage(withStderr(ev.Message, ev.Stderr))
		if ev.Reason == api.ReasonCancelled {
			r.State = fsm.StateCanceled
		}
	}
	return r
}

// safeMessage makes a failure message, which quotes the function's stderr,
// safe for every terminal and log that shows it: non-printable characters
// (escape sequences, NUL, DEL...) and bytes that are not UTF-8 become '?'.
// (Replaced, not escaped: log lines escape their text again.)
func safeMessage(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || strconv.IsPrint(r) {
			return r
		}
		return '?'
	}, strings.ToValidUTF8(s, "?"))
}

// withStderr adds the first line of stderr to a failure message that does
// not show it yet, whatever the executor: it is what a user needs first.
func withStderr(msg, stderr string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(stderr), "\n")
	if line == "" || strings.Contains(msg, line) {
		return msg
	}
	if len(line) > 200 {
		line = line[:200]
	}
	return msg + ": " + line
}

func (s *Server) execFunction(fn *fsm.Function) executor.Function {
	return executor.Function{
		ID: fn.ID, Owner: fn.Owner, Name: fn.Name, Image: fn.Image,
		Command: fn.Command, Entrypoint: fn.Entrypoint, Workdir: fn.Workdir, Env: fn.Env,
		CPU: fn.CPU, MemoryMB: fn.MemoryMB, Timeout: time.Duration(fn.Timeout) * time.Second,
		User: fn.User,
	}
}

// callEnv is the environment of one call: request headers first, then the
// function's env (set by its owner, so a caller cannot override it), then
// the call's identity.
func callEnv(fn *fsm.Function, c *fsm.Call) map[string]string {
	env := make(map[string]string, len(c.Env)+len(fn.Env)+2)
	for k, v := range c.Env {
		env[k] = v
	}
	for k, v := range fn.Env {
		env[k] = v
	}
	env["HYPER_CALL_ID"] = c.ID
	env["HYPER_FUNC_NAME"] = fn.Name
	return env
}

// now is the leader's clock, read only here and in the HTTP layer, never
// inside Apply.
func now() time.Time { return time.Now().UTC() }
