package localexec

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
)

// Labels of our own, beside executor.Label*: what a collector needs to judge
// a container's result after a crash lost the call's spec.
const (
	labelStdoutLimit = "io.hyperfunc.stdout-limit" // bytes
	labelTimeout     = "io.hyperfunc.timeout"      // Go duration, "" for none
)

// containerName is deterministic so that the engine itself refuses a second
// container for the same call (name conflict), even across restarts.
func containerName(callID string) string { return "hf-" + callID }

// Start runs the call in a new container and returns once it runs. A call
// already started (by this executor, or by a previous one on this engine)
// gets its existing handle back and is never run again.
func (e *Executor) Start(ctx context.Context, spec executor.Spec) (executor.Handle, error) {
	if spec.CallID == "" {
		return executor.Handle{}, errors.New("localexec: call without ID")
	}
	if err := validateFunction(spec.Function); err != nil {
		return executor.Handle{}, err
	}
	c, existed := e.track(spec.CallID)
	if existed {
		select {
		case <-c.ready:
			return c.h, c.err
		case <-ctx.Done():
			return executor.Handle{}, fmt.Errorf("start %s: %w", spec.CallID, ctx.Err())
		}
	}
	h, err := e.start(ctx, c, spec)
	if err != nil {
		// Whatever failed here, nothing ran (errors of the call itself end
		// it through a Failed event instead): the dispatcher may retry.
		err = fmt.Errorf("%w: %w", executor.ErrUnavailable, err)
	}
	c.decide(h, err)
	if err != nil || h.Ref == "" {
		// Nothing runs: forget the call so a retried Start may run it.
		e.untrack(c)
	}
	return h, err
}

// refuse ends a call that never ran with a Failed event; Start still
// answers with a handle, so the dispatcher learns the outcome through Events
// like any other.
func (e *Executor) refuse(spec executor.Spec, reason string, err error) (executor.Handle, error) {
	now := time.Now()
	e.sendAsync(executor.Event{
		CallID: spec.CallID, Kind: executor.Failed, Reason: reason, Message: err.Error(),
		StartedAt: now, EndedAt: now,
	})
	return executor.Handle{CallID: spec.CallID}, nil
}

// engineDown tells errors worth a retry of Start (the engine or the caller
// went away) from errors of the call itself (bad image, bad command).
func engineDown(ctx context.Context, err error) bool {
	return ctx.Err() != nil || client.IsErrConnectionFailed(err) || errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded)
}

func (e *Executor) start(ctx context.Context, c *call, spec executor.Spec) (executor.Handle, error) {
	rt, err := e.detectRuntime(ctx)
	if err != nil {
		return executor.Handle{}, err
	}
	img := spec.Function.Image
	if err := e.ensureImage(ctx, img); err != nil {
		if engineDown(ctx, err) {
			return executor.Handle{}, err
		}
		return e.refuse(spec, api.ReasonImage, err)
	}
	cfg, hc := containerSpec(spec, rt)
	created, err := e.cli.ContainerCreate(ctx, cfg, hc, nil, nil, containerName(spec.CallID))
	if err != nil && cerrdefs.IsNotFound(err) {
		// Our cache said present, but the image was removed since: pull again.
		e.images.set(img, false)
		if err := e.ensureImage(ctx, img); err != nil {
			if engineDown(ctx, err) {
				return executor.Handle{}, err
			}
			return e.refuse(spec, api.ReasonImage, err)
		}
		created, err = e.cli.ContainerCreate(ctx, cfg, hc, nil, nil, containerName(spec.CallID))
	}
	if err != nil && cerrdefs.IsConflict(err) {
		return e.startExisting(ctx, c, spec, cfg, hc)
	}
	if err != nil {
		if engineDown(ctx, err) {
			return executor.Handle{}, fmt.Errorf("create container: %w", err)
		}
		return e.refuse(spec, api.ReasonExecutor, fmt.Errorf("create container: %w", err))
	}
	return e.run(ctx, c, spec, created.ID)
}

// startExisting handles a name conflict: a container for this call exists
// already, left by an earlier executor on this engine. One that ran (or
// runs) is watched, never started again; one that was only created never ran
// and is replaced.
func (e *Executor) startExisting(ctx context.Context, c *call, spec executor.Spec, cfg *container.Config, hc *container.HostConfig) (executor.Handle, error) {
	ins, err := e.cli.ContainerInspect(ctx, containerName(spec.CallID))
	if err != nil {
		return executor.Handle{}, fmt.Errorf("inspect existing container: %w", err)
	}
	if ins.State == nil || ins.State.Status != "created" {
		c.setRef(ins.ID)
		if _, err := e.adopt(ctx, c, ins, true); err != nil {
			return executor.Handle{}, err
		}
		return executor.Handle{CallID: spec.CallID, Ref: ins.ID}, nil
	}
	if err := e.cli.ContainerRemove(ctx, ins.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return executor.Handle{}, fmt.Errorf("remove stale container %s: %w", ins.ID, err)
	}
	created, err := e.cli.ContainerCreate(ctx, cfg, hc, nil, nil, containerName(spec.CallID))
	if err != nil {
		return executor.Handle{}, fmt.Errorf("create container: %w", err)
	}
	return e.run(ctx, c, spec, created.ID)
}

// run attaches to a created container, starts it and hands it to a watcher.
func (e *Executor) run(ctx context.Context, c *call, spec executor.Spec, id string) (executor.Handle, error) {
	c.setRef(id)
	h := executor.Handle{CallID: spec.CallID, Ref: id}
	// Attach before start, so not a byte of output is missed. The stream
	// lives on the executor's context: it outlasts this Start.
	att, err := e.cli.ContainerAttach(e.ctx, id, container.AttachOptions{
		Stream: true, Stdin: true, Stdout: true, Stderr: true,
	})
	if err != nil {
		e.removeNow(id)
		return executor.Handle{}, fmt.Errorf("attach container: %w", err)
	}
	if reason, msg := c.stopped(); reason != "" { // canceled while we created it
		att.Close()
		e.removeNow(id)
		return e.refuse(spec, reason, errors.New(msg))
	}
	if err := e.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		// A start that timed out on our side may have started it anyway:
		// then it is watched like any other, never started again.
		ins, ierr := e.cli.ContainerInspect(e.ctx, id)
		if ierr != nil || ins.State == nil || ins.State.Status == "created" {
			att.Close()
			e.removeNow(id)
			if engineDown(ctx, err) {
				return executor.Handle{}, fmt.Errorf("start container: %w", err)
			}
			return e.refuse(spec, api.ReasonImage, fmt.Errorf("start container: %w", err))
		}
	}
	limit := spec.StdoutLimit
	if limit <= 0 {
		limit = DefaultStdoutLimit
	}
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		// A command that exits without reading its stdin makes this write
		// fail; that is its right, not an error of the call.
		if len(spec.Stdin) > 0 {
			_, _ = att.Conn.Write(spec.Stdin)
		}
		_ = att.CloseWrite()
	}()
	go e.watch(c, watchArgs{
		id:          id,
		stream:      att.Reader,
		closeStream: att.Close,
		startedAt:   time.Now(),
		timeout:     spec.Function.Timeout,
		limit:       limit,
		sendRunning: true,
	})
	return h, nil
}

// containerSpec is the container of one call: no network, no privileges,
// the function's resources, and a binary-safe log driver so that the output
// can still be collected from the logs after a crash of this process.
func containerSpec(spec executor.Spec, rt string) (*container.Config, *container.HostConfig) {
	fn := spec.Function
	limit := spec.StdoutLimit
	if limit <= 0 {
		limit = DefaultStdoutLimit
	}
	timeout := ""
	if fn.Timeout > 0 {
		timeout = fn.Timeout.String()
	}
	cfg := &container.Config{
		Image:      fn.Image,
		Cmd:        fn.Command,
		WorkingDir: fn.Workdir,
		Env:        envList(spec.Env),
		Labels: map[string]string{
			executor.LabelCall:     spec.CallID,
			executor.LabelFunction: fn.ID,
			executor.LabelManaged:  "true",
			labelStdoutLimit:       strconv.FormatInt(limit, 10),
			labelTimeout:           timeout,
		},
		OpenStdin:    true,
		StdinOnce:    true, // stdin closes when our attach closes its write side
		AttachStdin:  true,
		AttachStdout: true,
		AttachStderr: true,
	}
	if len(fn.Entrypoint) > 0 {
		cfg.Entrypoint = fn.Entrypoint
	}
	hc := &container.HostConfig{
		Runtime:     rt,
		NetworkMode: "none",
		SecurityOpt: []string{"no-new-privileges"},
		// "local" keeps stdout binary-safe (json-file does not). The file
		// must hold a whole over-limit stdout plus stderr, so that the first
		// limit bytes survive rotation.
		LogConfig: container.LogConfig{Type: "local", Config: map[string]string{
			"max-size": strconv.FormatInt(limit+(1<<20), 10),
			"max-file": "2",
		}},
	}
	if fn.CPU > 0 {
		hc.NanoCPUs = int64(fn.CPU) * 1_000_000 // 1000 MHz = 1 CPU = 1e9
	}
	if fn.MemoryMB > 0 {
		hc.Memory = int64(fn.MemoryMB) << 20
		hc.MemorySwap = hc.Memory // no swap on top
	}
	return cfg, hc
}

// envList is env as sorted KEY=VALUE, so the container config is stable.
func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
