package nomadjob

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
)

// watchLoop follows the Allocation topic of the event stream. After every
// (re)connect, and every RecheckInterval, it re-checks each watched call with
// a query of its child's allocations: the stream may have skipped indexes
// that aged out of Nomad's event buffer while we were away.
func (e *Executor) watchLoop() {
	defer e.wg.Done()
	ctx := e.ctx
	var index uint64
	backoff := e.cfg.StreamBackoffMin
	recheck := time.NewTicker(e.cfg.RecheckInterval)
	defer recheck.Stop()
	for ctx.Err() == nil {
		ch, err := e.n.EventStream(ctx, index)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			e.log.Warn("event stream: connect failed", "err", err, "retry_in", backoff)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(backoff*2, e.cfg.StreamBackoffMax)
			continue
		}
		backoff = e.cfg.StreamBackoffMin
		e.recheckAll()
	stream:
		for {
			select {
			case <-ctx.Done():
				return
			case <-recheck.C:
				e.recheckAll()
			case <-e.kick:
				e.recheckAll()
			case evs, ok := <-ch:
				if !ok {
					break stream
				}
				if evs.Err != nil {
					if ctx.Err() == nil {
						e.log.Warn("event stream: dropped", "err", evs.Err)
					}
					break stream
				}
				if evs.Index > index {
					index = evs.Index
				}
				for i := range evs.Events {
					e.handleEvent(&evs.Events[i])
				}
			}
		}
		if !sleep(ctx, e.cfg.StreamBackoffMin) {
			return
		}
	}
}

// handleEvent looks at one Allocation event. Only events of watched children
// are decoded: FilterKeys[0] is the allocation's job ID (fixture 27).
func (e *Executor) handleEvent(ev *nomad.Event) {
	if ev.Topic != nomad.TopicAllocation {
		return
	}
	var c *call
	if len(ev.FilterKeys) > 0 {
		e.mu.Lock()
		c = e.byChild[ev.FilterKeys[0]]
		pooled := e.wp.sandboxes[ev.FilterKeys[0]] != nil
		e.mu.Unlock()
		if c == nil && !pooled {
			return
		}
		if c == nil {
			if alloc, err := DecodeAllocationEvent(ev); err == nil {
				e.warmEvent(alloc.JobID, alloc.ClientStatus)
			}
			return
		}
	}
	alloc, err := DecodeAllocationEvent(ev)
	if err != nil {
		e.log.Warn("event stream: undecodable allocation event", "key", ev.Key, "err", err)
		return
	}
	if c == nil {
		e.mu.Lock()
		c = e.byChild[alloc.JobID]
		e.mu.Unlock()
		if c == nil {
			return
		}
	}
	e.allocUpdate(c, alloc.ID, alloc.ClientStatus, startedAt(alloc.TaskStates))
}

// AllocEvent is what the executor reads of an Allocation event.
type AllocEvent struct {
	ID           string
	JobID        string
	ClientStatus string
	TaskStates   map[string]*nomad.TaskState
}

// DecodeAllocationEvent reads the allocation of an event with encoding/json
// (nomad/api's Event.Allocation uses mapstructure, which fails on any []byte
// field sent as base64, such as an embedded job's Payload).
func DecodeAllocationEvent(ev *nomad.Event) (*AllocEvent, error) {
	raw, ok := ev.Payload["Allocation"]
	if !ok {
		return nil, errors.New("no Allocation in the payload")
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	var a AllocEvent
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, err
	}
	if a.ID == "" || a.JobID == "" {
		return nil, errors.New("allocation without ID or JobID")
	}
	return &a, nil
}

// allocUpdate moves a watched call on from an allocation's client status.
func (e *Executor) allocUpdate(c *call, allocID, status string, started time.Time) {
	e.mu.Lock()
	if c.done || c.collecting {
		e.mu.Unlock()
		return
	}
	switch {
	case isTerminal(status):
		c.collecting = true
		e.mu.Unlock()
		e.spawn(func(ctx context.Context) { e.collectLoop(ctx, c, allocID) })
	case status == nomad.AllocClientStatusRunning && !c.running:
		c.running = true
		e.mu.Unlock()
		e.emit(executor.Event{CallID: c.id, Kind: executor.Running, Ref: c.child, StartedAt: started})
	default:
		e.mu.Unlock()
	}
}

func isTerminal(status string) bool {
	switch status {
	case nomad.AllocClientStatusComplete, nomad.AllocClientStatusFailed, nomad.AllocClientStatusLost:
		return true
	}
	return false
}

// recheckAll asks Nomad about every watched call, in the background.
func (e *Executor) recheckAll() {
	e.mu.Lock()
	cs := make([]*call, 0, len(e.calls))
	for _, c := range e.calls {
		if !c.collecting && !c.done {
			cs = append(cs, c)
		}
	}
	e.mu.Unlock()
	for _, c := range cs {
		e.spawn(func(ctx context.Context) { e.check(ctx, c) })
	}
}

// Recheck makes the watch loop re-check every watched call now.
func (e *Executor) Recheck() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// check reads the child's allocations once and acts on the latest.
func (e *Executor) check(ctx context.Context, c *call) {
	allocs, _, err := e.n.JobAllocations(ctx, c.child, 0, 0)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("re-check failed; the next re-check tries again", "call", c.id, "job", c.child, "err", err)
		}
		return
	}
	a := latest(allocs)
	if a == nil {
		job, err := e.n.JobInfo(ctx, c.child)
		if errors.Is(err, ErrNotFound) && e.finishCall(c) {
			e.emit(lostEvent(c, fmt.Sprintf("dispatched job %s is gone from Nomad and left no allocation", c.child)))
		} else if err == nil && deref(job.Stop) && !isWarmChild(c.child) && e.finishCall(c) {
			// Stopped while queued (a Cancel whose report failed after
			// the stop): it never gets an allocation. Canceled, as
			// Reconcile says of the same child (stoppedByCancel).
			e.emit(canceledEvent(c.id, c.child))
		}
		return
	}
	e.allocUpdate(c, a.ID, a.ClientStatus, startedAt(a.TaskStates))
}

// canceledEvent is a call's end once Cancel stopped its child.
func canceledEvent(callID, child string) executor.Event {
	return executor.Event{
		CallID: callID, Kind: executor.Failed, Ref: child,
		Reason: api.ReasonCancelled, Message: "canceled", EndedAt: time.Now(),
	}
}

func lostEvent(c *call, msg string) executor.Event {
	return executor.Event{
		CallID: c.id, Kind: executor.Failed, Ref: c.child,
		Reason: api.ReasonLost, Message: msg, EndedAt: time.Now(),
	}
}

// latest is the allocation created last (there is one: the child's
// reschedule policy allows none; a call dispatched again gets a new child).
func latest(as []*nomad.AllocationListStub) *nomad.AllocationListStub {
	if len(as) == 0 {
		return nil
	}
	sort.SliceStable(as, func(i, j int) bool { return as[i].CreateIndex > as[j].CreateIndex })
	return as[0]
}

func startedAt(ts map[string]*nomad.TaskState) time.Time {
	if s := ts[TaskName]; s != nil {
		return s.StartedAt
	}
	return time.Time{}
}

// collectLoop collects a terminal call, retrying while Nomad is unavailable,
// and reports it once. The child stays until Release: a leader that dies
// before recording the result leaves it for the next leader's Reconcile.
func (e *Executor) collectLoop(ctx context.Context, c *call, allocID string) {
	e.mu.Lock()
	warm := c.warm
	e.mu.Unlock()
	if warm && e.replaceUndelivered(ctx, c, allocID) {
		return
	}
	backoff := e.cfg.StreamBackoffMin
	var ev executor.Event
	for {
		rctx, cancel := context.WithTimeout(ctx, e.cfg.CollectTimeout)
		var err error
		ev, err = e.collect(rctx, c.id, c.child, allocID, c.stdoutLimit)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		var again *errDispatchedAgain
		if errors.As(err, &again) {
			e.moveTo(ctx, c, again.Child)
			return
		}
		if errors.Is(err, errNotTerminal) {
			// Back to watching: the stream's next event of the allocation,
			// or the re-check below, collects it once it really ended.
			e.log.Warn("collect: not ended after all; watching on", "call", c.id, "err", err)
			e.mu.Lock()
			c.collecting = false
			e.mu.Unlock()
			if sleep(ctx, backoff) {
				e.check(ctx, c)
			}
			return
		}
		if !IsUnavailable(err) {
			ev = lostEvent(c, "cannot read the result: "+err.Error())
			break
		}
		e.log.Warn("collect: nomad unavailable, retrying", "call", c.id, "err", err, "retry_in", backoff)
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(backoff*2, e.cfg.StreamBackoffMax)
	}
	if e.finishCall(c) {
		e.emit(ev)
	}
}
