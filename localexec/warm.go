package localexec

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"sync"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"

	"github.com/hyperfunc/hyperfunc/executor"
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
