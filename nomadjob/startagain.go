package nomadjob

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"

	nomad "github.com/hashicorp/nomad/api"
)

// MaxStartAttempts bounds the children one cold call is dispatched as when
// each fails at its artifact download: the first and two more. What fails
// there is the path to -public-url (a load balancer answering 502 while a
// server restarts, a server of another version in the rotation during a
// rolling upgrade): a second try goes to another server, a third covers a
// second restart; past that the path is broken and the call ends FAILED
// with the download's error.
const MaxStartAttempts = 3

// trySep joins a call ID and its try number in a dispatch idempotency
// token: "<call ID>~2". A call ID never holds it (a UUID, or the
// server's validated ID).
const trySep = "~"

// errDispatchedAgain: collect found a cold call's allocation failed at its
// artifact download and dispatched the call again; Child is the new child.
type errDispatchedAgain struct{ Child string }

// ItemTries is the call record's item (CallVariablePath) naming the latest
// try the call was dispatched again as ("2", "3"), written once that
// dispatch is made or followed. A later try that is gone (purged, taken by
// Nomad's job GC) leaves its token free, and its child may have run the
// command: the record tells so, and the call is not dispatched under that
// token again.
const ItemTries = "tries"

// errLaterTryGone: the call was dispatched again as a later try (its
// record says), which is gone from Nomad now: whether it ran the command
// is unknown, so the call is not dispatched again.
type errLaterTryGone struct{ Try int }

func (e *errLaterTryGone) Error() string {
	return "the call was dispatched again as try " + strconv.Itoa(e.Try) + " after its artifact download failed, and that child is gone from Nomad"
}

// errStoppedBeforeTry: the child failed at its artifact download and was
// stopped (Cancel, an operator) before the call was dispatched again: the
// stop, not the download, ended the call.
var errStoppedBeforeTry = errors.New("stopped after its artifact download failed, before it was dispatched again")

func (e *errDispatchedAgain) Error() string {
	return "the task failed at its artifact download before it started; dispatched again as " + e.Child
}

// dispatchAgain decides whether a terminal allocation of a cold call's
// child is a start that never happened, and if so dispatches the call
// again and returns the new child ("": report the allocation as it is).
// Only a task that failed at its artifact download qualifies, by Nomad's
// own task events (a function cannot write them): the client fetches
// artifacts (hf-shim, a big call's stdin) before it creates the container,
// so the command never ran and cannot run twice. The new child is a
// dispatch of the same parent with the failed child's payload and dispatch
// meta under the token "<call ID>~<try>": idempotent, so a new leader's
// Reconcile that follows the same chain dispatches nothing twice, and the
// try number bounds it. Nomad's forced reschedule would keep the child
// but does nothing here: Job.Evaluate forces one only when the group's
// reschedule policy is enabled, and ours is off so that a failed command
// never runs again (measured on Nomad 1.6.5).
func (e *Executor) dispatchAgain(ctx context.Context, callID, child string, a *nomad.Allocation) (string, error) {
	if isWarmChild(child) || a.ClientStatus != nomad.AllocClientStatusFailed || taskStarted(a) || !artifactFailed(a.TaskStates) {
		return "", nil
	}
	job, err := e.n.JobInfo(ctx, child)
	if errors.Is(err, ErrNotFound) {
		// Purged or taken by Nomad's job GC (dead from the start, it
		// can go while the call runs on in a later try): that one, if
		// any, is found by the call ID in its meta.
		found, err := e.childrenByCall(ctx)
		if err != nil {
			return "", err
		}
		if later := found[callID]; later != child {
			return later, nil
		}
		return "", nil
	}
	if err != nil {
		return "", err
	}
	parent := deref(job.ParentID)
	if parent == "" {
		return "", nil // not a dispatched child
	}
	try := tryOf(deref(job.DispatchIdempotencyToken), callID)
	if deref(job.Stop) {
		// Canceled. Its failed allocation keeps DesiredStatus run (Nomad
		// does not touch a terminal allocation on stop), so the call's
		// end is told by the later try it went on to, if any: stopped
		// by the same Cancel.
		if try == 0 {
			return "", nil
		}
		later, err := e.laterTry(ctx, callID, job, try)
		if err != nil {
			return "", err
		}
		if later == "" {
			// Stopped before it was dispatched again (a Cancel
			// racing the re-dispatch; one by another leader is
			// stopped by that dispatch's own check): canceled, as
			// the Cancel itself reports, whichever of its report
			// and this collect comes first. After the last try
			// too: the Cancel came before the failure was told.
			return "", errStoppedBeforeTry
		}
		// Stopped by that Cancel, unless it was dispatched after the
		// Cancel listed the later tries (an old leader's collect): stop
		// it (again).
		if err := e.n.DeregisterJob(ctx, later, false); err != nil && !errors.Is(err, ErrNotFound) {
			return "", err
		}
		return later, nil
	}
	if try == 0 || try >= MaxStartAttempts {
		return "", nil
	}
	// A later try may exist already while this one's token is free
	// again, or the next one's is (a middle try purged by an operator or
	// a GC pass): dispatching "<call>~<try+1>" would then create a new
	// child and run the command next to the later try. Follow that one.
	if later, err := e.laterTry(ctx, callID, job, try); err != nil {
		return "", err
	} else if later != "" {
		if err := e.recordTry(ctx, callID, try+1); err != nil {
			return "", err
		}
		return later, nil
	}
	// None found. A later try the record names was dispatched and is gone
	// (purged, Nomad's job GC): it may have run the command to its end, so
	// its freed token is not dispatched again.
	if rec, err := e.n.ReadVariable(ctx, CallVariablePath(e.cfg.ClusterID, callID)); err != nil && IsUnavailable(err) {
		return "", err
	} else if n, _ := strconv.Atoi(rec[ItemTries]); n > try {
		// Recorded after its dispatch: listed again now, the later try
		// is found unless it is gone (the first list may have come
		// before another leader's dispatch).
		if later, err := e.laterTry(ctx, callID, job, try); err != nil {
			return "", err
		} else if later != "" {
			return later, nil
		}
		return "", &errLaterTryGone{Try: n}
	}
	meta := map[string]string{}
	for _, k := range []string{MetaCallID, MetaKey} {
		if v, ok := job.Meta[k]; ok {
			meta[k] = v
		}
	}
	next, err := e.n.Dispatch(ctx, parent, meta, job.Payload, callID+trySep+strconv.Itoa(try+1))
	if err != nil {
		if IsUnavailable(err) {
			return "", err
		}
		// The function's job is gone or changed its parameters: the
		// call ends with the download's error.
		e.log.Warn("cannot dispatch the call again after its artifact download failed", "call", callID, "job", child, "err", err)
		return "", nil
	}
	if next == child {
		return "", nil
	}
	// A Cancel (here or on another leader) stops the child before it
	// lists the later tries: one that stopped it after the read above
	// listed before this dispatch and missed the new child. Read again;
	// stopped or gone, the new child is stopped here.
	if j, err := e.n.JobInfo(ctx, child); errors.Is(err, ErrNotFound) || (err == nil && deref(j.Stop)) {
		if err := e.n.DeregisterJob(ctx, next, false); err != nil && !errors.Is(err, ErrNotFound) {
			return "", err // the next collect comes back here (laterTry of a stopped child)
		}
		return next, nil
	} else if err != nil {
		return "", err
	}
	if err := e.recordTry(ctx, callID, try+1); err != nil {
		// The next collect follows the new child (laterTry) and records it.
		return "", err
	}
	e.log.Warn("call's task failed at its artifact download before it started; dispatched again",
		"call", callID, "job", child, "alloc", a.ID, "new_job", next, "try", try+1, "of", MaxStartAttempts)
	return next, nil
}

// recordTry raises the call record's ItemTries to try (check-and-set).
// A Nomad that refuses variable writes keeps no records: the tokens alone
// guard then, as before.
func (e *Executor) recordTry(ctx context.Context, callID string, try int) error {
	path := CallVariablePath(e.cfg.ClusterID, callID)
	fresh := map[string]string{ItemChild: coldTarget, ItemCallID: callID, ItemTries: strconv.Itoa(try)}
	cur, created, err := e.n.CreateVariable(ctx, path, fresh)
	for range 16 {
		if err != nil {
			if IsUnavailable(err) {
				return err
			}
			return nil
		}
		if created {
			return nil
		}
		if cur.Items == nil { // deleted meanwhile
			cur, created, err = e.n.CreateVariable(ctx, path, fresh)
			continue
		}
		if n, _ := strconv.Atoi(cur.Items[ItemTries]); n >= try {
			return nil
		}
		items := make(map[string]string, len(cur.Items)+1)
		for k, v := range cur.Items {
			items[k] = v
		}
		items[ItemTries] = strconv.Itoa(try)
		cur, created, err = e.n.UpdateVariable(ctx, path, items, cur.ModifyIndex)
	}
	return err
}

// tryOf is the try number of a child dispatched with token for callID: 1
// for the call ID itself, n for "<call ID>~n", 0 for anything else.
func tryOf(token, callID string) int {
	if token == callID {
		return 1
	}
	rest, ok := strings.CutPrefix(token, callID+trySep)
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 2 || strconv.Itoa(n) != rest {
		return 0
	}
	return n
}

// artifactFailed: the task's events hold a failed artifact download.
func artifactFailed(states map[string]*nomad.TaskState) bool {
	ts := states[TaskName]
	return ts != nil && findEvent(ts, nomad.TaskArtifactDownloadFailed) != nil
}

// moveTo watches a call on in its new child (dispatchAgain). A call that
// ended meanwhile (Cancel, Release) leaves the new child with nobody to
// collect it: it is stopped.
func (e *Executor) moveTo(ctx context.Context, c *call, child string) {
	e.mu.Lock()
	if c.done || e.calls[c.id] != c {
		e.mu.Unlock()
		if err := e.n.DeregisterJob(ctx, child, false); err != nil && !errors.Is(err, ErrNotFound) {
			e.log.Warn("cannot stop the new child of an ended call; CleanOrphans sweeps it once dead", "job", child, "err", err)
		}
		return
	}
	e.unwatchLocked(c)
	next := &call{id: c.id, child: child, stdoutLimit: c.stdoutLimit}
	e.calls[c.id] = next
	e.byChild[child] = next
	e.mu.Unlock()
	e.check(ctx, next)
}

// laterTries lists the call's children dispatched from job's parent after
// job under a later try's token than try (0: any try), the latest try
// first. Only children created after job are read.
func (e *Executor) laterTries(ctx context.Context, callID string, job *nomad.Job, try int) ([]string, error) {
	parent := deref(job.ParentID)
	if parent == "" {
		return nil, nil
	}
	stubs, err := e.n.ListJobs(ctx, parent+"/dispatch")
	if err != nil {
		return nil, err
	}
	type found struct {
		id  string
		try int
	}
	var out []found
	for _, s := range stubs {
		if s.ParentID != parent || s.ID == deref(job.ID) || s.CreateIndex <= deref(job.CreateIndex) {
			continue
		}
		if s.Meta != nil && s.Meta[MetaCallID] != callID {
			continue // another call's child (the stub's meta, Nomad 1.6)
		}
		j, err := e.n.JobInfo(ctx, s.ID)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if j.Meta[MetaCallID] != callID {
			continue
		}
		if t := tryOf(deref(j.DispatchIdempotencyToken), callID); t > try {
			out = append(out, found{s.ID, t})
		}
	}
	slices.SortStableFunc(out, func(a, b found) int { return cmp.Compare(b.try, a.try) })
	ids := make([]string, len(out))
	for i, f := range out {
		ids[i] = f.id
	}
	return ids, nil
}

// laterTry is the latest of laterTries ("" when none).
func (e *Executor) laterTry(ctx context.Context, callID string, job *nomad.Job, try int) (string, error) {
	ids, err := e.laterTries(ctx, callID, job, try)
	if err != nil || len(ids) == 0 {
		return "", err
	}
	return ids[0], nil
}

// laterTriesOf is laterTries of child's call from its first try on; none
// when child is gone.
func (e *Executor) laterTriesOf(ctx context.Context, callID, child string) ([]string, error) {
	// Only a child that failed at its download before it started has
	// later tries: spare the list for every other Cancel.
	allocs, _, err := e.n.JobAllocations(ctx, child, 0, 0)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	a := latest(allocs)
	if a == nil || a.ClientStatus != nomad.AllocClientStatusFailed || !artifactFailed(a.TaskStates) {
		return nil, nil
	}
	job, err := e.n.JobInfo(ctx, child)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return e.laterTries(ctx, callID, job, tryOf(deref(job.DispatchIdempotencyToken), callID))
}
