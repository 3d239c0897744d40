package localexec

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
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
	labelCallDir     = "io.hyperfunc.call-dir"     // host path of the call dir
)

// containerName is deterministic so that the engine itself refuses a second
// container for the same call (name conflict), even across restarts.
func containerName(callID string) string { return "hf-" + callID }

// Start runs the call in a new container and returns once it runs. A call
// already started (by this executor, or by a previous one on this engine)
// gets its existing handle back and is never run again.
func (e *Executor) Start(ctx context.Context, spec executor.Spec) (executor.Handle, error) {
	if !validCallID.MatchString(spec.CallID) {
		return executor.Handle{}, fmt.Errorf("localexec: bad call ID %q", spec.CallID)
	}
	if err := validateFunction(spec.Function); err != nil {
		return executor.Handle{}, err
	}
	t0 := time.Now()
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
	if err == nil && h.Ref != "" {
		e.observeStart(c.warm, time.Since(t0))
	}
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
		CallID: spec.CallID, Kind: executor.Failed, Reason: reason, Message: e.hidePaths(err.Error()),
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
	fn := spec.Function
	img, err := e.image(ctx, fn.Image)
	if err != nil {
		if engineDown(ctx, err) {
			return executor.Handle{}, err
		}
		return e.refuse(spec, api.ReasonImage, err)
	}
	args := argv(fn, img)
	if len(args) == 0 || args[0] == "" {
		return e.refuse(spec, api.ReasonImage, fmt.Errorf("no command: neither the function nor image %s names one", fn.Image))
	}
	limit := stdoutLimit(spec)
	if h, ok, err := e.tryWarm(ctx, c, spec, args, limit); ok {
		return h, err
	}
	// The envelope is on disk before the container exists: from then on,
	// any leader can start the container with its full input.
	dir, err := e.prepare(spec, args, limit)
	if err != nil {
		return executor.Handle{}, err
	}
	cfg, hc := e.containerSpec(spec, rt, dir, limit)
	created, err := e.cli.ContainerCreate(ctx, cfg, hc, nil, nil, containerName(spec.CallID))
	if err != nil && cerrdefs.IsNotFound(err) {
		// Our cache said present, but the image was removed since: pull again.
		e.images.set(fn.Image, nil)
		if _, err := e.image(ctx, fn.Image); err != nil {
			if engineDown(ctx, err) {
				return executor.Handle{}, err
			}
			return e.refuse(spec, api.ReasonImage, err)
		}
		created, err = e.cli.ContainerCreate(ctx, cfg, hc, nil, nil, containerName(spec.CallID))
	}
	if err != nil && cerrdefs.IsConflict(err) {
		return e.startExisting(ctx, c, spec, args, limit)
	}
	if err != nil {
		if engineDown(ctx, err) {
			return executor.Handle{}, fmt.Errorf("create container: %w", err)
		}
		return e.refuse(spec, api.ReasonExecutor, fmt.Errorf("create container: %w", err))
	}
	return e.run(ctx, c, spec, created.ID, dir, limit)
}

// tryWarm runs the call in a warm sandbox of its function, if one is
// ready; ok false: none could take it, nothing ran, start cold.
func (e *Executor) tryWarm(ctx context.Context, c *call, spec executor.Spec, args []string, limit int64) (executor.Handle, bool, error) {
	pooled := false
	for {
		sb, has := e.take(spec.Function, limit)
		pooled = pooled || has
		if sb == nil {
			if pooled {
				e.countWarm(false)
			}
			return executor.Handle{}, false, nil
		}
		h, err := e.startWarm(ctx, c, spec, sb, args, limit)
		if errors.Is(err, errWarmMiss) {
			continue
		}
		e.countWarm(err == nil)
		c.warm = err == nil
		return h, true, err
	}
}

func stdoutLimit(spec executor.Spec) int64 {
	if spec.StdoutLimit > 0 {
		return spec.StdoutLimit
	}
	return DefaultStdoutLimit
}

// startExisting handles a name conflict: a container for this call exists
// already, left by an earlier executor on this engine. Its input is in its
// own call dir, so whatever its state it is taken over as it is: a created
// one is started, a running one watched, an exited one collected. It never
// runs twice: a container starts once, and its shim claims the call dir.
func (e *Executor) startExisting(ctx context.Context, c *call, spec executor.Spec, args []string, limit int64) (executor.Handle, error) {
	ins, err := e.cli.ContainerInspect(ctx, containerName(spec.CallID))
	if err != nil {
		return executor.Handle{}, fmt.Errorf("inspect existing container: %w", err)
	}
	if ins.Config != nil && isWarm(ins.Config.Labels) {
		// A warm sandbox claimed for this call by a leader that died
		// before it handed the envelope over: hand it over now.
		if err := e.writeEnvelope(targetOf(spec.CallID, ins).dir, spec, args, limit); err != nil {
			return executor.Handle{}, err
		}
	}
	c.setRef(ins.ID)
	if _, err := e.adopt(ctx, c, ins, true); err != nil {
		return executor.Handle{}, err
	}
	return executor.Handle{CallID: spec.CallID, Ref: ins.ID}, nil
}

// run starts a created container and hands it to a watcher.
func (e *Executor) run(ctx context.Context, c *call, spec executor.Spec, id, dir string, limit int64) (executor.Handle, error) {
	c.setRef(id)
	if reason, msg := c.stopped(); reason != "" { // canceled while we created it
		if err := claimDir(dir); err != nil {
			e.log.Warn("claiming the dir of a canceled call", "call", c.id, "err", err)
		}
		return e.refuse(spec, reason, errors.New(msg))
	}
	if e.beforeStart != nil {
		if err := e.beforeStart(id); err != nil {
			return executor.Handle{}, err
		}
	}
	started, err := e.startContainer(ctx, id)
	if err != nil {
		if engineDown(ctx, err) {
			// It stays created: a retried Start or the next leader's
			// Reconcile starts it, its input being on disk.
			return executor.Handle{}, fmt.Errorf("start container: %w", err)
		}
		return e.refuse(spec, api.ReasonImage, fmt.Errorf("start container: %w", err))
	}
	if !started {
		return executor.Handle{}, fmt.Errorf("start container %s: still created after start", id)
	}
	e.wg.Add(1)
	go e.watch(c, watchArgs{
		id: id, dir: dir, startedAt: time.Now(), timeout: spec.Function.Timeout,
		limit: limit, sendRunning: true,
	})
	return executor.Handle{CallID: spec.CallID, Ref: id}, nil
}

// startContainer starts a created container. A start that failed on our
// side (timeout) may have started it anyway: then it counts as started.
func (e *Executor) startContainer(ctx context.Context, id string) (bool, error) {
	err := e.cli.ContainerStart(ctx, id, container.StartOptions{})
	if err == nil {
		return true, nil
	}
	ictx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	ins, ierr := e.cli.ContainerInspect(ictx, id)
	if ierr == nil && ins.State != nil && ins.State.Status != "created" {
		return true, nil
	}
	return false, err
}

// tmpSize bounds a call's /tmp, the only writable place of its root
// filesystem (as AWS Lambda does it); under gVisor it lives in the
// sandbox's memory, so it counts against the function's memory too.
const tmpSize = "64m"

// containerSpec is the container of one call: hf-shim as its entrypoint,
// reading the envelope from the call's read-only in/ dir and writing the
// result to out/; no network, no capabilities, no new privileges, a pids
// limit, a read-only root filesystem with a bounded /tmp, the function's
// user (nobody unless it asks for root) and resources. Docker's own stdout
// and stderr carry only stderr (the stdout is in out/), kept by the local
// log driver for the preview.
func (e *Executor) containerSpec(spec executor.Spec, rt, dir string, limit int64) (*container.Config, *container.HostConfig) {
	fn := spec.Function
	timeout := ""
	if fn.Timeout > 0 {
		timeout = fn.Timeout.String()
	}
	cfg := &container.Config{
		Image:      fn.Image,
		Entrypoint: []string{containerShim, "-envelope", containerEnvelope},
		// A set entrypoint drops the image's cmd (the shim takes no args).
		WorkingDir: fn.Workdir,
		User:       fn.RunAs(),
		Labels: map[string]string{
			executor.LabelCall:     spec.CallID,
			executor.LabelFunction: fn.ID,
			executor.LabelManaged:  "true",
			executor.LabelCluster:  e.clusterID,
			executor.LabelExecutor: executorName,
			labelStdoutLimit:       strconv.FormatInt(limit, 10),
			labelTimeout:           timeout,
			labelCallDir:           dir,
		},
	}
	pids := int64(executor.DefaultPidsLimit)
	hc := &container.HostConfig{
		Runtime:        rt,
		NetworkMode:    "none",
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges"},
		ReadonlyRootfs: true,
		Tmpfs:          map[string]string{"/tmp": "rw,nosuid,nodev,size=" + tmpSize + ",mode=1777"},
		Binds: []string{
			e.shimPath + ":" + containerShim + ":ro",
			filepath.Join(dir, inDir) + ":" + containerInDir + ":ro",
			filepath.Join(dir, outDir) + ":" + containerOutDir,
		},
		LogConfig: container.LogConfig{Type: "local", Config: map[string]string{
			"max-size": "1m", "max-file": "2",
		}},
	}
	hc.PidsLimit = &pids
	if fn.CPU > 0 {
		hc.NanoCPUs = int64(fn.CPU) * 1_000_000 // 1000 MHz = 1 CPU = 1e9
	}
	if fn.MemoryMB > 0 {
		hc.Memory = int64(fn.MemoryMB) << 20
		hc.MemorySwap = hc.Memory // no swap on top
	}
	return cfg, hc
}
