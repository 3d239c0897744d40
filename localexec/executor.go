// Package localexec runs calls on the local Docker engine: one container per
// call, under gVisor (runsc) when the engine offers it, with hf-shim as its
// entrypoint and the call's input and result in a host directory. It is the
// embedded executor of a single-machine hyperfunc; it implements
// server.Executor without importing server (the consumer declares the
// interface). See DESIGN.md.
package localexec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
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

// Config of an Executor. ShimPath is required; the rest has defaults: a
// client from the environment (DOCKER_HOST ...), slog's default logger, 1024
// buffered events.
type Config struct {
	Client      *client.Client
	Logger      *slog.Logger
	EventBuffer int
	// StateDir holds one directory per call (envelope, stdin, stdout,
	// result.json), bind-mounted into the call's container. It must be on
	// the engine's host (true of the local engine) and survive a restart of
	// this process: the next leader collects results from it. The agent
	// uses <data dir>/calls; the default is $TMPDIR/hyperfunc-calls.
	StateDir string
	// ShimPath is the static hf-shim binary, bind-mounted read-only into
	// every container as its entrypoint.
	ShimPath string
	// ClusterID names the cluster whose calls this executor runs: its
	// containers carry it (executor.LabelCluster), and CleanOrphans touches
	// no container without it, so that two clusters (two dev agents, a test
	// harness, a Nomad client) can share one engine. Default "local".
	ClusterID string
	// EngineGrace is how long a watcher whose engine stopped answering
	// waits for it (or for the call's result to appear on disk) before it
	// reports the call lost. Default 30 s.
	EngineGrace time.Duration
}

// Executor runs calls as containers on one Docker engine.
type Executor struct {
	cli         *client.Client
	log         *slog.Logger
	events      chan executor.Event
	engineGrace time.Duration
	stateDir    string // absolute
	shimPath    string // absolute
	clusterID   string
	// mountOut: each call's out/ dir gets a tmpfs of its own (the agent runs
	// as root on the host); else out/ is a plain dir on the state dir's disk.
	mountOut bool

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

	warm warmPools

	// beforeStart, set by tests only, runs between create and start; an
	// error ends Start there, as a leader dying in that window would.
	beforeStart func(containerID string) error
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
	grace := cfg.EngineGrace
	if grace <= 0 {
		grace = 30 * time.Second
	}
	shimPath, err := checkShim(cfg.ShimPath)
	if err != nil {
		return nil, err
	}
	stateDir := cfg.StateDir
	if stateDir == "" {
		stateDir = filepath.Join(os.TempDir(), "hyperfunc-calls")
	}
	if stateDir, err = filepath.Abs(stateDir); err != nil {
		return nil, fmt.Errorf("localexec: state dir: %w", err)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("localexec: state dir: %w", err)
	}
	clusterID := cfg.ClusterID
	if clusterID == "" {
		clusterID = "local"
	}
	bg, cancel := context.WithCancel(context.Background())
	e := &Executor{
		cli:         cli,
		log:         log.With("executor", "docker"),
		events:      make(chan executor.Event, buf),
		engineGrace: grace,
		stateDir:    stateDir,
		shimPath:    shimPath,
		clusterID:   clusterID,
		mountOut:    canMount(stateDir),
		ctx:         bg,
		cancel:      cancel,
		calls:       map[string]*call{},
		images:      imageCache{configs: map[string]*imageConfig{}, pulls: map[string]*pull{}},
		warm:        warmPools{pools: map[string]*pool{}, kick: make(chan struct{}, 1)},
	}
	e.wg.Add(1)
	go e.warmLoop()
	if !e.mountOut {
		e.log.Error("cannot mount a tmpfs for the calls' results (the agent is not root on the host?): " +
			"what a function writes to its result dir then lands on the state dir's disk, bounded only by the shim's stdout cap")
	}
	if _, err := e.detectRuntime(ctx); err != nil {
		e.log.Warn("docker engine not reachable yet; runtime detected later", "err", err)
	}
	return e, nil
}

// checkShim makes path absolute and checks that it is an executable file.
func checkShim(path string) (string, error) {
	if path == "" {
		return "", errors.New("localexec: no hf-shim binary configured (Config.ShimPath; `make build` puts it in bin/hf-shim)")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("localexec: hf-shim: %w", err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("localexec: hf-shim: %w", err)
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("localexec: hf-shim %s is not an executable file", abs)
	}
	return abs, nil
}

// StateDir is the directory that holds the calls' directories.
func (e *Executor) StateDir() string { return e.stateDir }

// Close stops the watchers without touching the containers: calls still
// running stay for Reconcile of the next executor, as after a crash.
func (e *Executor) Close() error {
	e.DropWarm() // the sandboxes stay too, for the next leader
	e.cancel()
	e.wg.Wait()
	return nil
}

// executorName is this executor's name, and its containers' LabelExecutor.
const executorName = "docker"

// Name is "docker".
func (e *Executor) Name() string { return executorName }

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
	if !e.mountOut {
		e.log.Error("cannot mount a tmpfs for the calls' results (the agent is not root on the host?): " +
			"what a function writes to its result dir then lands on the state dir's disk, bounded only by the shim's stdout cap")
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
