package servertest

import (
	"slices"
	"time"

	"github.com/hyperfunc/hyperfunc/executor"
)

// The FakeExecutor keeps warm pools the way localexec is told to: it
// records the targets the leader sets (SetWarm), so tests can check the
// policy (caps, updates, failover) without an engine.

type warmRecord struct {
	targets []executor.WarmTarget
	sets    int
	drops   int
}

// SetWarm records the targets.
func (x *FakeExecutor) SetWarm(targets []executor.WarmTarget) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.warm.targets = slices.Clone(targets)
	x.warm.sets++
}

// DropWarm records that the pools were dropped (leadership lost).
func (x *FakeExecutor) DropWarm() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.warm.targets = nil
	x.warm.drops++
}

// Warm reports the targets as if every sandbox were ready.
func (x *FakeExecutor) Warm() executor.WarmStats {
	x.mu.Lock()
	defer x.mu.Unlock()
	st := executor.WarmStats{Ready: map[string]int{}}
	for _, t := range x.warm.targets {
		st.Ready[t.Function.ID] = t.N
	}
	return st
}

// ObserveStarts does nothing: the fake engine has no exec to time.
func (x *FakeExecutor) ObserveStarts(func(bool, time.Duration)) {}

// WarmTargets is what the leader last set (nil after DropWarm), and
// whether it ever set any.
func (x *FakeExecutor) WarmTargets() ([]executor.WarmTarget, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clone(x.warm.targets), x.warm.sets > 0
}

// WarmDrops counts DropWarm calls.
func (x *FakeExecutor) WarmDrops() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.warm.drops
}
