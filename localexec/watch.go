package localexec

import (
	"context"
	"fmt"
	"io"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
)

// streamGrace bounds the wait for the output stream to end once the
// container exited; the engine closes it right after flushing.
const streamGrace = 15 * time.Second

type watchArgs struct {
	id          string
	stream      io.Reader // multiplexed stdout/stderr: attach, or logs --follow
	closeStream func()
	startedAt   time.Time
	timeout     time.Duration // the function's, for the message
	remaining   time.Duration // left of timeout; 0 means all of it
	limit       int64
	sendRunning bool
	// recollect: read the result from the logs once the container exited.
	// A logs --follow stream (adopted containers) may end before its last
	// bytes on this engine; it serves only to enforce the cap meanwhile.
	recollect bool
}

// watch follows one running container to its end: it caps stdout (killing
// the container past the limit), enforces the timeout, sends the events,
// and removes the container once its result is out. Close of the executor
// leaves the container alone for a later Reconcile.
func (e *Executor) watch(c *call, a watchArgs) {
	defer e.wg.Done()
	stdout := &capped{limit: a.limit}
	stdout.over = func() {
		// Kill off the copy goroutine: it keeps draining meanwhile.
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.stop(e.ctx, c, api.ReasonOutput, outputMessage(a.limit))
		}()
	}
	stderr := &capped{limit: executor.StderrPreviewBytes}
	copied := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(stdout, stderr, a.stream)
		copied <- err
	}()

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

	waitC, errC := e.cli.ContainerWait(e.ctx, a.id, container.WaitConditionNotRunning)
	if reason, _ := c.stopped(); reason != "" {
		// Stopped while it was being started: the kill then found nothing
		// running, so it is done here.
		if err := e.cli.ContainerKill(e.ctx, a.id, "KILL"); err != nil && !cerrdefs.IsConflict(err) && !cerrdefs.IsNotFound(err) {
			e.log.Warn("kill container", "call", c.id, "container", a.id, "err", err)
		}
	}
	var timer <-chan time.Time
	if a.timeout > 0 {
		d := a.remaining
		if d <= 0 {
			d = a.timeout
		}
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	var (
		exit int64
		lost error
	)
wait:
	for {
		select {
		case <-timer:
			timer = nil
			e.stop(e.ctx, c, api.ReasonTimeout, fmt.Sprintf("timeout after %s", a.timeout))
		case w := <-waitC:
			exit = w.StatusCode
			if w.Error != nil && w.Error.Message != "" {
				lost = fmt.Errorf("wait: %s", w.Error.Message)
			}
			break wait
		case err := <-errC:
			if e.ctx.Err() != nil {
				a.closeStream()
				<-copied
				return
			}
			lost = err
			break wait
		}
	}
	endedAt := time.Now()
	if lost == nil {
		select {
		case err := <-copied:
			if err != nil && e.ctx.Err() == nil {
				lost = fmt.Errorf("reading output: %w", err)
			}
		case <-time.After(streamGrace):
			lost = fmt.Errorf("output stream did not end %s after the container exited", streamGrace)
		case <-e.ctx.Done():
		}
	}
	a.closeStream()
	if e.ctx.Err() != nil {
		return
	}
	out, truncated := stdout.result()
	errPreview, _ := stderr.result()
	ev := executor.Event{
		CallID: c.id, Ref: a.id, ExitCode: int(exit),
		Stdout: out, Truncated: truncated, Stderr: string(errPreview),
		StartedAt: a.startedAt, EndedAt: endedAt,
	}
	if lost != nil {
		ev.Kind, ev.Reason = executor.Failed, api.ReasonLost
		ev.Message = fmt.Sprintf("lost the docker engine during the call: %v", lost)
	} else {
		reason, msg := c.stopped()
		if reason == "" && exit == 137 {
			msg = e.oomMessage(a.id)
			if msg != "" {
				reason = api.ReasonExit
			}
		}
		ev = outcome(ev, a.limit, reason, msg)
	}
	if lost == nil && a.recollect {
		ev = e.recollect(c, ev, a.limit)
	}
	<-runningSent
	e.send(ev)
	e.remove(a.id)
	e.untrack(c)
}

// oomMessage explains an exit 137 that the kernel's OOM killer caused.
func (e *Executor) oomMessage(id string) string {
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	ins, err := e.cli.ContainerInspect(ctx, id)
	if err != nil || ins.State == nil || !ins.State.OOMKilled {
		return ""
	}
	mem := ""
	if ins.HostConfig != nil && ins.HostConfig.Memory > 0 {
		mem = fmt.Sprintf(" (limit %s)", limitText(ins.HostConfig.Memory))
	}
	return "exit code 137: out of memory" + mem
}

// recollect replaces a followed result by the one in the container's logs.
// The reason this executor stopped it still wins.
func (e *Executor) recollect(c *call, followed executor.Event, limit int64) executor.Event {
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	ins, err := e.cli.ContainerInspect(ctx, followed.Ref)
	if err != nil {
		followed.Kind, followed.Reason = executor.Failed, api.ReasonLost
		followed.Message = fmt.Sprintf("inspect after exit: %v", err)
		return followed
	}
	ev, _, reason, msg, err := e.collectRaw(ctx, c.id, ins)
	if err != nil {
		followed.Kind, followed.Reason = executor.Failed, api.ReasonLost
		followed.Message = fmt.Sprintf("collect after exit: %v", err)
		return followed
	}
	if r, m := c.stopped(); r != "" {
		reason, msg = r, m
	}
	return outcome(ev, limit, reason, msg)
}
