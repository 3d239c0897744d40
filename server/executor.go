package server

import (
	"context"

	"github.com/hyperfunc/hyperfunc/executor"
)

// Executor runs calls. The dispatcher on the leader is its only user; the
// local Docker executor (localexec) and the Nomad executor (nomadjob)
// implement it.
type Executor interface {
	// Name says which executor this is ("docker", "nomad"), for health and logs.
	Name() string
	// Register prepares for a function's calls; called on create and update.
	Register(ctx context.Context, fn executor.Function) error
	// Deregister undoes Register; called on delete.
	Deregister(ctx context.Context, fn executor.Function) error
	// Start starts a call and returns once the executor has accepted it. It is
	// idempotent on the call ID: a second Start of the same call returns the
	// first one's handle and never runs the command twice. The outcome comes
	// through Events.
	Start(ctx context.Context, spec executor.Spec) (executor.Handle, error)
	// Events delivers Running, Finished and Failed events of started calls.
	Events() <-chan executor.Event
	// Cancel stops a call; its Failed event (Reason canceled) follows on Events.
	Cancel(ctx context.Context, h executor.Handle) error
	// Reconcile answers, after a leader change or a restart, what became of
	// these calls: Running (watched again, outcome through Events), Finished
	// or Failed (with the result), or NotFound for a call that never started.
	Reconcile(ctx context.Context, hs []executor.Handle) ([]executor.Event, error)
	// Release says that the final state of these calls is recorded in the
	// replicated state: the executor may now drop what it kept of them
	// (containers, result files, Nomad child jobs). Until then it keeps
	// them, so that a leader that dies between the executor's report and
	// the record leaves the result for the next leader's Reconcile.
	Release(ctx context.Context, hs []executor.Handle) error
	// Pull fetches an image ahead of the first call.
	Pull(ctx context.Context, image string) error
	// Health says whether the executor can run calls now.
	Health(ctx context.Context) error
}
