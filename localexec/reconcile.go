package localexec

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
)

// Reconcile answers what became of calls after a restart or a leader change.
// A running container is watched again (its outcome comes through Events);
// a created one never started, and since its input is on disk it is started
// now and watched; an exited one is collected. Without a container, a call
// dir holding result.json is collected from the dir; otherwise the call is
// NotFound when it was never confirmed started (Ref empty, and its shim
// never claimed the dir) and lost otherwise. Nothing is removed: Release
// does that once the outcome is recorded. An engine that does not answer is
// an error: the caller retries rather than guessing.
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
	if cerrdefs.IsNotFound(err) {
		c.decide(executor.Handle{}, ErrNoSuchCall)
		e.untrack(c)
		dir := ""
		if validCallID.MatchString(h.CallID) {
			dir = e.callDir(h.CallID)
		}
		switch {
		case dir != "" && hasResult(dir):
			// It ended and its container went (removed by hand, or the
			// engine lost it): the result is in the dir.
			limit, timeout := dirSpec(dir)
			return e.collect(ctx, nil, target{callID: h.CallID, ref: h.Ref, dir: dir, limit: limit, timeout: timeout}, nil), nil
		case h.Ref == "" && (dir == "" || !claimed(dir)):
			return executor.Event{CallID: h.CallID, Kind: executor.NotFound}, nil
		}
		ref := h.Ref
		if ref == "" {
			ref = containerName(h.CallID)
		}
		return executor.Event{
			CallID: h.CallID, Kind: executor.Failed, Ref: h.Ref, Reason: api.ReasonLost,
			Message: fmt.Sprintf("container %s of the call is gone and left no result (engine restarted or container removed)", ref),
		}, nil
	}
	if err != nil {
		c.decide(executor.Handle{}, err)
		e.untrack(c)
		return executor.Event{}, err
	}
	if t := targetOf(h.CallID, ins); isWarm(ins.Config.Labels) && !hasEnvelope(t.dir) {
		// A warm sandbox claimed for this call by a leader that died before
		// it wrote the envelope. Claim its dir as the shim would: if that
		// works, it never runs anything, so it goes and the call is
		// NotFound (started again). Else the envelope came meanwhile and
		// the shim runs it: watch it.
		if won, err := claimNew(t.dir); err == nil && won {
			c.decide(executor.Handle{}, ErrNoSuchCall)
			e.untrack(c)
			if err := e.cli.ContainerRemove(ctx, ins.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
				return executor.Event{}, err
			}
			if err := removeCallDir(t.dir); err != nil {
				return executor.Event{}, err
			}
			return executor.Event{CallID: h.CallID, Kind: executor.NotFound}, nil
		}
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
	if ins.Config == nil || !callContainer(ins, h.CallID) {
		return ins, fmt.Errorf("container %s is not the call's: %w", ins.ID, cerrdefs.ErrNotFound)
	}
	return ins, nil
}

// callContainer says whether ins runs callID: a cold container carries the
// call's label; a warm one, booted before its call, was renamed to the
// call's name when it was claimed.
func callContainer(ins container.InspectResponse, callID string) bool {
	if isWarm(ins.Config.Labels) {
		return ins.Name == "/"+containerName(callID)
	}
	return ins.Config.Labels[executor.LabelCall] == callID
}

// adopt takes over a container that no watcher follows. Created (a leader
// died between create and start): start it, its input is on disk. Running:
// watch it. Ended: collect its result. With viaEvents the outcome also goes
// out on Events (Start, Cancel); otherwise it is only returned (Reconcile).
func (e *Executor) adopt(ctx context.Context, c *call, ins container.InspectResponse, viaEvents bool) (executor.Event, error) {
	t := targetOf(c.id, ins)
	status := ""
	if ins.State != nil {
		status = ins.State.Status
	}
	if status == "created" {
		if reason, msg := c.stopped(); reason != "" {
			ev := executor.Event{CallID: c.id, Kind: executor.Failed, Ref: ins.ID, Reason: reason, Message: msg}
			if viaEvents {
				e.sendAsync(ev)
			}
			e.untrack(c)
			return ev, nil
		}
		started, err := e.startContainer(ctx, ins.ID)
		if err != nil || !started {
			if err == nil {
				err = errors.New("still created after start")
			}
			if engineDown(ctx, err) {
				e.untrack(c)
				return executor.Event{}, fmt.Errorf("start container %s: %w", ins.ID, err)
			}
			// The engine refuses to start it (its call dir is gone, say).
			ev := executor.Event{CallID: c.id, Kind: executor.Failed, Ref: ins.ID, Reason: api.ReasonLost,
				Message: fmt.Sprintf("starting the container of the call after a leader change: %v", err)}
			if viaEvents {
				e.sendAsync(ev)
			}
			e.untrack(c)
			return ev, nil
		}
		now := time.Now()
		e.wg.Add(1)
		go e.watch(c, watchArgs{id: ins.ID, dir: t.dir, startedAt: now, timeout: t.timeout, limit: t.limit, sendRunning: viaEvents})
		return executor.Event{CallID: c.id, Kind: executor.Running, Ref: ins.ID, StartedAt: now}, nil
	}
	// Running, unless its result is complete (the watcher collected it
	// before the sandbox's teardown ended): then it is collected now.
	if ins.State != nil && (ins.State.Running || ins.State.Restarting || ins.State.Paused) && !resultReady(t.dir) {
		started := parseTime(ins.State.StartedAt)
		a := watchArgs{id: ins.ID, dir: t.dir, startedAt: started, timeout: t.timeout, limit: t.limit, sendRunning: viaEvents}
		if t.timeout > 0 {
			a.remaining = max(t.timeout-time.Since(started), time.Millisecond)
		}
		e.wg.Add(1)
		go e.watch(c, a)
		return executor.Event{CallID: c.id, Kind: executor.Running, Ref: ins.ID, StartedAt: started}, nil
	}
	ev := e.collect(ctx, c, t, nil)
	if viaEvents {
		e.sendAsync(ev)
	}
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
		// It never ran. Claim its dir so that its shim never runs it, even
		// if a leader that knows nothing of this cancel starts it.
		if t := targetOf(h.CallID, ins); isCallDir(t.dir, h.CallID) {
			if err := claimDir(t.dir); err != nil {
				e.log.Warn("claiming the dir of a canceled call", "call", h.CallID, "err", err)
			}
		}
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

// ownContainers lists the containers, running or not, that carry label
// ("key" or "key=value") and this cluster's and this executor's labels:
// another cluster, or Nomad's docker driver, may share the engine.
func (e *Executor) ownContainers(ctx context.Context, label string) ([]container.Summary, error) {
	list, err := e.cli.ContainerList(ctx, container.ListOptions{
		All: true,
		Filters: filters.NewArgs(
			filters.Arg("label", label),
			filters.Arg("label", executor.LabelCluster+"="+e.clusterID),
			filters.Arg("label", executor.LabelExecutor+"="+executorName),
		),
	})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	return list, nil
}

// CleanOrphans removes the containers and call dirs of calls that are
// neither watched here nor wanted by keep, among this cluster's containers
// of this executor only (labels: another cluster, or Nomad's docker driver,
// may share the engine) (the server keeps every call it
// does not know to have ended). It answers how many calls it cleaned.
func (e *Executor) CleanOrphans(ctx context.Context, keep func(callID string) bool) (int, error) {
	list, err := e.ownContainers(ctx, executor.LabelManaged+"=true")
	if err != nil {
		return 0, err
	}
	drop := func(id string) bool {
		return validCallID.MatchString(id) && e.lookup(id) == nil && (keep == nil || !keep(id))
	}
	n := 0
	cleaned := map[string]bool{}
	for _, s := range list {
		id, dir := s.Labels[executor.LabelCall], s.Labels[labelCallDir]
		if isWarm(s.Labels) {
			// Unclaimed sandboxes are the pools' (SetWarm); claimed ones
			// are named after their call.
			name := ""
			if len(s.Names) > 0 {
				name = strings.TrimPrefix(s.Names[0], "/")
			}
			if strings.HasPrefix(name, warmNamePrefix) || !strings.HasPrefix(name, "hf-") {
				continue
			}
			id = strings.TrimPrefix(name, "hf-")
			dir = warmCallDir(s.Labels, id)
		}
		if !drop(id) {
			continue
		}
		if err := e.cli.ContainerRemove(ctx, s.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			return n, fmt.Errorf("remove orphan %s: %w", s.ID, err)
		}
		if isCallDir(dir, id) {
			if err := removeCallDir(dir); err != nil {
				return n, fmt.Errorf("remove orphan dir: %w", err)
			}
		}
		cleaned[id] = true
		n++
	}
	entries, err := os.ReadDir(e.stateDir)
	if err != nil {
		return n, fmt.Errorf("list call dirs: %w", err)
	}
	for _, d := range entries {
		id := d.Name()
		if !d.IsDir() || !drop(id) {
			continue
		}
		if err := removeCallDir(e.callDir(id)); err != nil {
			return n, fmt.Errorf("remove orphan dir: %w", err)
		}
		if !cleaned[id] {
			n++
		}
	}
	return n, nil
}

// RemoveContainers removes every container of this cluster on the engine:
// calls and warm sandboxes alike. It is for an agent whose state dir goes
// with it (-dev's temporary data dir): no later leader could ever collect
// or claim them, so they would run on forever.
func (e *Executor) RemoveContainers(ctx context.Context) (int, error) {
	list, err := e.ownContainers(ctx, executor.LabelManaged+"=true")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range list {
		if err := e.cli.ContainerRemove(ctx, s.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			return n, fmt.Errorf("remove %s: %w", s.ID, err)
		}
		n++
	}
	return n, nil
}
