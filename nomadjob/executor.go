// Package nomadjob is the Nomad executor: one parameterized batch job per
// function, one dispatched child job per call, allocations watched through the
// event stream, results read from the allocation directory, children purged
// once the dispatcher says the call's end is recorded (Release) or swept by
// CleanOrphans. See DESIGN.md in this folder.
package nomadjob

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/hyperfunc/hyperfunc/executor"
)

// Executor runs calls as dispatched Nomad jobs. It implements the server's
// Executor interface. Create it with New and stop it with Close.
type Executor struct {
	cfg    Config
	n      Nomad
	log    *slog.Logger
	events chan executor.Event

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	calls   map[string]*call // by call ID
	byChild map[string]*call // by dispatched job ID
	kick    chan struct{}    // ask the watch loop for a re-check of every call
	// reported holds the calls whose final event this executor sent on
	// Events, by call ID (value: the child job ID), until Release or
	// CleanOrphans: it keeps a call from being reported twice by this
	// process and gives Release the child of a handle without Ref.
	reported map[string]string
	// moving holds the warm calls being placed again (replaceUndelivered):
	// off the watch list for that moment, their new child not known yet.
	// true: Cancel came meanwhile; the call is canceled where it lands.
	moving map[string]bool

	// wp is the warm pools (warm.go).
	wp warmState
	// noRecord: Nomad refused a call's record (warm_claim.go); logged once.
	noRecord atomic.Bool
	// lp is the released children waiting for their purge (purgelater.go).
	lp laterPurges
}

// maxReported bounds the reported set of calls nobody releases (leadership
// lost before the record): past it, entries are dropped at random; a dropped
// one only loses its dedup and its Ref fallback, CleanOrphans still sweeps.
const maxReported = 1 << 16

// call is a watched call.
type call struct {
	id          string
	child       string
	stdoutLimit int64
	running     bool // Running was reported
	warm        bool // a warm child: collected as soon as result.json exists
	// spec of a warm call this executor started: it is placed again if its
	// sandbox dies before the call reaches it.
	spec       *executor.Spec
	collecting bool
	done       bool
}

// Option changes New's defaults.
type Option func(*Executor)

// WithNomad replaces the nomad/api based client (tests, wrappers).
func WithNomad(n Nomad) Option { return func(e *Executor) { e.n = n } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(e *Executor) { e.log = l } }

// New returns a running executor: its watch loop is started.
func New(cfg Config, opts ...Option) (*Executor, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Executor{
		cfg:      cfg,
		log:      slog.Default(),
		events:   make(chan executor.Event, 256),
		calls:    map[string]*call{},
		byChild:  map[string]*call{},
		kick:     make(chan struct{}, 1),
		reported: map[string]string{},
		moving:   map[string]bool{},
		wp:       newWarmState(),
		lp:       newLaterPurges(),
	}
	for _, o := range opts {
		o(e)
	}
	if e.n == nil {
		c, err := nomad.NewClient(cfg.APIConfig())
		if err != nil {
			return nil, fmt.Errorf("nomad executor: client: %w", err)
		}
		e.n = NewNomad(c)
	}
	e.log = e.log.With("executor", "nomad")
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.wg.Add(3)
	go e.watchLoop()
	go e.warmLoop()
	go e.purgeLoop()
	return e, nil
}

// Close stops the watch loop and every collection in progress. Calls keep
// running in Nomad; a later Reconcile finds them.
func (e *Executor) Close() error {
	e.cancel()
	e.wg.Wait()
	return nil
}

// Name says which executor this is.
func (e *Executor) Name() string { return "nomad" }

// Events delivers Running, Finished and Failed events of started calls.
func (e *Executor) Events() <-chan executor.Event { return e.events }

// Health is Nomad's leader status: no leader or no answer is ErrUnavailable.
func (e *Executor) Health(ctx context.Context) error {
	leader, err := e.n.Leader(ctx)
	if err != nil {
		return err
	}
	if leader == "" {
		return &Error{Op: "leader", Retryable: true, Err: errors.New("no cluster leader")}
	}
	return nil
}

// Register creates or updates the function's parameterized jobs: the small
// one (stdin inline in the payload) and the -big one (stdin as an artifact).
func (e *Executor) Register(ctx context.Context, fn executor.Function) error {
	if fn.Image == "" {
		return fmt.Errorf("nomad executor: function %s: %w: no image", fn.ID, ErrRefused)
	}
	for _, big := range []bool{false, true} {
		if err := e.n.RegisterJob(ctx, e.functionJob(fn, big)); err != nil {
			return err
		}
	}
	return nil
}

// Deregister purges the function's parameterized jobs (the warm one too).
// Running children are separate jobs and finish on their own; unclaimed
// warm children go when the leader's SetWarm drains the pool.
func (e *Executor) Deregister(ctx context.Context, fn executor.Function) error {
	for _, id := range []string{JobID(e.cfg.ClusterID, fn), BigJobID(e.cfg.ClusterID, fn), WarmJobID(e.cfg.ClusterID, fn)} {
		if err := e.n.DeregisterJob(ctx, id, true); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	if err := e.n.DeletePolicy(ctx, WarmPolicyName(e.cfg.ClusterID, fn)); err != nil && !IsACLDisabled(err) && !errors.Is(err, ErrNotFound) {
		e.log.Warn("deleting the warm job's ACL policy failed", "function", fn.ID, "err", err)
	}
	return nil
}

// Start dispatches the call with its ID as idempotency token: a second Start
// (this leader retrying, or a new leader after a failover) gets the same
// child job back and never runs the command twice. A call whose end this
// executor already reported gets its handle back and nothing else: its
// outcome went through Events once (Reconcile answers it again).
func (e *Executor) Start(ctx context.Context, spec executor.Spec) (executor.Handle, error) {
	start := time.Now()
	e.mu.Lock()
	if c := e.calls[spec.CallID]; c != nil {
		e.mu.Unlock()
		return executor.Handle{CallID: spec.CallID, Ref: c.child}, nil
	}
	if child, ok := e.reported[spec.CallID]; ok {
		e.mu.Unlock()
		return executor.Handle{CallID: spec.CallID, Ref: child}, nil
	}
	e.mu.Unlock()

	limit := e.cfg.StdoutLimit
	if spec.StdoutLimit > 0 {
		limit = spec.StdoutLimit
	}
	return e.startRecorded(ctx, spec, limit, start)
}

// dispatch starts the call cold: a child of the function's job (or -big).
func (e *Executor) dispatch(ctx context.Context, spec executor.Spec, limit int64, start time.Time) (executor.Handle, error) {
	payload, big, err := payloadFor(spec, limit)
	if err != nil {
		return executor.Handle{}, err
	}
	jobID := JobID(e.cfg.ClusterID, spec.Function)
	meta := map[string]string{MetaCallID: spec.CallID}
	if big {
		jobID = BigJobID(e.cfg.ClusterID, spec.Function)
		meta[MetaKey] = spec.Key
	}
	child, err := e.n.Dispatch(ctx, jobID, meta, payload, spec.CallID)
	if err != nil && errors.Is(err, ErrNotFound) && spec.Function.Image != "" {
		// The function's job is gone (Nomad state lost, or an operator
		// purged it): register it again and dispatch once more.
		e.log.Warn("parameterized job missing, registering it again", "job", jobID, "err", err)
		if rerr := e.Register(ctx, spec.Function); rerr != nil {
			return executor.Handle{}, fmt.Errorf("%w (re-register: %w)", err, rerr)
		}
		child, err = e.n.Dispatch(ctx, jobID, meta, payload, spec.CallID)
	}
	if err != nil {
		return executor.Handle{}, err
	}
	e.observeStart(false, start)
	c := e.watch(spec.CallID, child, limit)
	// The allocation may have moved before the call was in the watch list:
	// look once now; the event stream covers what comes after.
	e.spawn(func(ctx context.Context) { e.check(ctx, c) })
	return executor.Handle{CallID: spec.CallID, Ref: c.child}, nil
}

// Cancel stops the call's child job and reports it Failed canceled. The
// child is stopped, not purged: until Release it keeps the idempotency token
// taken and tells a next leader's Reconcile that the call was canceled. A
// call whose end was reported already is left alone. A call that moved to
// another child than its Ref (a warm call placed again, a cold one
// dispatched again after a failed artifact download) has that child
// stopped too, also when it moves while Cancel runs; one being placed
// again right now is canceled where it lands.
func (e *Executor) Cancel(ctx context.Context, h executor.Handle) error {
	child := h.Ref
	e.mu.Lock()
	if e.settledLocked(h.CallID) {
		e.mu.Unlock()
		return nil
	}
	c := e.calls[h.CallID]
	if c != nil && child == "" {
		child = c.child
	}
	e.mu.Unlock()
	if child == "" && c == nil {
		found, err := e.childrenByCall(ctx)
		if err != nil {
			return err
		}
		child = found[h.CallID]
	}
	stopped := map[string]bool{}
	swept := false
	next := child
	for {
		if next != "" {
			if err := e.n.DeregisterJob(ctx, next, false); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			stopped[next] = true
		}
		// Whatever the call runs in now must be among the stopped before
		// it is reported canceled: it may have moved meanwhile.
		e.mu.Lock()
		if e.settledLocked(h.CallID) {
			e.mu.Unlock()
			return nil
		}
		if c := e.calls[h.CallID]; c != nil && !stopped[c.child] {
			next = c.child
			e.mu.Unlock()
			continue
		}
		if !swept && child != "" && !isWarmChild(child) {
			// Another executor (the old leader, still alive) may have
			// dispatched the call again from its failed first child
			// before this one's watch moved: stop those tries too.
			e.mu.Unlock()
			swept = true
			later, err := e.laterTriesOf(ctx, h.CallID, child)
			if err != nil {
				// The child is stopped already and nobody calls Cancel
				// again: the watch reports it (a stopped child's end,
				// or its stop while queued) once Nomad answers.
				e.Recheck()
				return err
			}
			for _, l := range later {
				if stopped[l] {
					continue
				}
				if err := e.n.DeregisterJob(ctx, l, false); err != nil && !errors.Is(err, ErrNotFound) {
					return err
				}
				stopped[l] = true
			}
			next = ""
			continue
		}
		first := e.finishIDLocked(h.CallID, child)
		e.mu.Unlock()
		if first {
			e.emit(canceledEvent(h.CallID, child))
		}
		return nil
	}
}

// settledLocked: Cancel has nothing (more) to do here. The call's end was
// reported already (left alone), or the call is being placed again (it is
// marked and canceled where it lands). e.mu held.
func (e *Executor) settledLocked(callID string) bool {
	if _, ok := e.reported[callID]; ok {
		return true
	}
	if _, ok := e.moving[callID]; ok {
		e.moving[callID] = true
		return true
	}
	return false
}

// watch adds a call to the watch list (or returns the one there).
func (e *Executor) watch(callID, child string, limit int64) *call {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.calls[callID]; c != nil {
		return c
	}
	c := &call{id: callID, child: child, stdoutLimit: limit}
	e.calls[callID] = c
	e.byChild[child] = c
	return c
}

// finish marks a call reported, taking it off the watch list; only the
// first caller gets true and reports the call's end. child names the call's
// child when the call is not watched (Cancel of an unknown call).
func (e *Executor) finish(callID, child string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.finishIDLocked(callID, child)
}

// finishIDLocked is finish with e.mu held.
func (e *Executor) finishIDLocked(callID, child string) bool {
	if c := e.calls[callID]; c != nil {
		return e.finishLocked(c)
	}
	if _, ok := e.reported[callID]; ok {
		return false
	}
	e.markReported(callID, child)
	return true
}

// finishCall is finish for a watched call: false once the call was
// reported, or dropped from the watch list by Release.
func (e *Executor) finishCall(c *call) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.finishLocked(c)
}

func (e *Executor) finishLocked(c *call) bool {
	if !e.unwatchLocked(c) {
		return false
	}
	e.markReported(c.id, c.child)
	return true
}

// unwatchLocked marks c done and takes it off the watch list; false when
// it was done already. e.mu held.
func (e *Executor) unwatchLocked(c *call) bool {
	if c.done {
		return false
	}
	c.done = true
	if e.calls[c.id] == c {
		delete(e.calls, c.id)
	}
	if e.byChild[c.child] == c {
		delete(e.byChild, c.child)
	}
	return true
}

// markReported adds a call to the reported set. e.mu held.
func (e *Executor) markReported(callID, child string) {
	if len(e.reported) >= maxReported {
		for id := range e.reported {
			delete(e.reported, id)
			break
		}
	}
	e.reported[callID] = child
}

func (e *Executor) emit(ev executor.Event) {
	select {
	case e.events <- ev:
	case <-e.ctx.Done():
	}
}

// spawn runs f in a goroutine tied to the executor's life.
func (e *Executor) spawn(f func(ctx context.Context)) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		f(e.ctx)
	}()
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
