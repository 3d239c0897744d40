package nomadjob

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/hyperfunc/hyperfunc/executor"
)

// releaseParallel bounds the purges of one Release.
const releaseParallel = 8

// Release implements server.Executor: the final state of these calls is
// recorded, so their children are purged (thousands of dead children
// slow Nomad down; the allocations stay readable, fixture 25), after
// Config.PurgeDelay (queued; at once when 0). Until then a dead child keeps
// its result and keeps the idempotency token taken (a purged child no
// longer protects it), so a leader that dies between the report and the
// record leaves everything to the next leader's Reconcile, and a deposed
// leader's late dispatch of the call gets the dead child back instead of
// running the call again (DefaultPurgeDelay).
//
// Ref is the child job ID. A handle without Ref uses the child this
// executor reported for the call, if any; otherwise it is skipped: finding
// it would mean reading every child, and CleanOrphans sweeps it later. A
// call still watched is dropped from the watch list without a report (its
// end is recorded already). A failed purge only leaves a dead child for
// CleanOrphans; the error says how many failed.
func (e *Executor) Release(ctx context.Context, hs []executor.Handle) error {
	type release struct{ child, callID string }
	var children []release
	e.mu.Lock()
	for _, h := range hs {
		child := h.Ref
		// A warm call placed again (its sandbox died before it) ran in
		// another child than the Ref the dispatcher knows: both go.
		other := e.reported[h.CallID]
		if c := e.calls[h.CallID]; c != nil {
			other = c.child
			c.done = true
			delete(e.calls, h.CallID)
			delete(e.byChild, c.child)
		}
		if child == "" {
			child, other = other, ""
		}
		if other != "" && other != child {
			children = append(children, release{child: other, callID: h.CallID})
		}
		delete(e.reported, h.CallID)
		// Every handle: a call without a known child may still have its
		// record (where it runs) to delete.
		children = append(children, release{child: child, callID: h.CallID})
	}
	e.mu.Unlock()
	if len(children) == 0 {
		return nil
	}
	if e.cfg.PurgeDelay > 0 {
		// Warm children wait too: a warm child's token is its sandbox's,
		// so what answers a late Start of its call is the call's record
		// (naming the sandbox) and the sandbox's claim (naming the call),
		// which the purge deletes with it.
		for _, r := range children {
			e.purgeLater(r.child, r.callID)
		}
		return nil
	}
	// Stop with the executor too (Close), not only with the caller.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(e.ctx, cancel)
	defer stop()

	var (
		mu     sync.Mutex
		failed int
		first  error
		wg     sync.WaitGroup
		sem    = make(chan struct{}, releaseParallel)
	)
	for _, r := range children {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			mu.Lock()
			failed++
			first = cmp.Or(first, ctx.Err())
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if r.child == "" {
				e.forgetCall(ctx, r.callID)
				return
			}
			if err := e.purge(ctx, r.child); err != nil {
				mu.Lock()
				failed++
				first = cmp.Or(first, err)
				mu.Unlock()
				return
			}
			e.forgetCall(ctx, r.callID)
		}()
	}
	wg.Wait()
	if failed > 0 {
		return fmt.Errorf("nomad executor: release: %d of %d purges failed: %w", failed, len(children), first)
	}
	return nil
}

// CleanOrphans purges the dead children of calls that keep does not keep
// (after Config.PurgeDelay, as Release does: queued, and counted when queued):
// leftovers of a leader that died between recording a call's end and
// Release, or of a failed Release. The dispatcher calls it after Reconcile
// and keeps every call it does not know to have ended. Children are found
// as Reconcile finds them: one list of jobs by the hf- prefix (children
// included, fixture 23: Status, ParentID), the call ID from each dead
// child's meta. Only this cluster's children are touched: the list is by
// the cluster's job prefix and the child's hf_cluster meta must match. Running children, children this executor still watches and
// children without a call ID are left alone. It returns how many it purged;
// it stops at the first error that says Nomad is unavailable.
func (e *Executor) CleanOrphans(ctx context.Context, keep func(callID string) bool) (int, error) {
	stubs, err := e.n.ListJobs(ctx, e.listPrefix())
	if err != nil {
		return 0, err
	}
	n := 0
	var failed []string
	for _, s := range stubs {
		if !isChildStub(s) || s.Status != "dead" {
			continue
		}
		e.mu.Lock()
		watched := e.byChild[s.ID] != nil
		e.mu.Unlock()
		if watched {
			continue
		}
		job, err := e.n.JobInfo(ctx, s.ID)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return n, err
		}
		id := callIDOf(job)
		if isWarmChild(s.ID) {
			// A warm child's call is in its variable; one that died
			// unclaimed has none and no call to keep.
			items, err := e.n.ReadVariable(ctx, WarmVariablePath(s.ID))
			if err != nil {
				return n, err
			}
			id = items[ItemCallID]
			if id == "" && e.ownJob(job) {
				if err := e.purge(ctx, s.ID); err != nil && IsUnavailable(err) {
					return n, err
				}
				continue
			}
		}
		if id == "" || !e.ownJob(job) || keep(id) {
			continue
		}
		if e.cfg.PurgeDelay > 0 {
			// A deposed leader may still have this call's dispatch in
			// flight: the child answers it for the delay (Release).
			e.purgeLater(s.ID, id)
		} else {
			if err := e.n.DeregisterJob(ctx, s.ID, true); err != nil && !errors.Is(err, ErrNotFound) {
				if IsUnavailable(err) {
					return n, err
				}
				failed = append(failed, s.ID+": "+err.Error())
				continue
			}
			if isWarmChild(s.ID) {
				_ = e.n.DeleteVariable(ctx, WarmVariablePath(s.ID))
			}
			e.forgetCall(ctx, id) // the call's record, which Release did not delete
		}
		e.mu.Lock()
		if e.reported[id] == s.ID {
			delete(e.reported, id)
		}
		e.mu.Unlock()
		n++
	}
	if len(failed) > 0 {
		return n, fmt.Errorf("nomad executor: clean orphans: %d purges refused: %s", len(failed), strings.Join(failed, "; "))
	}
	return n, nil
}

// isChildStub: a job dispatched from one of hyperfunc's parameterized jobs
// (the pull jobs are sysbatch jobs without children).
func isChildStub(s *nomad.JobListStub) bool {
	return s.ParentID != "" && strings.HasPrefix(s.ParentID, "hf-") && strings.Contains(s.ID, "/dispatch-")
}

// callIDOf is the call a child runs: its call_id meta, else its
// idempotency token (both are the call ID).
func callIDOf(job *nomad.Job) string {
	if id := job.Meta[MetaCallID]; id != "" {
		return id
	}
	return deref(job.DispatchIdempotencyToken)
}

// forgetCall deletes the call's record (where it ran), once its end is
// recorded and its child purged. A failure leaves it to CleanOrphans.
func (e *Executor) forgetCall(ctx context.Context, callID string) {
	if err := e.n.DeleteVariable(ctx, CallVariablePath(e.cfg.ClusterID, callID)); err != nil && ctx.Err() == nil {
		e.log.Warn("deleting a call's record failed; CleanOrphans sweeps it", "call", callID, "err", err)
	}
}

// purge deletes a child job, retrying a few times while Nomad is
// unavailable; a child already gone is fine.
func (e *Executor) purge(ctx context.Context, child string) error {
	backoff := e.cfg.StreamBackoffMin
	var err error
	for range 10 {
		err = e.n.DeregisterJob(ctx, child, true)
		if err == nil || errors.Is(err, ErrNotFound) {
			if isWarmChild(child) {
				// Its claim goes after it: the child can render nothing
				// more. A leftover variable only takes room.
				if derr := e.n.DeleteVariable(ctx, WarmVariablePath(child)); derr != nil {
					e.log.Warn("deleting a warm child's variable failed", "job", child, "err", derr)
				}
			}
			return nil
		}
		if !IsUnavailable(err) || !sleep(ctx, backoff) {
			break
		}
		backoff = min(backoff*2, e.cfg.StreamBackoffMax)
	}
	e.log.Warn("purge of a child job failed; CleanOrphans sweeps it later", "job", child, "err", err)
	return err
}
