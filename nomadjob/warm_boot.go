package nomadjob

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/hyperfunc/hyperfunc/executor"
)

// warmBootTimeout bounds a boot: dispatch to the shim's ready file.
const warmBootTimeout = 2 * time.Minute

// warmReadyPoll is how often a boot looks for the ready file (host side,
// through Nomad's fs endpoint; the sandbox itself polls nothing).
const warmReadyPoll = 50 * time.Millisecond

// bootSandbox boots one sandbox for pool p and puts it in the pool when
// the pool still wants it (same version, not full); otherwise it is
// stopped.
func (e *Executor) bootSandbox(ctx context.Context, p *warmPool, fn executor.Function, spec string, gen int) {
	sb := &sandbox{id: newSandboxID(), fnID: fn.ID, spec: spec}
	err := e.boot(ctx, sb, fn)
	e.mu.Lock()
	p.booting--
	e.wp.inflight--
	dropped := e.wp.gen != gen // leadership ended meanwhile
	keep := err == nil && e.wp.pools[fn.ID] == p && p.spec == spec && len(p.ready) < p.target.N
	if keep {
		p.ready = append(p.ready, sb)
		e.wp.sandboxes[sb.child] = sb
		p.backoff = 0
	} else if dropped && err == nil {
		// Whoever leads now (this executor again, or another) takes it
		// over or stops it in its next take-over.
		e.wp.adopt = true
	} else if err != nil && e.wp.pools[fn.ID] == p {
		e.failedLocked(p)
		if errors.Is(err, ErrNotFound) || errors.Is(err, errOtherVersion) {
			// The warm job is gone, or another version replaced it:
			// register it again.
			p.registered = false
		}
	}
	e.mu.Unlock()
	if err != nil && ctx.Err() == nil {
		e.log.Warn("warm pools: boot failed", "function", fn.ID, "job", sb.child, "err", err)
	}
	if !keep && sb.child != "" && !(dropped && err == nil) {
		// A ready sandbox of a dropped leadership stays: the next
		// leader's take-over adopts it (it may have already).
		e.stopSandbox(ctx, sb.child)
	}
	e.kickWarm()
}

// errOtherVersion: a new sandbox's job is not the pool's version.
var errOtherVersion = errors.New("the warm job was registered with another version meanwhile")

// boot dispatches a warm child and waits until its allocation runs and the
// shim inside is ready for its doorbell.
func (e *Executor) boot(ctx context.Context, sb *sandbox, fn executor.Function) error {
	ctx, cancel := context.WithTimeout(ctx, warmBootTimeout)
	defer cancel()
	// No idempotency token: a retried dispatch only makes a spare sandbox,
	// which the next take-over adopts or stops.
	child, err := e.n.Dispatch(ctx, WarmJobID(e.cfg.ClusterID, fn), map[string]string{MetaWarm: sb.id}, nil, "")
	if err != nil {
		return err
	}
	sb.child = child
	// The child runs the warm job as it was at the dispatch: one that
	// another executor (a stale leader, another version) registered over
	// this one's in between would run another image, command or user
	// under this version's name (found by a review). Its own meta says.
	job, err := e.n.JobInfo(ctx, child)
	if err != nil {
		return err
	}
	if got := job.Meta[MetaSpec]; got != sb.spec {
		return fmt.Errorf("%w: sandbox %s runs version %q, the pool wants %q", errOtherVersion, child, got, sb.spec)
	}
	a, err := e.waitRunning(ctx, child)
	if err != nil {
		return err
	}
	sb.alloc = a
	for i := 0; ; i++ {
		ok, err := e.exists(ctx, a, warmReadyFSPath)
		if ok {
			return nil
		}
		if err != nil && !IsUnavailable(err) {
			return err
		}
		if i%20 == 19 {
			if st, err := e.n.Allocation(ctx, a); err == nil && isTerminal(st.ClientStatus) {
				return fmt.Errorf("sandbox %s ended (%s) before its shim was ready", child, st.ClientStatus)
			}
		}
		if !sleep(ctx, warmReadyPoll) {
			return fmt.Errorf("sandbox %s: shim not ready: %w", child, ctx.Err())
		}
	}
}

// waitRunning follows the child's allocations with blocking queries until
// one runs; an allocation that ended first fails the boot.
func (e *Executor) waitRunning(ctx context.Context, child string) (string, error) {
	var index uint64
	for {
		allocs, next, err := e.n.JobAllocations(ctx, child, index, 30*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return "", fmt.Errorf("sandbox %s: not running: %w", child, ctx.Err())
			}
			if !IsUnavailable(err) {
				return "", err
			}
			if !sleep(ctx, e.cfg.StreamBackoffMin) {
				return "", ctx.Err()
			}
			continue
		}
		if a := latest(allocs); a != nil {
			switch {
			case a.ClientStatus == nomad.AllocClientStatusRunning:
				return a.ID, nil
			case isTerminal(a.ClientStatus):
				return "", fmt.Errorf("sandbox %s ended (%s) before it ran: %s", child, a.ClientStatus, lastStubMessage(a))
			}
		}
		index = next
	}
}

func lastStubMessage(a *nomad.AllocationListStub) string {
	return firstNonEmpty(lastMessage(a.TaskStates[TaskName]), a.ClientDescription)
}

// adoptWarm takes over the unclaimed warm children that run without this
// executor knowing them (an earlier leader's, or a boot whose answer was
// lost): those of a wanted function's current version fill its pool, the
// rest are stopped. Claimed ones (their variable exists) belong to their
// call: Reconcile and Release deal with them. Dead ones are CleanOrphans'.
func (e *Executor) adoptWarm(ctx context.Context) error {
	stubs, err := e.n.ListJobs(ctx, e.listPrefix())
	if err != nil {
		return err
	}
	for _, s := range stubs {
		if !isChildStub(s) || !strings.HasSuffix(s.ParentID, WarmSuffix) || s.Status == "dead" {
			continue
		}
		e.mu.Lock()
		known := e.wp.sandboxes[s.ID] != nil || e.byChild[s.ID] != nil
		e.mu.Unlock()
		if known {
			continue
		}
		job, err := e.n.JobInfo(ctx, s.ID)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if !e.ownJob(job) || deref(job.Stop) {
			continue
		}
		if items, err := e.n.ReadVariable(ctx, WarmVariablePath(s.ID)); err != nil {
			return err
		} else if items != nil {
			continue
		}
		sb := &sandbox{id: job.Meta[MetaWarm], child: s.ID, fnID: job.Meta[MetaFunction], spec: job.Meta[MetaSpec]}
		allocs, _, err := e.n.JobAllocations(ctx, s.ID, 0, 0)
		if err != nil {
			return err
		}
		ready := false
		if a := latest(allocs); a != nil && a.ClientStatus == nomad.AllocClientStatusRunning {
			sb.alloc = a.ID
			if ready, err = e.exists(ctx, a.ID, warmReadyFSPath); err != nil {
				return err
			}
		}
		e.mu.Lock()
		p := e.wp.pools[sb.fnID]
		adopt := ready && p != nil && p.spec == sb.spec && len(p.ready)+p.booting < p.target.N
		if adopt {
			p.ready = append(p.ready, sb)
			e.wp.sandboxes[sb.child] = sb
		}
		e.mu.Unlock()
		if !adopt {
			e.stopSandbox(ctx, s.ID)
		}
	}
	e.mu.Lock()
	e.wp.adopt = false
	e.mu.Unlock()
	return nil
}

// warmEvent handles an Allocation event of a pooled sandbox: one that
// ended before its call leaves the pool, and the loop boots another.
func (e *Executor) warmEvent(jobID, status string) {
	if !isTerminal(status) {
		return
	}
	e.mu.Lock()
	sb := e.wp.sandboxes[jobID]
	if sb != nil {
		e.forgetLocked(sb)
		if p := e.wp.pools[sb.fnID]; p != nil {
			for i, r := range p.ready {
				if r == sb {
					p.ready = append(p.ready[:i], p.ready[i+1:]...)
					break
				}
			}
		}
	}
	e.mu.Unlock()
	if sb != nil {
		e.log.Info("warm pools: a sandbox ended before its call; booting another", "job", jobID, "status", status)
		e.kickWarm()
	}
}
