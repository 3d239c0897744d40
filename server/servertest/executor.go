package servertest

import (
	"context"
	"slices"
	"sync"

	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/server"
)

var _ server.Executor = (*FakeExecutor)(nil)

// Op is one thing a FakeExecutor was asked to do, in order: "start" or
// "reconcile", with the call IDs concerned.
type Op struct {
	Kind    string
	CallIDs []string
}

// FakeExecutor implements server.Executor in memory on an Engine. Events
// of a call go to the executor that started it, or that last reconciled it
// (a new leader's), as a Docker or Nomad watch would see them.
type FakeExecutor struct {
	eng *Engine

	mu     sync.Mutex
	queue  []executor.Event
	ops    []Op
	notify chan struct{}
	events chan executor.Event
	done   chan struct{}
	closed bool
	warm   warmRecord
}

// NewFakeExecutor returns an executor on a fresh engine of its own.
func NewFakeExecutor() *FakeExecutor { return NewEngine().NewExecutor() }

// NewExecutor returns an executor on this engine. Close it when done.
func (e *Engine) NewExecutor() *FakeExecutor {
	x := &FakeExecutor{
		eng: e, notify: make(chan struct{}, 1), events: make(chan executor.Event),
		done: make(chan struct{}),
	}
	go x.pump()
	return x
}

// Engine is the engine this executor runs calls on.
func (x *FakeExecutor) Engine() *Engine { return x.eng }

// Close stops delivering events (as a crashed server's watch would);
// calls go on running in the engine.
func (x *FakeExecutor) Close() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.closed {
		x.closed = true
		close(x.done)
	}
}

// Ops lists what this executor was asked to do, in order.
func (x *FakeExecutor) Ops() []Op {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clone(x.ops)
}

func (x *FakeExecutor) record(kind string, ids ...string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.ops = append(x.ops, Op{Kind: kind, CallIDs: ids})
}

// deliver queues an event without blocking the engine; pump hands the
// queue to the dispatcher in order.
func (x *FakeExecutor) deliver(ev executor.Event) {
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return
	}
	x.queue = append(x.queue, ev)
	x.mu.Unlock()
	select {
	case x.notify <- struct{}{}:
	default:
	}
}

func (x *FakeExecutor) pump() {
	for {
		select {
		case <-x.notify:
		case <-x.done:
			return
		}
		for {
			x.mu.Lock()
			if len(x.queue) == 0 {
				x.mu.Unlock()
				break
			}
			ev := x.queue[0]
			x.queue = x.queue[1:]
			x.mu.Unlock()
			select {
			case x.events <- ev:
			case <-x.done:
				return
			}
		}
	}
}

// Name implements server.Executor.
func (x *FakeExecutor) Name() string { return "fake" }

// Register implements server.Executor.
func (x *FakeExecutor) Register(_ context.Context, fn executor.Function) error {
	return x.eng.register(fn)
}

// Deregister implements server.Executor.
func (x *FakeExecutor) Deregister(_ context.Context, fn executor.Function) error {
	x.eng.deregister(fn)
	return nil
}

// Start implements server.Executor: idempotent on the call ID.
func (x *FakeExecutor) Start(ctx context.Context, spec executor.Spec) (executor.Handle, error) {
	x.record("start", spec.CallID)
	return x.eng.start(ctx, x, spec)
}

// Events implements server.Executor.
func (x *FakeExecutor) Events() <-chan executor.Event { return x.events }

// Cancel implements server.Executor.
func (x *FakeExecutor) Cancel(_ context.Context, h executor.Handle) error {
	return x.eng.cancel(h)
}

// Reconcile implements server.Executor: Running (and watched from now on
// by this executor), the final event of a call that ended, or NotFound.
func (x *FakeExecutor) Reconcile(_ context.Context, hs []executor.Handle) ([]executor.Event, error) {
	ids := make([]string, len(hs))
	for i, h := range hs {
		ids[i] = h.CallID
	}
	x.record("reconcile", ids...)
	return x.eng.reconcile(x, hs)
}

// Pull implements server.Executor.
func (x *FakeExecutor) Pull(_ context.Context, image string) error { return x.eng.pull(image) }

// Health implements server.Executor.
func (x *FakeExecutor) Health(context.Context) error { return x.eng.health() }
