// Package localexec runs calls on the local Docker engine: one container per
// call, under gVisor (runsc) when the engine offers it. It is the embedded
// executor of a single-machine hyperfunc; it implements server.Executor
// without importing server (the consumer declares the interface).
package localexec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/docker/docker/client"
	"github.com/hyperfunc/hyperfunc/executor"
)

// RuntimeRunsc is the gVisor runtime name the engine must register.
const RuntimeRunsc = "runsc"

// ErrNoSuchCall is returned by Cancel for a call this executor does not know
// and whose container does not exist (never started, or already collected).
var ErrNoSuchCall = errors.New("localexec: no such call")

// Config of an Executor. The zero value works: a client from the
// environment (DOCKER_HOST ...), slog's default logger, 1024 buffered events.
type Config struct {
	Client      *client.Client
	Logger      *slog.Logger
	EventBuffer int
	// RemoveRetry bounds how long a container removal that failed (the
	// engine is down) is retried in the background. Default 10 minutes.
	RemoveRetry time.Duration
}

// Executor runs calls as containers on one Docker engine.
type Executor struct {
	cli         *client.Client
	log         *slog.Logger
	events      chan executor.Event
	removeRetry time.Duration

	// ctx lives as long as the executor: watchers use it rather than the
	// context of the Start that launched them, which ends with the request.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	rtMu    sync.Mutex
	runtime string // "" until the engine answered once

	mu    sync.Mutex
	calls map[string]*call // started or starting calls, until their container is removed

	images imageCache
}

// New returns an executor. It asks the engine which runtimes it has; an
// engine that is not up yet is not an error (the runtime is detected at the
// first Start or Health instead), so the agent can start before dockerd.
func New(ctx context.Context, cfg Config) (*Executor, error) {
	cli := cfg.Client
	if cli == nil {
		var err error
		cli, err = client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
		if err != nil {
			return nil, fmt.Errorf("docker client: %w", err)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	buf := cfg.EventBuffer
	if buf <= 0 {
		buf = 1024
	}
	rr := cfg.RemoveRetry
	if rr <= 0 {
		rr = 10 * time.Minute
	}
	bg, cancel := context.WithCancel(context.Background())
	e := &Executor{
		cli:         cli,
		log:         log.With("executor", "docker"),
		events:      make(chan executor.Event, buf),
		removeRetry: rr,
		ctx:         bg,
		cancel:      cancel,
		calls:       map[string]*call{},
		images:      imageCache{present: map[string]bool{}, pulls: map[string]*pull{}},
	}
	if _, err := e.detectRuntime(ctx); err != nil {
		e.log.Warn("docker engine not reachable yet; runtime detected later", "err", err)
	}
	return e, nil
}

// Close stops the watchers without touching the containers: calls still
// running stay for Reconcile of the next executor, as after a crash.
func (e *Executor) Close() error {
	e.cancel()
	e.wg.Wait()
	return nil
}

// Name is "docker".
func (e *Executor) Name() string { return "docker" }

// Runtime is the OCI runtime calls run under ("runsc", or "runc" when the
// engine lacks gVisor), "" before the engine answered once.
func (e *Executor) Runtime() string {
	e.rtMu.Lock()
	defer e.rtMu.Unlock()
	return e.runtime
}

// detectRuntime picks runsc if the engine lists it. The fallback to runc is
// logged loudly once: calls then run without the gVisor sandbox.
func (e *Executor) detectRuntime(ctx context.Context) (string, error) {
	e.rtMu.Lock()
	defer e.rtMu.Unlock()
	if e.runtime != "" {
		return e.runtime, nil
	}
	info, err := e.cli.Info(ctx)
	if err != nil {
		return "", fmt.Errorf("docker info: %w", err)
	}
	if _, ok := info.Runtimes[RuntimeRunsc]; ok {
		e.runtime = RuntimeRunsc
		e.log.Info("running calls under gVisor", "runtime", RuntimeRunsc)
	} else {
		e.runtime = "runc"
		e.log.Error("!!! runtime runsc (gVisor) is not registered with the docker engine: calls run under runc WITHOUT the gVisor sandbox; register runsc in /etc/docker/daemon.json and reload dockerd !!!")
	}
	return e.runtime, nil
}

// Health pings the engine.
func (e *Executor) Health(ctx context.Context) error {
	if _, err := e.cli.Ping(ctx); err != nil {
		return fmt.Errorf("docker engine: %w", err)
	}
	if _, err := e.detectRuntime(ctx); err != nil {
		return err
	}
	return nil
}

// Register only validates: a local engine needs nothing per function (the
// image is pulled at the first call, or ahead with Pull).
func (e *Executor) Register(_ context.Context, fn executor.Function) error {
	return validateFunction(fn)
}

// Deregister only validates, like Register.
func (e *Executor) Deregister(_ context.Context, fn executor.Function) error {
	if fn.ID == "" {
		return errors.New("localexec: function without ID")
	}
	return nil
}

func validateFunction(fn executor.Function) error {
	switch {
	case fn.ID == "":
		return errors.New("localexec: function without ID")
	case fn.Image == "":
		return fmt.Errorf("localexec: function %s has no image", fn.ID)
	case fn.CPU < 0 || fn.MemoryMB < 0 || fn.Timeout < 0:
		return fmt.Errorf("localexec: function %s has negative resources or timeout", fn.ID)
	}
	return nil
}

// Events delivers the outcome of calls.
func (e *Executor) Events() <-chan executor.Event { return e.events }

// send delivers ev, waiting as long as the consumer needs but never past
// Close. Callers hold no lock: a full channel then only delays this call.
func (e *Executor) send(ev executor.Event) {
	select {
	case e.events <- ev:
	case <-e.ctx.Done():
	}
}

// sendAsync is send for paths that must not wait (Start answering its caller).
func (e *Executor) sendAsync(ev executor.Event) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.send(ev)
	}()
}
