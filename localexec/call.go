package localexec

import (
	"context"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/hyperfunc/hyperfunc/executor"
)

// call is a call this executor is starting or watching. It stays tracked
// until its final event is sent, so a second Start or a Reconcile of the
// same call meanwhile finds it instead of touching the container again.
type call struct {
	id    string
	ready chan struct{} // closed once the first Start decided: handle, err
	h     executor.Handle
	err   error

	mu     sync.Mutex
	ref    string // container ID, once created
	warm   bool   // it runs in a warm sandbox
	reason string // why we stopped it (api.Reason*); "" if it ended on its own
	msg    string
}

func (c *call) setRef(ref string) {
	c.mu.Lock()
	c.ref = ref
	c.mu.Unlock()
}

func (c *call) stopped() (reason, msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason, c.msg
}

// stop records why the call is being ended and kills its container. The
// first reason wins (a timeout that fires after a cancel does not rename it).
// A container that already exited on its own keeps its own outcome.
func (e *Executor) stop(ctx context.Context, c *call, reason, msg string) {
	c.mu.Lock()
	if c.reason != "" {
		c.mu.Unlock()
		return
	}
	c.reason, c.msg = reason, msg
	ref := c.ref
	c.mu.Unlock()
	if ref == "" {
		return // not created yet: start sees the reason and never runs it
	}
	err := e.cli.ContainerKill(ctx, ref, "KILL")
	if err != nil && cerrdefs.IsConflict(err) { // "is not running"
		// Not started yet: the reason stays and the watcher kills it as it
		// starts. Already exited: it ended first and keeps its own outcome.
		if ins, ierr := e.cli.ContainerInspect(ctx, ref); ierr == nil && ins.State != nil && ins.State.Status != "created" {
			c.mu.Lock()
			if c.reason == reason {
				c.reason, c.msg = "", ""
			}
			c.mu.Unlock()
		}
	} else if err != nil && !cerrdefs.IsNotFound(err) {
		e.log.Warn("kill container", "call", c.id, "container", ref, "err", err)
	}
}

// track returns the call's record, creating it if new.
func (e *Executor) track(id string) (c *call, existed bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.calls[id]; ok {
		return c, true
	}
	c = &call{id: id, ready: make(chan struct{})}
	e.calls[id] = c
	return c, false
}

func (e *Executor) lookup(id string) *call {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls[id]
}

func (e *Executor) untrack(c *call) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.calls[c.id] == c {
		delete(e.calls, c.id)
	}
}

// decide publishes the outcome of the first Start to later Starts.
func (c *call) decide(h executor.Handle, err error) {
	c.h, c.err = h, err
	close(c.ready)
}
