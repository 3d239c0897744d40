package nomadjob

import (
	"context"
	"sync"
	"time"
)

// DefaultPurgeDelay is how long ConfigFromEnv has Release and CleanOrphans
// leave a released child (and its call's record) before they purge it.
// While the child exists, alive or dead or stopped, a dispatch of the
// parent with the call's idempotency token returns that child (measured on
// Nomad 1.6.5); a purged child frees the token. A leader that lost office
// with a dispatch in flight (SIGSTOP, a long GC pause, a stalled VM) sends
// that dispatch when it runs again: if the next leader's run of the call
// had ended and was purged by then, Nomad created a new child and the call
// ran twice (the chaos suite under load, pause of the leader for 5 s).
// Kept, the child answers the late dispatch instead. The cost is that many
// dead children in Nomad for that long (calls per second x the delay).
const DefaultPurgeDelay = 2 * time.Minute

// laterPurges is the queue of released children waiting for their purge.
// Every entry waits the same delay, so the queue is in due order. It lives
// in memory: after a restart or on a new leader, CleanOrphans finds what
// it held (dead children of ended calls) and queues it again.
type laterPurges struct {
	mu      sync.Mutex
	queue   []laterPurge
	pending map[string]bool // by child job ID, or "call:<id>" for a call without one
	kick    chan struct{}
}

type laterPurge struct {
	child, callID string
	due           time.Time
}

// key names p in pending: its child, or its call when it has none.
func (p laterPurge) key() string {
	if p.child == "" {
		return "call:" + p.callID
	}
	return p.child
}

func newLaterPurges() laterPurges {
	return laterPurges{pending: map[string]bool{}, kick: make(chan struct{}, 1)}
}

// purgeLater queues child (may be "": only the call's record) for a purge
// after cfg.PurgeDelay. A child queued already is not queued twice.
func (e *Executor) purgeLater(child, callID string) {
	p := laterPurge{child: child, callID: callID, due: time.Now().Add(e.cfg.PurgeDelay)}
	lp := &e.lp
	lp.mu.Lock()
	if lp.pending[p.key()] {
		lp.mu.Unlock()
		return
	}
	lp.pending[p.key()] = true
	lp.queue = append(lp.queue, p)
	lp.mu.Unlock()
	select {
	case lp.kick <- struct{}{}:
	default:
	}
}

// purgeLoop purges the queued children as they come due, until Close.
func (e *Executor) purgeLoop() {
	defer e.wg.Done()
	lp := &e.lp
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		lp.mu.Lock()
		var due []laterPurge
		for len(lp.queue) > 0 && !lp.queue[0].due.After(now) {
			due = append(due, lp.queue[0])
			lp.queue = lp.queue[1:]
		}
		wait := time.Hour
		if len(lp.queue) > 0 {
			wait = lp.queue[0].due.Sub(now)
		}
		lp.mu.Unlock()
		for _, p := range due {
			e.purgeNow(e.ctx, p)
		}
		if len(due) > 0 {
			continue // more may have come due meanwhile
		}
		timer.Reset(wait) // Go 1.23+: no stale fire survives a Reset
		select {
		case <-e.ctx.Done():
			return
		case <-lp.kick:
		case <-timer.C:
		}
	}
}

// purgeNow purges one released child and then its call's record. A purge
// that fails is left to CleanOrphans (the child stays dead in Nomad).
func (e *Executor) purgeNow(ctx context.Context, p laterPurge) {
	defer func() {
		e.lp.mu.Lock()
		delete(e.lp.pending, p.key())
		e.lp.mu.Unlock()
	}()
	if p.child != "" {
		if err := e.purge(ctx, p.child); err != nil {
			return
		}
	}
	e.forgetCall(ctx, p.callID)
}
