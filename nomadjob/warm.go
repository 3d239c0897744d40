package nomadjob

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/hyperfunc/hyperfunc/executor"
)

// Warm sandboxes on Nomad: per function, children of its warm job
// (warm_job.go) booted ahead, each waiting for one call. The leader's
// SetWarm is the whole desired state (server/warm.go applies the caps,
// the idle TTL and the adaptive mode); a loop boots up to N per function,
// refills after each claim, replaces a sandbox whose allocation ended
// before its call, and backs off while boots fail. Start claims one with a
// check-and-set variable write (warm_claim.go). See DESIGN.md.

// warmParallel bounds the boots in flight (all functions): a boot is a
// gVisor sandbox start, ~0.5 s of a core.
const warmParallel = 2

// Boot backoff after a failed boot: 1 s doubling to a minute.
const (
	warmBackoffMin = time.Second
	warmBackoffMax = time.Minute
)

// warmTick re-runs the loop when nothing kicked it (backoffs end).
const warmTick = 5 * time.Second

// sandbox is a booted (or booting) warm child.
type sandbox struct {
	id    string // MetaWarm
	child string // the dispatched job ID
	alloc string // its allocation, once running
	fnID  string
	spec  string // SpecHash of the function version it runs
}

// warmPool is one function's pool.
type warmPool struct {
	target     executor.WarmTarget
	spec       string
	registered bool // the warm job of spec is registered
	ready      []*sandbox
	booting    int
	backoff    time.Duration
	retryAt    time.Time
}

// warmState is the executor's pools, under e.mu.
type warmState struct {
	pools map[string]*warmPool // by function ID
	// sandboxes: every booted, unclaimed child this executor holds, so
	// the event stream's news of its end takes it out of its pool.
	sandboxes    map[string]*sandbox
	inflight     int
	hits, misses int64
	observe      func(warm bool, d time.Duration)
	// adopt: the next loop round first takes over (or stops) the
	// unclaimed warm children an earlier leader left.
	adopt bool
	// gen counts DropWarm calls: a boot that ends in a later generation
	// leaves its sandbox to the next leader's take-over.
	gen  int
	stop []string // children to stop (drained, outdated)
	kick chan struct{}
}

func newWarmState() warmState {
	return warmState{pools: map[string]*warmPool{}, sandboxes: map[string]*sandbox{}, adopt: true, kick: make(chan struct{}, 1)}
}

// SetWarm implements the server's warmer: the pools to keep, the whole
// desired state. A pool whose function version changed, or that is no
// longer wanted, is drained: its ready sandboxes are stopped. The first
// call after New or DropWarm takes over the unclaimed sandboxes of an
// earlier leader (current version, wanted) and stops the rest.
func (e *Executor) SetWarm(targets []executor.WarmTarget) {
	e.mu.Lock()
	want := map[string]bool{}
	for _, t := range targets {
		if t.N <= 0 || t.Function.ID == "" {
			continue
		}
		if !warmable(e.cfg.ClusterID, t.Function) {
			// Its children's variable paths would be over Nomad's bound:
			// every claim would be refused. Its calls start cold.
			e.log.Warn("warm pools: function ID too long for Nomad variable paths; no pool", "function", t.Function.ID)
			continue
		}
		want[t.Function.ID] = true
		spec := e.warmSpec(t.Function)
		p := e.wp.pools[t.Function.ID]
		if p != nil && p.spec != spec {
			e.drainLocked(p)
			p = nil
		}
		if p == nil {
			p = &warmPool{spec: spec}
			e.wp.pools[t.Function.ID] = p
		}
		p.target = t
		for len(p.ready) > t.N {
			e.wp.stop = append(e.wp.stop, p.ready[len(p.ready)-1].child)
			e.forgetLocked(p.ready[len(p.ready)-1])
			p.ready = p.ready[:len(p.ready)-1]
		}
	}
	for id, p := range e.wp.pools {
		if !want[id] {
			e.drainLocked(p)
			delete(e.wp.pools, id)
		}
	}
	e.mu.Unlock()
	e.kickWarm()
}

// drainLocked stops a pool's ready sandboxes (booting ones are stopped
// when their boot ends and finds the pool gone). e.mu held.
func (e *Executor) drainLocked(p *warmPool) {
	for _, sb := range p.ready {
		e.wp.stop = append(e.wp.stop, sb.child)
		e.forgetLocked(sb)
	}
	p.ready = nil
}

func (e *Executor) forgetLocked(sb *sandbox) { delete(e.wp.sandboxes, sb.child) }

// DropWarm implements the server's warmer: the pools are forgotten, not
// stopped (leadership lost): the next leader takes the sandboxes over.
func (e *Executor) DropWarm() {
	e.mu.Lock()
	e.wp.pools = map[string]*warmPool{}
	e.wp.sandboxes = map[string]*sandbox{}
	e.wp.stop = nil
	e.wp.adopt = true
	e.wp.gen++
	e.mu.Unlock()
}

// Warm implements the server's warmer: hits, misses and ready sandboxes.
func (e *Executor) Warm() executor.WarmStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := executor.WarmStats{Hits: e.wp.hits, Misses: e.wp.misses, Ready: map[string]int{}}
	for id, p := range e.wp.pools {
		st.Ready[id] = len(p.ready)
	}
	return st
}

// ObserveStarts implements the server's warmer: f gets each Start's path
// and the time from Start to the call handed over (warm: the variable
// written; cold: the child dispatched).
func (e *Executor) ObserveStarts(f func(warm bool, d time.Duration)) {
	e.mu.Lock()
	e.wp.observe = f
	e.mu.Unlock()
}

func (e *Executor) observeStart(warm bool, since time.Time) {
	e.mu.Lock()
	f := e.wp.observe
	e.mu.Unlock()
	if f != nil {
		f(warm, time.Since(since))
	}
}

func (e *Executor) kickWarm() {
	select {
	case e.wp.kick <- struct{}{}:
	default:
	}
}

// warmLoop keeps the pools filled: at each kick (SetWarm, a claim, a
// sandbox's end, a boot's end) and every warmTick.
func (e *Executor) warmLoop() {
	defer e.wg.Done()
	t := time.NewTicker(warmTick)
	defer t.Stop()
	for {
		e.warmRound(e.ctx)
		select {
		case <-e.ctx.Done():
			return
		case <-e.wp.kick:
		case <-t.C:
		}
	}
}

// warmRound does one round: adoption when due, stops, registrations and
// boots.
func (e *Executor) warmRound(ctx context.Context) {
	e.mu.Lock()
	adopt := e.wp.adopt && len(e.wp.pools) > 0
	stop := e.wp.stop
	e.wp.stop = nil
	e.mu.Unlock()
	if adopt {
		if err := e.adoptWarm(ctx); err != nil {
			if ctx.Err() == nil {
				e.log.Warn("warm pools: taking over an earlier leader's sandboxes failed; trying again", "err", err)
			}
			return
		}
	}
	for _, child := range stop {
		e.stopSandbox(ctx, child)
	}
	now := time.Now()
	type boot struct {
		p    *warmPool
		fn   executor.Function
		spec string
	}
	var regs, boots []boot
	e.mu.Lock()
	for _, p := range e.wp.pools {
		if now.Before(p.retryAt) {
			continue
		}
		if !p.registered {
			regs = append(regs, boot{p: p, fn: p.target.Function, spec: p.spec})
			continue
		}
		for len(p.ready)+p.booting < p.target.N && e.wp.inflight < warmParallel {
			p.booting++
			e.wp.inflight++
			boots = append(boots, boot{p: p, fn: p.target.Function, spec: p.spec})
		}
	}
	e.mu.Unlock()
	for _, r := range regs {
		err := e.registerWarm(ctx, r.fn)
		e.mu.Lock()
		if err != nil {
			e.failedLocked(r.p)
		} else if r.p.spec == r.spec {
			r.p.registered = true
		}
		e.mu.Unlock()
		if err != nil {
			e.log.Warn("warm pools: registering the warm job failed", "function", r.fn.ID, "err", err)
		} else {
			e.kickWarm()
		}
	}
	e.mu.Lock()
	gen := e.wp.gen
	e.mu.Unlock()
	for _, b := range boots {
		e.spawn(func(ctx context.Context) { e.bootSandbox(ctx, b.p, b.fn, b.spec, gen) })
	}
}

// registerWarm registers fn's warm job and its ACL policy (a Nomad
// without ACLs needs none). A policy this executor's token may not write
// keeps the pool empty (its calls start cold): without it the sandboxes
// would never see their envelope.
func (e *Executor) registerWarm(ctx context.Context, fn executor.Function) error {
	if err := e.n.RegisterJob(ctx, e.warmJob(fn)); err != nil {
		return err
	}
	id := WarmJobID(e.cfg.ClusterID, fn)
	ns := cmp.Or(e.cfg.Namespace, "default") // Nomad wants it named
	err := e.n.ApplyJobPolicy(ctx, WarmPolicyName(e.cfg.ClusterID, fn), ns, id, warmPolicyRules(ns, id))
	if err != nil && IsUnavailable(err) {
		return err
	}
	if err != nil && !IsACLDisabled(err) {
		return fmt.Errorf("%w (Nomad has ACLs: the warm job needs an ACL policy letting its children read nomad/jobs/%s/*; give the executor's token acl:write, or apply it yourself with `nomad acl policy apply -job %s`)", err, id, id)
	}
	return nil
}

// failedLocked backs a pool off after a failed boot or registration.
func (e *Executor) failedLocked(p *warmPool) {
	p.backoff = min(max(p.backoff*2, warmBackoffMin), warmBackoffMax)
	p.retryAt = time.Now().Add(p.backoff)
}

// stopSandbox purges a warm child nobody will claim: its allocation stops.
// A child claimed meanwhile by another leader keeps its variable and is
// not stopped (its call runs).
func (e *Executor) stopSandbox(ctx context.Context, child string) {
	// Bounded: it also runs while the executor closes, when Nomad may not
	// answer at all.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if items, err := e.n.ReadVariable(ctx, WarmVariablePath(child)); err != nil || items != nil {
		return
	}
	if err := e.n.DeregisterJob(ctx, child, true); err != nil && !errors.Is(err, ErrNotFound) && ctx.Err() == nil {
		e.log.Warn("warm pools: stopping a sandbox failed; the next leader's take-over stops it", "job", child, "err", err)
	}
}

func newSandboxID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
