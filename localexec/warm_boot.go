package localexec

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"

	"github.com/hyperfunc/hyperfunc/executor"
)

// Booting, watching and discarding the warm sandboxes of the pools.

// warmLoop boots sandboxes up to the pools' targets, warmBoots at a time,
// whenever SetWarm or a claim kicks it (and every few seconds, to replace
// sandboxes whose boot failed).
func (e *Executor) warmLoop() {
	defer e.wg.Done()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	slots := make(chan struct{}, warmBoots)
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-e.warm.kick:
		case <-tick.C:
		}
		e.adoptOrphans()
		for {
			t, ok := e.nextBoot()
			if !ok {
				break
			}
			select {
			case slots <- struct{}{}:
			case <-e.ctx.Done():
				return
			}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer func() { <-slots }()
				e.boot(t)
			}()
		}
	}
}

// nextBoot reserves one boot for a pool below its target.
func (e *Executor) nextBoot() (executor.WarmTarget, bool) {
	w := &e.warm
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	for _, p := range w.pools {
		if len(p.ready)+p.booting < p.target.N && !now.Before(p.retryAt) {
			p.booting++
			return p.target, true
		}
	}
	return executor.WarmTarget{}, false
}

// boot creates and starts one sandbox for t and adds it to its pool, unless
// the pool changed meanwhile (then it is removed again).
func (e *Executor) boot(t executor.WarmTarget) {
	sb, err := e.bootSandbox(t)
	w := &e.warm
	w.mu.Lock()
	p := w.pools[t.Function.ID]
	if p != nil {
		p.booting--
		if err != nil {
			p.backoff = min(max(2*p.backoff, time.Second), maxBootBackoff)
			p.retryAt = time.Now().Add(p.backoff)
		} else {
			p.backoff, p.retryAt = 0, time.Time{}
		}
	}
	ok := err == nil && p != nil && p.spec == sb.spec && len(p.ready) < p.target.N
	if ok {
		p.ready = append(p.ready, sb)
	} else if p != nil && p.target.N == 0 && p.booting == 0 && len(p.ready) == 0 {
		delete(w.pools, t.Function.ID)
	}
	w.mu.Unlock()
	if err != nil {
		if e.ctx.Err() == nil { // not closing
			e.log.Warn("booting a warm sandbox", "function", t.Function.ID, "err", err)
		}
		if sb != nil {
			e.discard(sb)
		}
		return
	}
	if !ok {
		e.discard(sb)
		return
	}
	e.watchSandbox(t.Function.ID, sb)
}

func newSandboxID() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// bootSandbox makes the sandbox's dir (in/ empty, out/ its tmpfs), then
// creates and starts its container with the cold spec, but unnamed by a
// call and with the shim waiting for its envelope.
func (e *Executor) bootSandbox(t executor.WarmTarget) (*sandbox, error) {
	ctx, cancel := context.WithTimeout(e.ctx, 2*time.Minute)
	defer cancel()
	rt, err := e.detectRuntime(ctx)
	if err != nil {
		return nil, err
	}
	fn := t.Function
	if _, err := e.image(ctx, fn.Image); err != nil {
		return nil, err
	}
	id := newSandboxID()
	sb := &sandbox{id: id, name: warmNamePrefix + id, dir: filepath.Join(e.warmDir(), id), stateDir: e.stateDir,
		spec: specHash(fn, t.StdoutLimit), stop: func() {}}
	if err := os.MkdirAll(e.warmDir(), 0o700); err != nil {
		return nil, fmt.Errorf("warm dir: %w", err)
	}
	if err := os.Mkdir(sb.dir, 0o700); err != nil {
		return nil, fmt.Errorf("warm dir: %w", err)
	}
	if err := os.Mkdir(filepath.Join(sb.dir, inDir), 0o755); err != nil {
		return sb, fmt.Errorf("warm dir: %w", err)
	}
	if err := e.prepareOut(filepath.Join(sb.dir, outDir), t.StdoutLimit); err != nil {
		return sb, err
	}
	cfg, hc := e.containerSpec(executor.Spec{Function: fn, StdoutLimit: t.StdoutLimit}, rt, sb.dir, t.StdoutLimit)
	delete(cfg.Labels, executor.LabelCall)
	cfg.Labels[labelWarm] = id
	cfg.Labels[labelWarmSpec] = sb.spec
	cfg.Labels[labelWarmState] = e.stateDir
	cfg.Entrypoint = []string{containerShim, "-wait", "-envelope", containerEnvelope}
	// The doorbell: stdin kept open for the agent to attach (the command
	// never gets it: its stdin is the envelope's).
	cfg.OpenStdin = true
	created, err := e.cli.ContainerCreate(ctx, cfg, hc, nil, nil, sb.name)
	if err != nil {
		return sb, fmt.Errorf("create warm container: %w", err)
	}
	sb.ref = created.ID
	e.attach(sb)
	if err := e.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return sb, fmt.Errorf("start warm container: %w", err)
	}
	return sb, nil
}

// watchSandbox drops a sandbox from its pool when its container ends
// before a call claimed it (killed, OOM, engine restart); the loop boots a
// replacement.
func (e *Executor) watchSandbox(fnID string, sb *sandbox) {
	ctx, cancel := context.WithCancel(e.ctx)
	w := &e.warm
	w.mu.Lock()
	sb.stop = cancel
	w.mu.Unlock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		waitC, errC := e.cli.ContainerWait(ctx, sb.ref, container.WaitConditionNotRunning)
		select {
		case <-waitC:
		case err := <-errC:
			if ctx.Err() != nil || !cerrdefs.IsNotFound(err) {
				return // claimed, closing, or the engine is away (take's inspect decides)
			}
		}
		w.mu.Lock()
		found := false
		if p := w.pools[fnID]; p != nil {
			for i, s := range p.ready {
				if s == sb {
					p.ready = append(p.ready[:i:i], p.ready[i+1:]...)
					found = true
					break
				}
			}
		}
		w.mu.Unlock()
		if found {
			e.log.Warn("a warm sandbox ended before its call; replacing it", "function", fnID, "container", sb.ref)
			e.discard(sb)
			select {
			case w.kick <- struct{}{}:
			default:
			}
		}
	}()
}

// discardAll removes sandboxes in the background: callers (SetWarm, a
// Start) do not wait for the engine.
func (e *Executor) discardAll(sbs []*sandbox) {
	if len(sbs) == 0 {
		return
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for _, sb := range sbs {
			e.discard(sb)
		}
	}()
}

// discard removes an unclaimed sandbox: its container (by its warm name,
// so that a sandbox another leader claimed and renamed meanwhile stays)
// and its dir (only while it is still the warm dir: a claimed one moved).
func (e *Executor) discard(sb *sandbox) {
	sb.stop()
	sb.hangUp()
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	if err := e.cli.ContainerRemove(ctx, sb.name, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		if e.ctx.Err() == nil && !cerrdefs.IsConflict(err) { // closing: the next leader's SetWarm removes it
			e.log.Warn("removing a warm sandbox", "container", sb.name, "err", err)
		}
		return
	}
	if err := removeCallDir(sb.dir); err != nil {
		e.log.Warn("removing a warm sandbox's dir", "err", err)
	}
}
