package localexec

import (
	"context"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
)

// Reconcile answers what became of calls after a restart or a leader change.
// A running container is watched again (its outcome comes through Events),
// an exited one is collected and removed, a missing one is NotFound when it
// was never confirmed started (Ref empty) and lost otherwise. An engine that
// does not answer is an error: the caller retries rather than guessing.
func (e *Executor) Reconcile(ctx context.Context, hs []executor.Handle) ([]executor.Event, error) {
	out := make([]executor.Event, 0, len(hs))
	for _, h := range hs {
		ev, err := e.reconcile(ctx, h)
		if err != nil {
			return nil, fmt.Errorf("reconcile %s: %w: %w", h.CallID, executor.ErrUnavailable, err)
		}
		out = append(out, ev)
	}
	return out, nil
}

func (e *Executor) reconcile(ctx context.Context, h executor.Handle) (executor.Event, error) {
	c, existed := e.track(h.CallID)
	if existed {
		// Ours, live in this process: its watcher reports the outcome.
		select {
		case <-c.ready:
		case <-ctx.Done():
			return executor.Event{}, ctx.Err()
		}
		switch {
		case c.h.Ref != "":
			return executor.Event{CallID: h.CallID, Kind: executor.Running, Ref: c.h.Ref}, nil
		case h.Ref == "": // its Start failed or refused it: it never ran
			return executor.Event{CallID: h.CallID, Kind: executor.NotFound}, nil
		}
		return executor.Event{CallID: h.CallID, Kind: executor.Failed, Ref: h.Ref, Reason: api.ReasonLost,
			Message: "call " + h.CallID + " has no container here"}, nil
	}
	ins, err := e.inspectCall(ctx, h)
	if cerrdefs.IsNotFound(err) || (err == nil && ins.State != nil && ins.State.Status == "created") {
		if err == nil { // created, never started: it never ran
			e.removeNow(ins.ID)
		}
		c.decide(executor.Handle{}, ErrNoSuchCall)
		e.untrack(c)
		if h.Ref == "" {
			return executor.Event{CallID: h.CallID, Kind: executor.NotFound}, nil
		}
		return executor.Event{
			CallID: h.CallID, Kind: executor.Failed, Ref: h.Ref, Reason: api.ReasonLost,
			Message: fmt.Sprintf("container %s of the call is gone (engine restarted or container removed)", h.Ref),
		}, nil
	}
	if err != nil {
		c.decide(executor.Handle{}, err)
		e.untrack(c)
		return executor.Event{}, err
	}
	c.setRef(ins.ID)
	c.decide(executor.Handle{CallID: h.CallID, Ref: ins.ID}, nil)
	return e.adopt(ctx, c, ins, false)
}

// inspectCall finds a call's container by its name, then by the handle's Ref.
func (e *Executor) inspectCall(ctx context.Context, h executor.Handle) (container.InspectResponse, error) {
	ins, err := e.cli.ContainerInspect(ctx, containerName(h.CallID))
	if cerrdefs.IsNotFound(err) && h.Ref != "" {
		ins, err = e.cli.ContainerInspect(ctx, h.Ref)
	}
	if err != nil {
		return ins, err
	}
	if ins.Config == nil || ins.Config.Labels[executor.LabelCall] != h.CallID {
		return ins, fmt.Errorf("container %s is not the call's: %w", ins.ID, cerrdefs.ErrNotFound)
	}
	return ins, nil
}

// adopt takes over a started container that no watcher follows. Running:
// follow its logs to the end, like a fresh call. Ended: collect its result
// and remove it. With viaEvents the outcome also goes out on Events (Start,
// Cancel); otherwise it is only returned (Reconcile).
func (e *Executor) adopt(ctx context.Context, c *call, ins container.InspectResponse, viaEvents bool) (executor.Event, error) {
	if ins.State != nil && (ins.State.Running || ins.State.Restarting) {
		rc, err := e.cli.ContainerLogs(e.ctx, ins.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: true})
		if err != nil {
			e.untrack(c)
			return executor.Event{}, fmt.Errorf("follow logs of %s: %w", ins.ID, err)
		}
		started := parseTime(ins.State.StartedAt)
		a := watchArgs{
			id: ins.ID, stream: rc, closeStream: func() { _ = rc.Close() },
			startedAt: started, limit: labelInt(ins, labelStdoutLimit, DefaultStdoutLimit),
			sendRunning: viaEvents, recollect: true,
		}
		if d, err := time.ParseDuration(ins.Config.Labels[labelTimeout]); err == nil && d > 0 {
			a.timeout = d
			a.remaining = max(d-time.Since(started), time.Millisecond)
		}
		e.wg.Add(1)
		go e.watch(c, a)
		return executor.Event{CallID: c.id, Kind: executor.Running, Ref: ins.ID, StartedAt: started}, nil
	}
	ev, err := e.collect(ctx, c.id, ins)
	if err != nil {
		e.untrack(c)
		return executor.Event{}, err
	}
	if viaEvents {
		e.sendAsync(ev)
	}
	e.removeNow(ins.ID)
	e.untrack(c)
	return ev, nil
}

// Cancel stops a call; its Failed event (Reason canceled) follows on
// Events. A call whose container already ended reports its own outcome.
func (e *Executor) Cancel(ctx context.Context, h executor.Handle) error {
	if c := e.lookup(h.CallID); c != nil {
		e.stop(ctx, c, api.ReasonCancelled, "canceled")
		return nil
	}
	// Not watched here (a previous process started it): adopt, then stop.
	ins, err := e.inspectCall(ctx, h)
	if cerrdefs.IsNotFound(err) {
		return fmt.Errorf("cancel %s: %w", h.CallID, ErrNoSuchCall)
	}
	if err != nil {
		return fmt.Errorf("cancel %s: %w", h.CallID, err)
	}
	c, existed := e.track(h.CallID)
	if existed {
		e.stop(ctx, c, api.ReasonCancelled, "canceled")
		return nil
	}
	c.setRef(ins.ID)
	c.decide(executor.Handle{CallID: h.CallID, Ref: ins.ID}, nil)
	if ins.State != nil && ins.State.Status == "created" {
		e.removeNow(ins.ID)
		e.untrack(c)
		e.sendAsync(executor.Event{CallID: h.CallID, Kind: executor.Failed, Ref: ins.ID, Reason: api.ReasonCancelled, Message: "canceled"})
		return nil
	}
	if _, err := e.adopt(ctx, c, ins, true); err != nil {
		return fmt.Errorf("cancel %s: %w", h.CallID, err)
	}
	e.stop(ctx, c, api.ReasonCancelled, "canceled")
	return nil
}

// CleanOrphans removes managed containers whose call is neither watched
// here nor wanted by keep (the server's record of STARTING/RUNNING calls).
// It answers how many it removed.
func (e *Executor) CleanOrphans(ctx context.Context, keep func(callID string) bool) (int, error) {
	list, err := e.cli.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", executor.LabelManaged+"=true")),
	})
	if err != nil {
		return 0, fmt.Errorf("list containers: %w", err)
	}
	n := 0
	for _, s := range list {
		id := s.Labels[executor.LabelCall]
		if e.lookup(id) != nil || (keep != nil && keep(id)) {
			continue
		}
		if err := e.cli.ContainerRemove(ctx, s.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			return n, fmt.Errorf("remove orphan %s: %w", s.ID, err)
		}
		n++
	}
	return n, nil
}
