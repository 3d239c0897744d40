package localexec

import (
	"context"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/shim"
)

// backstopGrace is how long past the function's timeout the executor lets
// the shim (which enforces the timeout itself: SIGTERM, then SIGKILL after
// shim.DefaultKillGrace) before it kills the container.
const backstopGrace = shim.DefaultKillGrace + 10*time.Second

type watchArgs struct {
	id          string // container ID
	dir         string // host call dir
	startedAt   time.Time
	timeout     time.Duration // the function's, for the message
	remaining   time.Duration // left of timeout; 0 means all of it
	limit       int64
	sendRunning bool
}

// watch follows one started container to its end, then collects its result
// from the call dir and sends the final event. The container and the dir
// stay until Release. Close of the executor leaves them to a later
// Reconcile.
func (e *Executor) watch(c *call, a watchArgs) {
	defer e.wg.Done()
	// Running goes out on its own goroutine, so a slow consumer delays no
	// timer; the final event waits for it to keep the order.
	runningSent := make(chan struct{})
	if a.sendRunning {
		go func() {
			defer close(runningSent)
			e.send(executor.Event{CallID: c.id, Kind: executor.Running, Ref: a.id, StartedAt: a.startedAt})
		}()
	} else {
		close(runningSent)
	}

	var timer <-chan time.Time
	if a.timeout > 0 {
		d := a.remaining
		if d <= 0 {
			d = a.timeout
		}
		t := time.NewTimer(d + backstopGrace)
		defer t.Stop()
		timer = t.C
	}
	if reason, _ := c.stopped(); reason != "" {
		// Stopped while it was being started: the kill then found nothing
		// running, so it is done here.
		e.kill(c, a.id)
	}
	engineErr := e.await(c, a, timer)
	if e.ctx.Err() != nil {
		return
	}
	ev := e.collect(e.ctx, c, target{callID: c.id, ref: a.id, dir: a.dir, limit: a.limit, timeout: a.timeout}, engineErr)
	if ev.StartedAt.IsZero() {
		ev.StartedAt = a.startedAt
	}
	<-runningSent
	e.send(ev)
	e.untrack(c)
}

// await waits until the container is no longer running, or until the
// shim's result is complete in the call dir (resultReady): the outcome is
// decided then, and the sandbox's teardown (a gVisor sandbox takes ~100 ms
// and more to go after its last process) need not delay the answer; the
// container goes at Release as always. An engine that
// stops answering is waited for (reconnecting) up to engineGrace, unless
// the call's result appears in its dir meanwhile; then await answers the
// engine's error. A container that is gone ends the wait too: collect says
// what it left.
func (e *Executor) await(c *call, a watchArgs, timer <-chan time.Time) error {
	var since time.Time
	backoff := 100 * time.Millisecond
	wctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	ready := watchResult(wctx, a.dir)
	for {
		waitC, errC := e.cli.ContainerWait(wctx, a.id, container.WaitConditionNotRunning)
		var err error
	wait:
		for {
			select {
			case <-timer:
				timer = nil
				e.stop(e.ctx, c, api.ReasonTimeout, fmt.Sprintf("timeout after %s", a.timeout))
			case <-ready:
				return nil
			case w := <-waitC:
				if w.Error == nil || w.Error.Message == "" {
					return nil
				}
				err = fmt.Errorf("wait: %s", w.Error.Message)
				break wait
			case err = <-errC:
				break wait
			}
		}
		switch {
		case e.ctx.Err() != nil:
			return e.ctx.Err()
		case cerrdefs.IsNotFound(err), hasResult(a.dir):
			return nil
		}
		if since.IsZero() {
			since = time.Now()
			e.log.Warn("lost the docker engine while a call runs; waiting for it", "call", c.id, "err", err)
		}
		if time.Since(since) > e.engineGrace {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ready:
			t.Stop()
			return nil
		case <-e.ctx.Done():
			t.Stop()
			return e.ctx.Err()
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// kill sends SIGKILL to a call's container; one that is not running (any
// more) is not an error.
func (e *Executor) kill(c *call, id string) {
	if err := e.cli.ContainerKill(e.ctx, id, "KILL"); err != nil && !cerrdefs.IsConflict(err) && !cerrdefs.IsNotFound(err) {
		e.log.Warn("kill container", "call", c.id, "container", id, "err", err)
	}
}
