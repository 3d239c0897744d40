package nomadjob

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/shim"
)

// startWarm hands the call to a ready sandbox of its function's version,
// if there is one: ok false means start it cold (no pool, none ready,
// envelope too large, a claim Nomad refused). The claim is the variable
// nomad/jobs/<child> created with check-and-set 0: of two claimers (a
// stale leader and the new one) one creates it, the other gets a conflict
// and tries the next sandbox. An error means Nomad did not answer: the
// claim may have gone through, so the call's next Start reads that
// child's variable first (e.claiming) and never hands the call elsewhere
// while it might run there.
func (e *Executor) startWarm(ctx context.Context, spec executor.Spec, limit int64, start time.Time) (executor.Handle, bool, error) {
	e.mu.Lock()
	prev, pending := e.claiming[spec.CallID]
	p := e.wp.pools[spec.Function.ID]
	e.mu.Unlock()
	if pending {
		items, err := e.n.ReadVariable(ctx, WarmVariablePath(prev))
		if err != nil {
			return executor.Handle{}, false, err
		}
		e.mu.Lock()
		delete(e.claiming, spec.CallID)
		e.mu.Unlock()
		if items != nil && items[ItemCallID] == spec.CallID {
			return e.warmTaken(ctx, spec.CallID, prev, limit)
		}
	}
	if p == nil {
		return executor.Handle{}, false, nil
	}
	en := BuildEnvelope(spec, limit, true)
	en.StderrPreview = warmStderrPreview
	// The shim marks alloc/data/.started when the envelope reaches it: a
	// claim whose envelope never arrives is told from a long call.
	en.Once = true
	envelope, err := json.Marshal(en)
	if err != nil || len(envelope) > MaxWarmEnvelope {
		e.countWarm(false)
		return executor.Handle{}, false, nil
	}
	version := SpecHash(spec.Function)
	for {
		sb := e.takeSandbox(spec.Function.ID, version)
		if sb == nil {
			e.countWarm(false)
			return executor.Handle{}, false, nil
		}
		e.kickWarm() // refill
		if a, err := e.n.Allocation(ctx, sb.alloc); err != nil || a.ClientStatus != nomad.AllocClientStatusRunning {
			// Ended before its call (the stream had not said so yet), or
			// unknown: never hand a call to it.
			e.spawn(func(ctx context.Context) { e.stopSandbox(ctx, sb.child) })
			continue
		}
		e.mu.Lock()
		e.claiming[spec.CallID] = sb.child
		e.mu.Unlock()
		items := map[string]string{ItemEnvelope: string(envelope), ItemCallID: spec.CallID}
		existing, created, err := e.n.CreateVariable(ctx, WarmVariablePath(sb.child), items)
		if err != nil && IsUnavailable(err) {
			return executor.Handle{}, false, err
		}
		e.mu.Lock()
		delete(e.claiming, spec.CallID)
		e.mu.Unlock()
		if err != nil {
			// Refused (a path over Nomad's limit, an ACL): nothing was
			// written; this sandbox can take no call.
			e.log.Warn("warm pools: claim refused; starting cold", "call", spec.CallID, "job", sb.child, "err", err)
			e.spawn(func(ctx context.Context) { e.stopSandbox(ctx, sb.child) })
			e.countWarm(false)
			return executor.Handle{}, false, nil
		}
		if !created && existing[ItemCallID] != spec.CallID {
			continue // another claimer's: it runs that call
		}
		e.countWarm(true)
		h, _, err := e.warmTaken(ctx, spec.CallID, sb.child, limit)
		e.observeStart(true, start)
		return h, true, err
	}
}

// takeSandbox pops a ready sandbox of fnID's version; those of another
// version are stopped on sight, so a call never runs on an old image.
func (e *Executor) takeSandbox(fnID, version string) *sandbox {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.wp.pools[fnID]
	for p != nil && len(p.ready) > 0 {
		sb := p.ready[0]
		p.ready = p.ready[1:]
		e.forgetLocked(sb)
		if sb.spec == version {
			return sb
		}
		e.wp.stop = append(e.wp.stop, sb.child)
	}
	return nil
}

func (e *Executor) countWarm(hit bool) {
	e.mu.Lock()
	if hit {
		e.wp.hits++
	} else {
		e.wp.misses++
	}
	e.mu.Unlock()
}

// warmTaken watches a call handed to a warm child: collected as soon as
// its result.json exists, or from the allocation's end as a cold call.
func (e *Executor) warmTaken(ctx context.Context, callID, child string, limit int64) (executor.Handle, bool, error) {
	c := e.watch(callID, child, limit)
	e.mu.Lock()
	c.warm = true
	c.running = true // the allocation ran before the call: no Running event comes
	e.mu.Unlock()
	e.spawn(func(ctx context.Context) { e.collectWarm(ctx, c) })
	return executor.Handle{CallID: callID, Ref: child}, true, nil
}

// collectWarm polls (host side, through the fs endpoint) for the shim's
// result.json and collects the call from alloc/data at once, without
// waiting for the sandbox's teardown and Nomad's status update (gVisor
// takes ~100-200 ms after the command). The poll starts fast and slows
// down for long calls; the stream's end of the allocation still collects
// a call whose shim left no result.
func (e *Executor) collectWarm(ctx context.Context, c *call) {
	allocs, _, err := e.n.JobAllocations(ctx, c.child, 0, 0)
	a := latest(allocs)
	if err != nil || a == nil {
		e.check(ctx, c)
		return
	}
	poll := 5 * time.Millisecond
	delivered := false
	for start := time.Now(); ; {
		e.mu.Lock()
		stop := c.done || c.collecting
		e.mu.Unlock()
		if stop {
			return
		}
		if ok, _ := e.exists(ctx, a.ID, ResultFilePath); ok {
			rctx, cancel := context.WithTimeout(ctx, e.cfg.CollectTimeout)
			ev, err := e.collectEarly(rctx, c, a.ID)
			cancel()
			if err != nil {
				e.log.Warn("warm call: early collection failed; collecting at the allocation's end", "call", c.id, "err", err)
				return
			}
			if e.finishCall(c) {
				e.emit(ev)
			}
			return
		}
		if time.Since(start) > time.Second {
			poll = min(poll*2, 250*time.Millisecond)
		}
		if !delivered && time.Since(start) > e.cfg.WarmDeliverTimeout {
			if delivered = e.undelivered(ctx, c, a.ID); !delivered {
				return
			}
		}
		if !sleep(ctx, poll) {
			return
		}
	}
}

// undelivered checks a warm call whose shim did not start it within
// Config.WarmDeliverTimeout (the template renders within milliseconds of
// the variable's write, a blocking query, so a minute means it never will:
// a variable the task may not read, an ACL): true when it has started
// after all. Otherwise the call is reported Failed (executor) and the
// child stopped: its shim never got the envelope, so nothing ran (a late
// one could: the report and the stop come first, and it is a failed call,
// never a second run).
func (e *Executor) undelivered(ctx context.Context, c *call, allocID string) bool {
	ok, err := e.exists(ctx, allocID, "alloc/data/"+shim.StartedFile)
	if ok || err != nil {
		return true // started, or unknown: look again later
	}
	if e.finishCall(c) {
		e.emit(executor.Event{
			CallID: c.id, Kind: executor.Failed, Ref: c.child, Reason: api.ReasonExecutor, EndedAt: time.Now(),
			Message: fmt.Sprintf("the warm sandbox %s did not receive its call within %s (can its task read the Nomad variable %s? with ACLs it needs the warm job's policy)", c.child, e.cfg.WarmDeliverTimeout, WarmVariablePath(c.child)),
		})
	}
	if err := e.n.DeregisterJob(ctx, c.child, false); err != nil && !errors.Is(err, ErrNotFound) {
		e.log.Warn("stopping an undelivered warm sandbox failed", "job", c.child, "err", err)
	}
	return false
}

// errNoResult: result.json vanished or is unreadable (collect at the end).
var errNoResult = errors.New("no readable result.json")

// collectEarly reads a warm call's outcome from alloc/data: result.json,
// stdout and the shim's stderr preview.
func (e *Executor) collectEarly(ctx context.Context, c *call, allocID string) (executor.Event, error) {
	alloc, err := e.n.Allocation(ctx, allocID)
	if err != nil {
		return executor.Event{}, err
	}
	res, stdout, err := e.readResult(ctx, allocID, c.stdoutLimit)
	if err != nil {
		return executor.Event{}, err
	}
	if res == nil {
		return executor.Event{}, errNoResult
	}
	ev := Outcome(alloc, res, stdout, c.stdoutLimit)
	ev.CallID, ev.Ref = c.id, c.child
	path := "alloc/data/" + shim.StderrFile
	if ok, err := e.exists(ctx, allocID, path); err != nil {
		return executor.Event{}, err
	} else if ok {
		b, err := e.n.Cat(ctx, allocID, path, executor.StderrPreviewBytes)
		if err != nil {
			return executor.Event{}, err
		}
		ev.Stderr = preview(b)
	}
	return ev, nil
}
