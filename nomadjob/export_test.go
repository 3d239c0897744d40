package nomadjob

import (
	"context"

	nomad "github.com/hashicorp/nomad/api"
	"github.com/hyperfunc/hyperfunc/executor"
)

// FunctionJob and PullJob expose the jobs the executor builds to the
// external tests (validation by a real Nomad).
func (e *Executor) FunctionJob(fn executor.Function, big bool) *nomad.Job {
	return e.functionJob(fn, big)
}

func (e *Executor) PullJob(image string) *nomad.Job { return e.pullJob(image) }

// CollectAlloc runs the collector on one allocation, as a terminal event
// would: for the test of an event that said "ended" too early.
func (e *Executor) CollectAlloc(ctx context.Context, callID, child, allocID string) (executor.Event, error) {
	return e.collect(ctx, callID, child, allocID, 1<<20)
}

// ErrNotTerminal is errNotTerminal.
var ErrNotTerminal = errNotTerminal

// WarmJob exposes the warm job for validation by a real Nomad.
func (e *Executor) WarmJob(fn executor.Function) *nomad.Job { return e.warmJob(fn) }

// WarmChildren lists the ready sandboxes' child jobs of a function.
func (e *Executor) WarmChildren(fnID string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	if p := e.wp.pools[fnID]; p != nil {
		for _, sb := range p.ready {
			out = append(out, sb.child)
		}
	}
	return out
}

// CatFile reads a file of an allocation through the executor's client.
func (e *Executor) CatFile(ctx context.Context, allocID, path string) ([]byte, error) {
	return e.n.Cat(ctx, allocID, path, 1<<20)
}

// IsWarmChild reports whether a child job ID is a warm sandbox's.
func IsWarmChild(child string) bool { return isWarmChild(child) }

// WatchedChild is the child the executor watches the call in ("" when
// it does not watch it).
func (e *Executor) WatchedChild(callID string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.calls[callID]; c != nil {
		return c.child
	}
	return ""
}
