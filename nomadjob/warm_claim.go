package nomadjob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/shim"
)

// Where a call runs is recorded before it runs there, in the variable
// hyperfunc/calls/<cluster tag>/<call ID> (CallVariablePath), item
// "child": a warm child's job ID, or "cold" (the dispatch, whose
// idempotency token is the call ID). Every Start of a call, by this
// executor or another leader's, creates that record (check-and-set 0) or
// follows the one there, so two leaders never run one call in two places:
// a stale leader's warm claim and the new leader's cold dispatch of the
// same call meet at the record. Following a warm record means claiming
// that child for the call (its variable, check-and-set 0): the owner's
// claim and the follower's are the same envelope, the second finds its
// own call there. When the recorded child took another call (its variable
// names another), the record moves on with check-and-set on its index, to
// the next sandbox or to cold.

// ItemChild is the call record's item: where the call runs.
const (
	ItemChild  = "child"
	coldTarget = "cold"
)

// CallVariablePath is the variable that records where a call runs. A
// call ID that Nomad would refuse in a path (characters other than
// letters, digits, "-" and "_", or too long; the server's IDs are UUIDs)
// is named by 32 hex of its sha256, the same for every leader.
func CallVariablePath(clusterID, callID string) string {
	if !pathSafe(callID) || len(callID) > 64 {
		sum := sha256.Sum256([]byte(callID))
		callID = "h-" + hex.EncodeToString(sum[:16])
	}
	return CallRecordPrefix(clusterID) + callID
}

// CallRecordPrefix is the path prefix of the cluster's call records.
func CallRecordPrefix(clusterID string) string {
	tag := ClusterTag(clusterID)
	if tag == "" {
		tag = "none"
	}
	return "hyperfunc/calls/" + tag + "/"
}

func pathSafe(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return s != ""
}

// startRecorded records the call's place and starts it there. Errors: as
// Start's; Nomad unavailable in the middle leaves the record, which the
// call's next Start follows.
func (e *Executor) startRecorded(ctx context.Context, spec executor.Spec, limit int64, start time.Time) (executor.Handle, error) {
	return e.place(ctx, spec, limit, start, "")
}

// place is startRecorded; a record naming avoid (a sandbox that died
// before the call reached it) is moved on as if that sandbox ran another
// call.
func (e *Executor) place(ctx context.Context, spec executor.Spec, limit int64, start time.Time, avoid string) (executor.Handle, error) {
	envelope := e.warmEnvelope(spec, limit)
	e.mu.Lock()
	pooled := e.wp.pools[spec.Function.ID] != nil
	e.mu.Unlock()
	path := CallVariablePath(e.cfg.ClusterID, spec.CallID)
	sb := e.pick(ctx, spec, envelope)
	cur, created, err := e.n.CreateVariable(ctx, path, map[string]string{ItemChild: target(sb), ItemCallID: spec.CallID})
	if err != nil {
		e.unpick(sb)
		if IsUnavailable(err) {
			return executor.Handle{}, err
		}
		// Refused (a token without variable write): no record, so no
		// warm path either; cold as before, guarded by its token alone.
		if e.noRecord.CompareAndSwap(false, true) {
			e.log.Error("cannot record where calls run (Nomad variables under hyperfunc/calls/): every call starts cold, without warm sandboxes; give the executor's token variable write there (jobspecs/README.md)", "call", spec.CallID, "err", err)
		}
		return e.startCold(ctx, spec, limit, start, pooled)
	}
	if !created {
		e.unpick(sb) // another Start recorded a place first: follow it
	}
	if n, _ := strconv.Atoi(cur.Items[ItemTries]); n >= 2 {
		// Dispatched again since (dispatchAgain): its first child, dead
		// from the start, may be gone and its token (the call ID) free;
		// a dispatch would run the call next to its later try.
		return e.startFollowingTries(ctx, spec, limit, start)
	}
	for range 64 {
		child := cur.Items[ItemChild]
		if child == coldTarget || child == "" || envelope == nil {
			if child != coldTarget && child != "" {
				// Recorded warm, but this envelope cannot go warm (it is
				// the same call: cannot happen unless limits differ).
				if _, _, err := e.n.UpdateVariable(ctx, path, map[string]string{ItemChild: coldTarget, ItemCallID: spec.CallID}, cur.ModifyIndex); err != nil {
					return executor.Handle{}, err
				}
			}
			return e.startCold(ctx, spec, limit, start, pooled)
		}
		taken := false
		if child != avoid {
			if taken, err = e.claimSandbox(ctx, child, spec.CallID, envelope); err != nil {
				return executor.Handle{}, err
			}
		}
		if taken {
			e.countWarm(true)
			h, _, err := e.warmTaken(ctx, spec, child, limit)
			e.observeStart(true, start)
			return h, err
		}
		// The recorded sandbox runs another call: move the record on.
		next := e.pick(ctx, spec, envelope)
		moved, updated, err := e.n.UpdateVariable(ctx, path, map[string]string{ItemChild: target(next), ItemCallID: spec.CallID}, cur.ModifyIndex)
		if err != nil || !updated {
			e.unpick(next)
		}
		if err != nil {
			return executor.Handle{}, err
		}
		if moved.Items == nil {
			// The record is gone (released meanwhile): nothing to follow.
			return executor.Handle{}, &Error{Op: "record call " + spec.CallID, Retryable: true, Err: errors.New("the call's record vanished while starting it")}
		}
		cur = moved
	}
	return executor.Handle{}, &Error{Op: "record call " + spec.CallID, Retryable: true, Err: errors.New("no place found for the call after 64 tries")}
}

func target(sb *sandbox) string {
	if sb == nil {
		return coldTarget
	}
	return sb.child
}

// startFollowingTries is Start of a call dispatched again before: it is
// watched in its latest try; with none left (gone from Nomad, maybe run),
// it ends lost.
func (e *Executor) startFollowingTries(ctx context.Context, spec executor.Spec, limit int64, start time.Time) (executor.Handle, error) {
	e.mu.Lock()
	if c := e.calls[spec.CallID]; c != nil {
		e.mu.Unlock()
		return executor.Handle{CallID: spec.CallID, Ref: c.child}, nil // watched here already
	}
	e.mu.Unlock()
	found, err := e.childrenByCall(ctx)
	if err != nil {
		return executor.Handle{}, err
	}
	child := found[spec.CallID]
	if child == "" {
		e.mu.Lock()
		first := e.calls[spec.CallID] == nil && e.finishIDLocked(spec.CallID, "")
		e.mu.Unlock()
		if first {
			e.emit(lostEvent(&call{id: spec.CallID}, "the call was dispatched again after its artifact download failed, and its children are gone from Nomad"))
		}
		return executor.Handle{CallID: spec.CallID}, nil
	}
	e.observeStart(false, start)
	c := e.watch(spec.CallID, child, limit)
	e.spawn(func(ctx context.Context) { e.check(ctx, c) })
	return executor.Handle{CallID: spec.CallID, Ref: c.child}, nil
}

// startCold dispatches the call (its ID is the idempotency token).
func (e *Executor) startCold(ctx context.Context, spec executor.Spec, limit int64, start time.Time, pooled bool) (executor.Handle, error) {
	if pooled {
		e.countWarm(false)
	}
	return e.dispatch(ctx, spec, limit, start)
}

// warmEnvelope is the call's envelope for a warm sandbox, nil when it is
// over MaxWarmEnvelope (the call goes cold).
func (e *Executor) warmEnvelope(spec executor.Spec, limit int64) []byte {
	en := BuildEnvelope(spec, limit, true)
	en.StderrPreview = warmStderrPreview
	// The shim marks alloc/data/.started when the envelope reaches it: a
	// claim whose envelope never arrives is told from a long call.
	en.Once = true
	b, err := json.Marshal(en)
	if err != nil || len(b) > MaxWarmEnvelope {
		return nil
	}
	return b
}

// pick takes a ready sandbox of the call's function version whose
// allocation still runs (one GET), or nil: none, or no envelope.
func (e *Executor) pick(ctx context.Context, spec executor.Spec, envelope []byte) *sandbox {
	if envelope == nil {
		return nil
	}
	version := e.warmSpec(spec.Function)
	for {
		sb := e.takeSandbox(spec.Function.ID, version)
		if sb == nil {
			return nil
		}
		e.kickWarm() // refill
		if a, err := e.n.Allocation(ctx, sb.alloc); err == nil && a.ClientStatus == nomad.AllocClientStatusRunning {
			return sb
		}
		// Ended before its call (the stream had not said so yet), or
		// unknown: never hand a call to it.
		e.spawn(func(ctx context.Context) { e.stopSandbox(ctx, sb.child) })
	}
}

// unpick puts an unused sandbox back in its pool (or stops it when the
// pool no longer wants it).
func (e *Executor) unpick(sb *sandbox) {
	if sb == nil {
		return
	}
	e.mu.Lock()
	p := e.wp.pools[sb.fnID]
	back := p != nil && p.spec == sb.spec && len(p.ready) < p.target.N
	if back {
		p.ready = append([]*sandbox{sb}, p.ready...)
		e.wp.sandboxes[sb.child] = sb
	}
	e.mu.Unlock()
	if !back {
		e.spawn(func(ctx context.Context) { e.stopSandbox(ctx, sb.child) })
	}
}

// claimSandbox hands the call to a warm child: its variable created with
// check-and-set 0. taken: the variable names this call (created now, or by
// another Start of it). false: it names another call, or Nomad refused the
// write (nothing written): the child is not this call's.
func (e *Executor) claimSandbox(ctx context.Context, child, callID string, envelope []byte) (bool, error) {
	cur, created, err := e.n.CreateVariable(ctx, WarmVariablePath(child), map[string]string{ItemEnvelope: string(envelope), ItemCallID: callID})
	if err != nil {
		if IsUnavailable(err) {
			return false, err
		}
		e.log.Warn("warm pools: claim refused; the call goes elsewhere", "call", callID, "job", child, "err", err)
		e.spawn(func(ctx context.Context) { e.stopSandbox(ctx, child) })
		return false, nil
	}
	return created || cur.Items[ItemCallID] == callID, nil
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
func (e *Executor) warmTaken(ctx context.Context, spec executor.Spec, child string, limit int64) (executor.Handle, bool, error) {
	callID := spec.CallID
	c := e.watch(callID, child, limit)
	e.mu.Lock()
	c.warm = true
	c.spec = &spec
	c.running = true // the allocation ran before the call: no Running event comes
	e.mu.Unlock()
	// Its allocation may have ended before the call was in the watch list
	// (the stream's news of it went to the pool): look once now, as a cold
	// Start does.
	e.spawn(func(ctx context.Context) { e.check(ctx, c) })
	e.spawn(func(ctx context.Context) { e.collectWarm(ctx, c) })
	return executor.Handle{CallID: callID, Ref: child}, true, nil
}

// collectWarm watches a claimed warm call until its command is done,
// failing a call whose envelope never reached its shim. A sealed
// function's call is collected at its seal (warm_seal.go); any other's
// watch ends at the shim's result.json and the call is collected at the
// allocation's end by the watch, as a cold one (allocfs.go says why not at
// result.json).
func (e *Executor) collectWarm(ctx context.Context, c *call) {
	allocs, _, err := e.n.JobAllocations(ctx, c.child, 0, 0)
	a := latest(allocs)
	if err != nil || a == nil {
		e.check(ctx, c)
		return
	}
	e.mu.Lock()
	seal := c.spec != nil && e.sealAs(c.spec.Function) != ""
	e.mu.Unlock()
	if seal {
		// Whether the seal counts is how the sandbox was built, as its
		// own job (written by an executor, never by the function) says:
		// one built with NoSeal or before seals existed, adopted or
		// recorded by another leader, runs the command as the shim's uid,
		// which forges the seal at will.
		job, err := e.n.JobInfo(ctx, c.child)
		seal = err == nil && job != nil && sealedSandbox(job.Meta[MetaSpec])
	}
	// Unsealed, nothing is read at result.json: seeing it sooner only
	// ends this watch sooner, so no fast first second of requests.
	poll := func(time.Duration) time.Duration { return 250 * time.Millisecond }
	if seal {
		poll = sealPoll
	}
	delivered := false
	lastCheck := time.Now()
	for start := time.Now(); ; {
		e.mu.Lock()
		stop := c.done || c.collecting
		e.mu.Unlock()
		if stop {
			return
		}
		if seal && e.sealedBy(ctx, a.ID, c.id) {
			if e.collectSealed(ctx, c, a.ID) {
				return
			}
			seal = false
		}
		if ok, _ := e.exists(ctx, a.ID, ResultFilePath); ok && !seal {
			// The command is done. Its files are read once the allocation
			// has ended, as a cold call's (allocfs.go: before that the
			// task could swap one for a link to a host file between the
			// check and the read); the watch collects it then.
			return
		}
		if time.Since(lastCheck) > time.Second {
			// An allocation that ended without a result (the sandbox died
			// under its call) is collected by its end, as a cold one.
			e.check(ctx, c)
			lastCheck = time.Now()
		}
		if !delivered && time.Since(start) > e.cfg.WarmDeliverTimeout {
			if delivered = e.undelivered(ctx, c, a.ID); !delivered {
				return
			}
		}
		if !sleep(ctx, poll(time.Since(start))) {
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

// delivered reports whether the task's template was re-rendered (its
// variable written, the change signal sent): Nomad's Signaling task event.
func delivered(a *nomad.Allocation) bool {
	if a == nil {
		return false
	}
	ts := a.TaskStates[TaskName]
	return ts != nil && findEvent(ts, nomad.TaskSignaling) != nil
}

// replaceUndelivered places again a warm call whose allocation ended
// before its shim started it (no .started, no result.json: nothing ran),
// when this executor has the call's spec (it started it): the record
// moves on from the dead child to another sandbox or to cold, and the call
// is watched there. true: re-placed (or already done); false: report the
// end as it is (the shim started, unknown, or no spec).
func (e *Executor) replaceUndelivered(ctx context.Context, c *call, allocID string) bool {
	e.mu.Lock()
	spec := c.spec
	e.mu.Unlock()
	if spec == nil {
		return false
	}
	// Whether the envelope reached the task is Nomad's to say, not the
	// task's: a function can remove .started and crash its shim, and would
	// then run again in the next sandbox. The client's template re-render
	// leaves a Signaling event; after it, the call may have run.
	alloc, err := e.n.Allocation(ctx, allocID)
	if err != nil || delivered(alloc) {
		return false
	}
	for _, f := range []string{"alloc/data/" + shim.StartedFile, ResultFilePath} {
		if ok, err := e.exists(ctx, allocID, f); ok || err != nil {
			return false
		}
	}
	e.mu.Lock()
	// Off the watch list without a report: the call goes on elsewhere.
	fresh := e.unwatchLocked(c)
	if fresh {
		e.moving[c.id] = false
	}
	e.mu.Unlock()
	if !fresh {
		return true
	}
	e.log.Warn("warm call: its sandbox ended before the call reached it; placing it again", "call", c.id, "job", c.child)
	backoff := e.cfg.StreamBackoffMin
	for {
		_, err := e.place(ctx, *spec, c.stdoutLimit, time.Now(), c.child)
		if err == nil {
			e.landed(ctx, c.id)
			return true
		}
		if !IsUnavailable(err) || !sleep(ctx, backoff) {
			e.landed(ctx, c.id)
			if ctx.Err() == nil && e.finish(c.id, c.child) {
				e.emit(lostEvent(c, "its warm sandbox ended before the call reached it, and placing it again failed: "+err.Error()))
			}
			return true
		}
		backoff = min(backoff*2, e.cfg.StreamBackoffMax)
	}
}

// landed ends a call's move (replaceUndelivered); a Cancel that came
// meanwhile is carried out now, on the child the call went to.
func (e *Executor) landed(ctx context.Context, callID string) {
	e.mu.Lock()
	canceled := e.moving[callID]
	delete(e.moving, callID)
	e.mu.Unlock()
	if !canceled {
		return
	}
	if err := e.Cancel(ctx, executor.Handle{CallID: callID}); err != nil && ctx.Err() == nil {
		e.log.Warn("cancel of a call placed again failed; it runs to its end", "call", callID, "err", err)
	}
}
