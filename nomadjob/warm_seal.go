package nomadjob

import (
	"context"
	"errors"
	"time"

	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/shim"
)

// A warm call of a sealed function (sealAs) is read as soon as its shim
// has sealed the sandbox (shim/seal.go): every process of the function is
// dead, so alloc/data cannot change between checkAllocFiles and the reads
// that follow it, and the call does not wait for gVisor's teardown and the
// Nomad client's batched update (~0.4-0.6 s). The seal is read from the
// task's stdout log, which logmon writes on the host in alloc/logs: the
// task sees a tmpfs there (jobspec.go), and the function cannot write to
// the shim's stdout (another uid). A sandbox that prints no seal (the
// function left a process that would not die, the log lost the line) is
// collected at its end, as a cold call.

// errNoResult: a sealed sandbox left no readable result.json.
var errNoResult = errors.New("no readable result.json")

// sealPoll is how long a claimed warm call's watch waits between looks
// for its seal, after elapsed since the claim: a warm call takes tens of
// milliseconds, a long one is looked at less often.
func sealPoll(elapsed time.Duration) time.Duration {
	switch {
	case elapsed < time.Second:
		// Each look is an fs/logs request to the client: 100 per second
		// for a call's first second, not 200 (the review's measure of
		// load); ~2.5 ms more on average.
		return 10 * time.Millisecond
	case elapsed < 10*time.Second:
		return 50 * time.Millisecond
	}
	return 250 * time.Millisecond
}

// sealedBy reports whether the task's stdout log is exactly the seal of
// callID (the shim prints nothing else there).
func (e *Executor) sealedBy(ctx context.Context, allocID, callID string) bool {
	want := shim.SealLine(callID)
	b, err := e.n.Logs(ctx, allocID, TaskName, "stdout", int64(len(want)))
	return err == nil && string(b) == want
}

// collectSealed reads and reports a sealed warm call; false when it could
// not (the watch collects it at the allocation's end).
func (e *Executor) collectSealed(ctx context.Context, c *call, allocID string) bool {
	rctx, cancel := context.WithTimeout(ctx, e.cfg.CollectTimeout)
	defer cancel()
	ev, err := e.readSealed(rctx, c, allocID)
	if err != nil {
		e.log.Warn("warm call: reading its sealed sandbox failed; collecting it at the allocation's end", "call", c.id, "alloc", allocID, "err", err)
		return false
	}
	if e.finishCall(c) {
		e.emit(ev)
	}
	return true
}

// readSealed is collect for a sealed, still running allocation:
// result.json, stdout and the shim's stderr preview from alloc/data, after
// the same check of the directories.
func (e *Executor) readSealed(ctx context.Context, c *call, allocID string) (executor.Event, error) {
	if ev, err := e.refuseUnsafe(ctx, c.id, c.child, allocID); err != nil {
		return executor.Event{}, err
	} else if ev != nil {
		return *ev, nil
	}
	alloc, err := e.n.Allocation(ctx, allocID)
	if err != nil {
		return executor.Event{}, err
	}
	res, stdout, err := e.readResult(ctx, allocID, c.stdoutLimit)
	if err != nil {
		return executor.Event{}, err
	}
	if res == nil {
		return executor.Event{}, errNoResult
	}
	ev := Outcome(alloc, res, stdout, c.stdoutLimit)
	ev.CallID, ev.Ref = c.id, c.child
	b, ok, err := e.shimStderr(ctx, allocID)
	if err != nil {
		return executor.Event{}, err
	}
	if ok {
		ev.Stderr = preview(b)
	}
	return ev, nil
}

// shimStderr reads the stderr preview the shim kept in alloc/data
// (Envelope.StderrPreview); ok false: there is none (a shim that kept
// none, a task that never started). Call it after refuseUnsafe.
func (e *Executor) shimStderr(ctx context.Context, allocID string) ([]byte, bool, error) {
	path := "alloc/data/" + shim.StderrFile
	if ok, err := e.exists(ctx, allocID, path); err != nil || !ok {
		return nil, false, err
	}
	b, err := e.n.Cat(ctx, allocID, path, executor.StderrPreviewBytes)
	if err != nil {
		return nil, false, err
	}
	return b, true, nil
}
