package nomadjob

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/shim"
)

// Reconcile answers what became of calls after a leader change: Running
// (watched again, the end comes through Events), Finished or Failed
// (collected now from the dead child's allocation; the child stays until
// Release), Failed canceled for a child that Cancel stopped, NotFound for a
// call without Ref that left no child, Failed lost for a call whose child is
// gone. A call this executor reported already is collected again: its
// report may never have been recorded. An error means Nomad could not be
// asked; nothing was decided and the caller tries again.
func (e *Executor) Reconcile(ctx context.Context, hs []executor.Handle) ([]executor.Event, error) {
	var byCall map[string]string // call ID -> child, built once if needed
	// The cold children by call, listed once for every handle that needs
	// them (a gone child's later try, a handle without Ref).
	var cold map[string]string
	children := func(ctx context.Context) (map[string]string, error) {
		if cold != nil {
			return cold, nil
		}
		m, err := e.childrenByCall(ctx)
		if err != nil {
			return nil, err
		}
		cold = m
		return cold, nil
	}
	out := make([]executor.Event, 0, len(hs))
	for _, h := range hs {
		child := h.Ref
		if isWarmChild(child) {
			// Placed again since (its sandbox died before the call
			// reached it)? The record says where it went.
			rec, err := e.n.ReadVariable(ctx, CallVariablePath(e.cfg.ClusterID, h.CallID))
			if err != nil && IsUnavailable(err) {
				return nil, err
			}
			if moved := rec[ItemChild]; moved != "" && moved != child {
				child = ""
			}
		}
		if child == "" {
			var err error
			if child, err = e.recordedChild(ctx, h.CallID); err != nil {
				return nil, err
			}
		}
		if child == "" {
			if byCall == nil {
				c, err := children(ctx)
				if err != nil {
					return nil, err
				}
				byCall = make(map[string]string, len(c))
				for k, v := range c {
					byCall[k] = v
				}
				if err := e.warmClaims(ctx, byCall); err != nil {
					return nil, err
				}
			}
			child = byCall[h.CallID]
			if child == "" {
				out = append(out, executor.Event{CallID: h.CallID, Kind: executor.NotFound})
				continue
			}
		}
		ev, err := e.reconcileChild(ctx, h.CallID, child, children)
		if err != nil {
			return nil, err
		}
		if (ev.Kind == executor.Finished || ev.Kind == executor.Failed) && ev.Ref != "" && ev.Ref != h.Ref && !isWarmChild(ev.Ref) {
			// Ended in a later try than the Ref (dispatchAgain): Release
			// of the handle purges that child too (its Ref fallback).
			e.mu.Lock()
			if _, ok := e.reported[h.CallID]; !ok && e.calls[h.CallID] == nil {
				e.markReported(h.CallID, ev.Ref)
			}
			e.mu.Unlock()
		}
		out = append(out, ev)
	}
	return out, nil
}

func (e *Executor) reconcileChild(ctx context.Context, callID, child string, children func(context.Context) (map[string]string, error)) (executor.Event, error) {
	e.mu.Lock()
	if c := e.calls[callID]; c != nil {
		e.mu.Unlock()
		return executor.Event{CallID: callID, Kind: executor.Running, Ref: c.child}, nil
	}
	e.mu.Unlock()
	allocs, _, err := e.n.JobAllocations(ctx, child, 0, 0)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return executor.Event{}, err
	}
	a := latest(allocs)
	job, jerr := e.n.JobInfo(ctx, child)
	if jerr != nil && !errors.Is(jerr, ErrNotFound) {
		return executor.Event{}, jerr
	}
	if a == nil && job == nil {
		// A child the call moved away from (dispatchAgain) is dead from
		// the start and Nomad's job GC may take it while the call runs
		// on in a later try: look for that by the call ID in the meta.
		if !isWarmChild(child) {
			found, err := children(ctx)
			if err != nil {
				return executor.Event{}, err
			}
			if later := found[callID]; later != "" && later != child {
				return e.reconcileChild(ctx, callID, later, children)
			}
		}
		c := &call{id: callID, child: child}
		return lostEvent(c, fmt.Sprintf("dispatched job %s is gone from Nomad and left no allocation", child)), nil
	}
	if stoppedByCancel(job, a) {
		return canceledEvent(callID, child), nil
	}
	limit := e.limitOf(job)
	if a != nil && isTerminal(a.ClientStatus) {
		ev, err := e.collect(ctx, callID, child, a.ID, limit)
		var again *errDispatchedAgain
		if errors.As(err, &again) {
			// Dispatched again (or found so: the token is the same):
			// the new child says. Each hop is a later try, so this ends
			// within MaxStartAttempts.
			return e.reconcileChild(ctx, callID, again.Child, children)
		}
		if !errors.Is(err, errNotTerminal) {
			return ev, err
		}
		// The allocation itself has not ended: watch it like a running one.
	}
	c := e.watch(callID, child, limit)
	e.mu.Lock()
	c.running = a != nil && a.ClientStatus == nomad.AllocClientStatusRunning
	e.mu.Unlock()
	// It may end between this query and the stream seeing it: look again.
	e.spawn(func(ctx context.Context) { e.check(ctx, c) })
	ev := executor.Event{CallID: callID, Kind: executor.Running, Ref: child}
	if a != nil {
		ev.StartedAt = startedAt(a.TaskStates)
	}
	return ev, nil
}

// stoppedByCancel: the child was stopped (Cancel deregisters without purge)
// and its allocation did not end on its own before that.
func stoppedByCancel(job *nomad.Job, a *nomad.AllocationListStub) bool {
	if job == nil || !deref(job.Stop) {
		return false
	}
	return a == nil || !isTerminal(a.ClientStatus) || a.DesiredStatus == nomad.AllocDesiredStatusStop
}

// limitOf reads the stdout limit from the child's payload (the envelope).
func (e *Executor) limitOf(job *nomad.Job) int64 {
	if job != nil && len(job.Payload) > 0 {
		var en shim.Envelope
		if err := json.Unmarshal(job.Payload, &en); err == nil && en.StdoutLimit > 0 {
			return en.StdoutLimit
		}
	}
	return e.cfg.StdoutLimit
}

// childrenByCall maps call IDs to the dispatched children that exist now,
// from the job list (this cluster's prefix, fixture 23) and each child's
// meta (hf_cluster must be this cluster's).
func (e *Executor) childrenByCall(ctx context.Context) (map[string]string, error) {
	stubs, err := e.n.ListJobs(ctx, e.listPrefix())
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	tries := map[string]int{} // by child
	for _, s := range stubs {
		if !isChildStub(s) {
			continue
		}
		job, err := e.n.JobInfo(ctx, s.ID)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if id := callIDOf(job); id != "" && e.ownJob(job) && !isWarmChild(s.ID) {
			// A call dispatched again (dispatchAgain) has several
			// children: its latest try is where it runs.
			try := tryOf(deref(job.DispatchIdempotencyToken), id)
			if cur, ok := out[id]; !ok || try > tries[cur] {
				out[id] = s.ID
				tries[s.ID] = try
			}
		}
	}
	return out, nil
}

// ChildrenOf lists the dispatched children of a function's jobs (both
// variants) by prefix, for operators and tests.
func (e *Executor) ChildrenOf(ctx context.Context, fn executor.Function) ([]string, error) {
	var ids []string
	for _, parent := range []string{JobID(e.cfg.ClusterID, fn), BigJobID(e.cfg.ClusterID, fn)} {
		stubs, err := e.n.ListJobs(ctx, parent+"/dispatch")
		if err != nil {
			return nil, err
		}
		for _, s := range stubs {
			if s.ParentID == parent {
				ids = append(ids, s.ID)
			}
		}
	}
	return ids, nil
}

// recordedChild is the warm child the call's record names when that child
// took the call (its variable names it); "" otherwise: the record says
// cold (found by meta as before), or names a child that never got the
// call (its next Start follows the record, so NotFound is safe).
func (e *Executor) recordedChild(ctx context.Context, callID string) (string, error) {
	rec, err := e.n.ReadVariable(ctx, CallVariablePath(e.cfg.ClusterID, callID))
	if err != nil && IsUnavailable(err) {
		return "", err
	}
	child := rec[ItemChild]
	if child == "" || child == coldTarget {
		return "", nil
	}
	items, err := e.n.ReadVariable(ctx, WarmVariablePath(child))
	if err != nil {
		if IsUnavailable(err) {
			return "", err
		}
		return "", nil
	}
	if items[ItemCallID] == callID {
		return child, nil
	}
	return "", nil
}

// warmClaims adds to byCall the warm children that took a call: their
// variable (nomad/jobs/<child>) names it. A warm child's meta never
// changes, so this is where a new leader learns which call it runs.
func (e *Executor) warmClaims(ctx context.Context, byCall map[string]string) error {
	paths, err := e.n.ListVariables(ctx, "nomad/jobs/"+e.listPrefix())
	if err != nil {
		return err
	}
	for _, p := range paths {
		child := strings.TrimPrefix(p, "nomad/jobs/")
		if !isWarmChild(child) {
			continue
		}
		items, err := e.n.ReadVariable(ctx, p)
		if err != nil {
			return err
		}
		if id := items[ItemCallID]; id != "" {
			if _, ok := byCall[id]; !ok {
				byCall[id] = child
			}
		}
	}
	return nil
}
