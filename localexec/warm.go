package localexec

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/hyperfunc/hyperfunc/executor"
	"golang.org/x/sys/unix"
)

// A warm sandbox is a container started before its call, with exactly the
// spec of a cold one (containerSpec), whose shim waits (-wait) for its
// envelope. It serves one call at most; the claim is the atomic rename of
// its host dir <StateDir>/.warm/<sandbox> to the call's dir <StateDir>/<call>
// (renameat2 RENAME_NOREPLACE: of two claimers, one moves it, the other
// finds nothing), then the container is renamed hf-<call>, so that every
// leader finds it as the call's container, and only then is the envelope
// written. See DESIGN.md "Warm sandboxes".
const (
	labelWarm      = "io.hyperfunc.warm"       // sandbox ID
	labelWarmSpec  = "io.hyperfunc.warm-spec"  // specHash of the function version it was booted for
	labelWarmState = "io.hyperfunc.warm-state" // the StateDir its call dir goes to when claimed
	warmDirName    = ".warm"                   // under StateDir; not a valid call ID, so no sweep takes it for a call
	warmNamePrefix = "hf-warm-"
	// warmBoots bounds the sandboxes booting at once: a boot costs a gVisor
	// start, and calls share the machine.
	warmBoots = 2
)

type sandbox struct {
	id, name, dir, stateDir, spec string
	ref                           string // container ID
	stop                          context.CancelFunc
	// bell is the attached stdin of the container: a byte on it wakes the
	// shim at once after the envelope is written (shim.WaitPoll). Nil when
	// attaching failed: the shim's poll finds the envelope anyway.
	bell *types.HijackedResponse
}

// attach connects the sandbox's doorbell; best effort. The connection
// lives as long as the executor (or until the sandbox is claimed).
func (e *Executor) attach(sb *sandbox) {
	resp, err := e.cli.ContainerAttach(e.ctx, sb.ref, container.AttachOptions{Stream: true, Stdin: true})
	if err != nil {
		e.log.Debug("attaching a warm sandbox's stdin; its shim polls instead", "container", sb.name, "err", err)
		return
	}
	sb.bell = &resp
}

// ring wakes the sandbox's shim, and hangs up: the doorbell serves once.
func (sb *sandbox) ring() {
	if sb.bell == nil {
		return
	}
	_, _ = sb.bell.Conn.Write([]byte{'\n'})
	sb.hangUp()
}

func (sb *sandbox) hangUp() {
	if sb.bell != nil {
		sb.bell.Close()
		sb.bell = nil
	}
}

type pool struct {
	target  executor.WarmTarget
	spec    string
	ready   []*sandbox
	booting int
	// After a failed boot (an image that cannot be pulled, an engine
	// refusing the spec) the pool waits before the next one, doubling up
	// to maxBootBackoff, so that a broken function costs one attempt a
	// minute, not one per loop pass.
	backoff time.Duration
	retryAt time.Time
}

const maxBootBackoff = time.Minute

type warmPools struct {
	mu      sync.Mutex
	pools   map[string]*pool // by function ID
	adopted bool             // the orphans of a previous leader were looked at
	set     bool             // SetWarm was called: this agent leads, the sandboxes of the cluster are its
	kick    chan struct{}
	hits    int64
	misses  int64
	observe func(warm bool, d time.Duration)
}

// specHash identifies what a sandbox was booted for: the function version
// (image, command, user, resources...) and the stdout limit. A sandbox of
// another hash never takes a call: an update drains the pool. (The
// runtime is not in it: one engine's is the same for every sandbox.)
func specHash(fn executor.Function, limit int64) string {
	b, _ := json.Marshal(struct {
		F executor.Function
		L int64
	}{fn, limit})
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:12])
}

func (e *Executor) warmDir() string { return filepath.Join(e.stateDir, warmDirName) }

// SetWarm sets the pools to keep: one per target with N > 0; pools of other
// functions are drained (their sandboxes removed). It returns at once; a
// background loop boots and removes. The first call also takes over the
// warm sandboxes a previous leader left on this engine: unclaimed ones of a
// current function version join its pool, the others are removed.
func (e *Executor) SetWarm(targets []executor.WarmTarget) {
	var drop []*sandbox
	w := &e.warm
	w.mu.Lock()
	w.set = true
	want := map[string]bool{}
	for _, t := range targets {
		if t.N <= 0 || validateFunction(t.Function) != nil {
			continue
		}
		if t.StdoutLimit <= 0 {
			t.StdoutLimit = DefaultStdoutLimit
		}
		want[t.Function.ID] = true
		p := w.pools[t.Function.ID]
		if p == nil {
			p = &pool{}
			w.pools[t.Function.ID] = p
		}
		p.target = t
		if spec := specHash(t.Function, t.StdoutLimit); spec != p.spec {
			p.spec = spec
			p.backoff, p.retryAt = 0, time.Time{} // a new version may boot where the old failed
		}
		keep := p.ready[:0]
		for _, sb := range p.ready {
			if sb.spec == p.spec && len(keep) < t.N {
				keep = append(keep, sb)
			} else {
				drop = append(drop, sb)
			}
		}
		p.ready = keep
	}
	for id, p := range w.pools {
		if !want[id] {
			drop = append(drop, p.ready...)
			p.ready, p.target.N = nil, 0
			if p.booting == 0 {
				delete(w.pools, id)
			}
		}
	}
	w.mu.Unlock()
	e.discardAll(drop)
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// DropWarm forgets the pools without removing a container (this agent
// lost leadership): the next leader takes the sandboxes over.
func (e *Executor) DropWarm() {
	w := &e.warm
	w.mu.Lock()
	for _, p := range w.pools {
		for _, sb := range p.ready {
			sb.stop()
			sb.hangUp() // the next leader attaches again
		}
	}
	w.pools = map[string]*pool{}
	w.adopted, w.set = false, false
	w.mu.Unlock()
}

// Warm reports the pools' counters and sizes.
func (e *Executor) Warm() executor.WarmStats {
	w := &e.warm
	w.mu.Lock()
	defer w.mu.Unlock()
	st := executor.WarmStats{Hits: w.hits, Misses: w.misses, Ready: map[string]int{}}
	for id, p := range w.pools {
		st.Ready[id] = len(p.ready)
	}
	return st
}

// ObserveStarts sets f to be told, after each Start that started a call,
// whether it took a warm sandbox and how long Start took (from its entry
// to the command handed over: the envelope written to a warm sandbox, or
// a cold container started). f must not block.
func (e *Executor) ObserveStarts(f func(warm bool, d time.Duration)) {
	e.warm.mu.Lock()
	e.warm.observe = f
	e.warm.mu.Unlock()
}

func (e *Executor) observeStart(warm bool, d time.Duration) {
	e.warm.mu.Lock()
	f := e.warm.observe
	e.warm.mu.Unlock()
	if f != nil {
		f(warm, d)
	}
}

// countWarm counts a Start of a function with a pool.
func (e *Executor) countWarm(hit bool) {
	w := &e.warm
	w.mu.Lock()
	if hit {
		w.hits++
	} else {
		w.misses++
	}
	w.mu.Unlock()
}

// take pops a ready sandbox of fn's current version, or nil; pooled says
// whether fn has a pool. Sandboxes of an older version are discarded.
func (e *Executor) take(fn executor.Function, limit int64) (*sandbox, bool) {
	w := &e.warm
	w.mu.Lock()
	p := w.pools[fn.ID]
	if p == nil || p.target.N == 0 {
		w.mu.Unlock()
		return nil, false
	}
	spec := specHash(fn, limit)
	var sb *sandbox
	var drop []*sandbox
	for len(p.ready) > 0 && sb == nil {
		s := p.ready[0]
		p.ready = p.ready[1:]
		if s.spec == spec {
			sb = s
		} else {
			drop = append(drop, s)
		}
	}
	if sb != nil {
		sb.stop() // its death watch ends: the call's watcher follows it now
	}
	w.mu.Unlock()
	e.discardAll(drop)
	select { // refill after each use
	case w.kick <- struct{}{}:
	default:
	}
	return sb, true
}

// giveBack returns an unclaimed sandbox to its pool (a claim that found the
// call's dir taken).
func (e *Executor) giveBack(fnID string, sb *sandbox) {
	w := &e.warm
	w.mu.Lock()
	if p := w.pools[fnID]; p != nil && p.spec == sb.spec && len(p.ready) < p.target.N {
		p.ready = append(p.ready, sb)
		w.mu.Unlock()
		e.watchSandbox(fnID, sb)
		return
	}
	w.mu.Unlock()
	e.discard(sb)
}

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

// adoptOrphans, once per leadership (after the first SetWarm), looks at the warm containers of this
// cluster on the engine: unclaimed (still named hf-warm-*, dir still in
// .warm), running, of a current function version and wanted: taken into
// its pool; otherwise removed. Claimed ones are calls: Reconcile and
// CleanOrphans handle them.
func (e *Executor) adoptOrphans() {
	w := &e.warm
	w.mu.Lock()
	done := w.adopted || !w.set
	w.mu.Unlock()
	if done {
		return
	}
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	list, err := e.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", labelWarm),
		filters.Arg("label", executor.LabelCluster+"="+e.clusterID),
		filters.Arg("label", executor.LabelExecutor+"="+executorName),
	)})
	if err != nil {
		e.log.Warn("listing warm sandboxes", "err", err)
		return
	}
	live := map[string]bool{}
	for _, s := range list {
		name := ""
		if len(s.Names) > 0 {
			name = strings.TrimPrefix(s.Names[0], "/")
		}
		if !strings.HasPrefix(name, warmNamePrefix) {
			continue // claimed: a call's container
		}
		sb := &sandbox{id: s.Labels[labelWarm], name: name, ref: s.ID, dir: s.Labels[labelCallDir],
			stateDir: s.Labels[labelWarmState], spec: s.Labels[labelWarmSpec], stop: func() {}}
		fnID := s.Labels[executor.LabelFunction]
		if s.State == "running" && name == warmNamePrefix+sb.id {
			e.attach(sb) // before it is in a pool, where a Start may ring it
		}
		w.mu.Lock()
		p := w.pools[fnID]
		ok := s.State == "running" && name == warmNamePrefix+sb.id && p != nil && p.spec == sb.spec &&
			len(p.ready)+p.booting < p.target.N && isDir(sb.dir)
		if ok {
			p.ready = append(p.ready, sb)
			live[sb.dir] = true
		}
		w.mu.Unlock()
		if ok {
			e.watchSandbox(fnID, sb)
		} else {
			e.discard(sb)
		}
	}
	// Dirs of sandboxes whose container is gone.
	if entries, err := os.ReadDir(e.warmDir()); err == nil {
		for _, d := range entries {
			dir := filepath.Join(e.warmDir(), d.Name())
			if d.IsDir() && !live[dir] && !e.isReady(dir) {
				if err := removeCallDir(dir); err != nil {
					e.log.Warn("removing a warm dir", "err", err)
				}
			}
		}
	}
	w.mu.Lock()
	w.adopted = true
	w.mu.Unlock()
}

// isReady says whether dir belongs to a sandbox in a pool (or booting: its
// dir exists before its container).
func (e *Executor) isReady(dir string) bool {
	w := &e.warm
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.pools {
		if p.booting > 0 {
			return true
		}
		for _, sb := range p.ready {
			if sb.dir == dir {
				return true
			}
		}
	}
	return false
}

func isDir(p string) bool {
	st, err := os.Lstat(p)
	return err == nil && st.IsDir()
}

// errWarmMiss: the sandbox could not take the call; nothing ran, the
// caller tries another one or a cold start.
var errWarmMiss = errors.New("warm sandbox unusable")

// startWarm hands the call to a ready sandbox: check that it still runs,
// claim its dir (the atomic step), rename its container to the call's
// name, write the envelope. errWarmMiss: nothing ran and nothing of the
// call is left; other errors come after the claim.
func (e *Executor) startWarm(ctx context.Context, c *call, spec executor.Spec, sb *sandbox, args []string, limit int64) (executor.Handle, error) {
	ins, err := e.cli.ContainerInspect(ctx, sb.name)
	if err != nil || ins.State == nil || !ins.State.Running || ins.ID != sb.ref {
		e.log.Debug("a warm sandbox is not running; discarded", "container", sb.name, "err", err)
		e.discard(sb)
		if err != nil && engineDown(ctx, err) {
			return executor.Handle{}, err
		}
		return executor.Handle{}, errWarmMiss
	}
	dir := filepath.Join(sb.stateDir, spec.CallID)
	if err := unix.Renameat2(unix.AT_FDCWD, sb.dir, unix.AT_FDCWD, dir, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.EEXIST) {
			// The call has a dir already (a retry after a cold attempt):
			// the cold path takes over that one.
			e.giveBack(spec.Function.ID, sb)
		}
		// ENOENT: another leader claimed this sandbox.
		e.log.Debug("claiming a warm sandbox", "container", sb.name, "err", err)
		return executor.Handle{}, errWarmMiss
	}
	c.setRef(sb.ref)
	if err := e.cli.ContainerRename(ctx, sb.ref, containerName(spec.CallID)); err != nil {
		sb.hangUp()
		if !cerrdefs.IsConflict(err) {
			// The engine failed us (the rename may have happened or not):
			// all stays as it is. A retried Start prepares this very dir
			// (the call's) and writes the envelope; whichever shim finds it
			// first, this sandbox's or a new container's, runs it, once
			// (both claim the shared out/.started), and the result is in
			// the shared out/ for either's watcher.
			return executor.Handle{}, fmt.Errorf("rename warm container: %w", err)
		}
		// Another container has the call's name: another leader started
		// it. If it has a dir of its own, this sandbox and its dir serve
		// nothing and go. If it shares this dir (it was prepared after our
		// claim, on the same state dir), this sandbox stays: it may be the
		// one to run the envelope written there, once, as above.
		if other, ierr := e.cli.ContainerInspect(ctx, containerName(spec.CallID)); ierr == nil && targetOf(spec.CallID, other).dir != dir {
			rctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
			if rerr := e.cli.ContainerRemove(rctx, sb.ref, container.RemoveOptions{Force: true}); rerr == nil || cerrdefs.IsNotFound(rerr) {
				if derr := removeCallDir(dir); derr != nil {
					e.log.Warn("removing a warm sandbox's dir", "err", derr)
				}
			}
			cancel()
		}
		return e.startExisting(ctx, c, spec, args, limit)
	}
	if reason, msg := c.stopped(); reason != "" {
		// Canceled while we claimed it: as a cold call canceled before its
		// start, its dir is claimed so that nothing runs there.
		sb.hangUp()
		if _, err := claimNew(dir); err != nil {
			e.log.Warn("claiming the dir of a canceled call", "call", c.id, "err", err)
		}
		e.kill(c, sb.ref)
		return e.refuse(spec, reason, errors.New(msg))
	}
	if err := e.writeEnvelope(dir, spec, args, limit); err != nil {
		sb.hangUp()
		return executor.Handle{}, err
	}
	sb.ring()
	e.wg.Add(1)
	go e.watch(c, watchArgs{
		id: sb.ref, dir: dir, startedAt: time.Now(), timeout: spec.Function.Timeout,
		limit: limit, sendRunning: true,
	})
	return executor.Handle{CallID: spec.CallID, Ref: sb.ref}, nil
}

// claimNew creates out/.started as the shim does before it runs; true when
// this call created it (then no shim ever runs a command in this dir).
func claimNew(dir string) (bool, error) {
	f, err := os.OpenFile(filepath.Join(dir, outDir, ".started"), os.O_WRONLY|os.O_CREATE|os.O_EXCL|noFollow, 0o644)
	if errors.Is(err, os.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, errors.New("claiming the call dir failed")
	}
	return true, f.Close()
}

// isWarm says whether a container was booted as a warm sandbox.
func isWarm(labels map[string]string) bool { return labels[labelWarm] != "" }

// warmCallDir is the dir of the call a claimed warm container serves.
func warmCallDir(labels map[string]string, callID string) string {
	st := labels[labelWarmState]
	if st == "" || !filepath.IsAbs(st) {
		return ""
	}
	return filepath.Join(st, callID)
}

// hasEnvelope says whether the call's envelope was written to dir.
func hasEnvelope(dir string) bool {
	_, err := os.Lstat(filepath.Join(dir, inDir, envelopeFile))
	return err == nil
}
