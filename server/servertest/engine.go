package servertest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
)

// Outcome is what a Behaviour reports when its call ends. A non-empty
// Reason makes the call FAILED with that reason; otherwise a non-zero
// ExitCode fails it with reason exit, and stdout over the call's limit
// fails it with reason output (the first StdoutLimit bytes kept).
type Outcome struct {
	Stdout   []byte
	Stderr   string
	ExitCode int
	Reason   string
	Message  string
}

// Behaviour is what a call does. It runs in its own goroutine; ctx ends on
// cancel or on the function's timeout, release is closed by Engine.Release.
type Behaviour func(ctx context.Context, spec executor.Spec, release <-chan struct{}) Outcome

// ErrFailStart is what Start answers for a function whose command is
// fail-start: a refusal that is not ErrUnavailable, so the call fails.
var ErrFailStart = errors.New("fake executor: cannot start this function")

// Engine is the shared state of one or more FakeExecutors: the calls it
// runs, in what order, how many at once, and how often each was asked to
// start. It is safe for concurrent use.
type Engine struct {
	mu          sync.Mutex
	runs        map[string]*run
	starts      map[string]int // Start invocations per call ID
	order       []string       // call IDs in the order they began to run
	running     map[string]int // per owner
	maxRunning  map[string]int // per owner, high-water mark
	behaviours  map[string]Behaviour
	released    map[string]bool // released before they ran
	releaseAll  bool
	down        bool
	registerErr error
	gate        chan struct{} // non-nil: Start waits for it
	registered  map[string]executor.Function
	pulls       []string
	seq         int
}

type run struct {
	spec    executor.Spec
	ref     string
	release chan struct{}
	cancel  context.CancelCauseFunc
	final   *executor.Event
	watcher *FakeExecutor
}

// NewEngine returns an empty engine, available, with no calls.
func NewEngine() *Engine {
	return &Engine{
		runs: map[string]*run{}, starts: map[string]int{}, running: map[string]int{},
		maxRunning: map[string]int{}, behaviours: map[string]Behaviour{}, released: map[string]bool{},
		registered: map[string]executor.Function{},
	}
}

// Handle makes every call of functions with this image (or, when no image
// matches, this command word) run b.
func (e *Engine) Handle(imageOrCommand string, b Behaviour) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.behaviours[imageOrCommand] = b
}

// SetUnavailable switches the engine off (Start, Reconcile, Cancel and
// Health fail with an error wrapping executor.ErrUnavailable) or on again.
// Calls already running go on.
func (e *Engine) SetUnavailable(down bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.down = down
}

// SetRegisterError makes Register fail with err (nil: succeed again).
func (e *Engine) SetRegisterError(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.registerErr = err
}

// HoldStarts makes every Start wait until ReleaseStarts or until its
// context ends (then it starts nothing), like an engine that hangs while a
// leader dies.
func (e *Engine) HoldStarts() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gate == nil {
		e.gate = make(chan struct{})
	}
}

// ReleaseStarts lets held and future Starts through.
func (e *Engine) ReleaseStarts() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gate != nil {
		close(e.gate)
		e.gate = nil
	}
}

// Release ends the sleep of these calls, running or not started yet.
func (e *Engine) Release(callIDs ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range callIDs {
		if r := e.runs[id]; r != nil {
			closeOnce(r.release)
		} else {
			e.released[id] = true
		}
	}
}

// ReleaseAll ends every sleep, now and from now on.
func (e *Engine) ReleaseAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.releaseAll = true
	for _, r := range e.runs {
		closeOnce(r.release)
	}
}

func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// Starts is how many times Start was invoked for the call (accepted,
// refused or repeated).
func (e *Engine) Starts(callID string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.starts[callID]
}

// Runs is how many times the call's command ran: 0 or 1 unless the
// executor's idempotency is broken (it cannot be here; the count is what a
// test asserts).
func (e *Engine) Runs(callID string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, id := range e.order {
		if id == callID {
			n++
		}
	}
	return n
}

// StartOrder lists call IDs in the order they began to run.
func (e *Engine) StartOrder() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.order)
}

// Running lists the calls running now, in the order they began.
func (e *Engine) Running() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, id := range e.order {
		if r := e.runs[id]; r != nil && r.final == nil {
			out = append(out, id)
		}
	}
	return out
}

// RunningOf counts the calls of owner running now.
func (e *Engine) RunningOf(owner string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.running[owner]
}

// MaxRunning is the most calls of owner that ever ran at once.
func (e *Engine) MaxRunning(owner string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.maxRunning[owner]
}

// Result is the final event of a call that ended, or nil.
func (e *Engine) Result(callID string) *executor.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r := e.runs[callID]; r != nil && r.final != nil {
		ev := *r.final
		return &ev
	}
	return nil
}

// Spec is what the call was started with, or nil.
func (e *Engine) Spec(callID string) *executor.Spec {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r := e.runs[callID]; r != nil {
		sp := r.spec
		return &sp
	}
	return nil
}

// Registered lists the IDs of the functions registered now.
func (e *Engine) Registered() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Sorted(maps.Keys(e.registered))
}

// Function is what the executor was last told of a registered function.
func (e *Engine) Function(id string) (executor.Function, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f, ok := e.registered[id]
	return f, ok
}

// Pulls lists the images pulled, in order.
func (e *Engine) Pulls() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.pulls)
}

func (e *Engine) unavailable(op string) error {
	if e.down {
		return fmt.Errorf("fake engine %s: %w", op, executor.ErrUnavailable)
	}
	return nil
}

// start is Start of the executor x.
func (e *Engine) start(ctx context.Context, x *FakeExecutor, spec executor.Spec) (executor.Handle, error) {
	e.mu.Lock()
	e.starts[spec.CallID]++
	if err := e.unavailable("start"); err != nil {
		e.mu.Unlock()
		return executor.Handle{}, err
	}
	gate := e.gate
	e.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
		}
	}
	if err := ctx.Err(); err != nil {
		return executor.Handle{}, fmt.Errorf("fake engine start: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if r := e.runs[spec.CallID]; r != nil {
		if r.final == nil {
			r.watcher = x
		}
		return executor.Handle{CallID: spec.CallID, Ref: r.ref}, nil
	}
	if commandWord(spec.Function) == "fail-start" {
		return executor.Handle{}, ErrFailStart
	}
	if commandWord(spec.Function) == "refuse-start" {
		// As localexec refuses a missing image: a handle without a Ref
		// (never confirmed), the end as an event without one.
		now := time.Now().UTC()
		ev := executor.Event{CallID: spec.CallID, Kind: executor.Failed, Reason: api.ReasonImage, Message: "no such image", StartedAt: now, EndedAt: now}
		go x.deliver(ev)
		return executor.Handle{CallID: spec.CallID}, nil
	}
	b := e.behaviour(spec.Function)
	e.seq++
	r := &run{spec: spec, ref: fmt.Sprintf("fake-%d", e.seq), release: make(chan struct{}), watcher: x}
	if e.releaseAll || e.released[spec.CallID] {
		close(r.release)
	}
	rctx, cancel := context.WithCancelCause(context.Background())
	if t := spec.Function.Timeout; t > 0 {
		var c2 context.CancelFunc
		rctx, c2 = context.WithTimeoutCause(rctx, t, errTimeout)
		inner := cancel
		cancel = func(err error) { inner(err); c2() }
	}
	r.cancel = cancel
	e.runs[spec.CallID] = r
	e.order = append(e.order, spec.CallID)
	owner := spec.Function.Owner
	e.running[owner]++
	e.maxRunning[owner] = max(e.maxRunning[owner], e.running[owner])
	startedAt := time.Now().UTC()
	go func() {
		out := b(rctx, spec, r.release)
		e.finish(r, spec, out, context.Cause(rctx), startedAt)
	}()
	return executor.Handle{CallID: spec.CallID, Ref: r.ref}, nil
}

var (
	errTimeout  = errors.New("timeout")
	errCanceled = errors.New("canceled")
)

func (e *Engine) finish(r *run, spec executor.Spec, out Outcome, cause error, startedAt time.Time) {
	ev := executor.Event{
		CallID: spec.CallID, Kind: executor.Finished, Ref: r.ref, ExitCode: out.ExitCode,
		Stdout: out.Stdout, Stderr: out.Stderr, StartedAt: startedAt, EndedAt: time.Now().UTC(),
	}
	limit := spec.StdoutLimit
	switch {
	case errors.Is(cause, errCanceled):
		ev.Kind, ev.Reason, ev.Message = executor.Failed, api.ReasonCancelled, "canceled"
	case errors.Is(cause, errTimeout):
		ev.Kind, ev.Reason, ev.Message = executor.Failed, api.ReasonTimeout, "timeout after "+spec.Function.Timeout.String()
	case out.Reason != "":
		ev.Kind, ev.Reason, ev.Message = executor.Failed, out.Reason, out.Message
	case out.ExitCode != 0:
		ev.Kind, ev.Reason, ev.Message = executor.Failed, api.ReasonExit, "exit status "+strconv.Itoa(out.ExitCode)
	case limit > 0 && int64(len(out.Stdout)) > limit:
		ev.Kind, ev.Reason, ev.Truncated = executor.Failed, api.ReasonOutput, true
		ev.Message = fmt.Sprintf("output exceeds %d bytes", limit)
		ev.Stdout = ev.Stdout[:limit]
	}
	e.mu.Lock()
	r.final = &ev
	e.running[spec.Function.Owner]--
	w := r.watcher
	e.mu.Unlock()
	r.cancel(nil)
	if w != nil {
		w.deliver(ev)
	}
}

func (e *Engine) cancel(h executor.Handle) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.unavailable("cancel"); err != nil {
		return err
	}
	if r := e.runs[h.CallID]; r != nil && r.final == nil {
		r.cancel(errCanceled)
	}
	return nil
}

// Forget drops what the engine knows of a call, as a reset engine (or
// another node's) would: its run goes on reporting nothing, and
// Reconcile answers NotFound.
func (e *Engine) Forget(callID string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r := e.runs[callID]; r != nil {
		r.watcher = nil
	}
	delete(e.runs, callID)
}

func (e *Engine) reconcile(x *FakeExecutor, hs []executor.Handle) ([]executor.Event, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.unavailable("reconcile"); err != nil {
		return nil, err
	}
	out := make([]executor.Event, 0, len(hs))
	for _, h := range hs {
		r := e.runs[h.CallID]
		switch {
		case r == nil:
			out = append(out, executor.Event{CallID: h.CallID, Kind: executor.NotFound})
		case r.final != nil:
			out = append(out, *r.final)
		default:
			r.watcher = x
			out = append(out, executor.Event{CallID: h.CallID, Kind: executor.Running, Ref: r.ref})
		}
	}
	return out, nil
}

func (e *Engine) register(fn executor.Function) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.registerErr != nil {
		return e.registerErr
	}
	e.registered[fn.ID] = fn
	return nil
}

func (e *Engine) deregister(fn executor.Function) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.registered, fn.ID)
}

func (e *Engine) pull(image string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.unavailable("pull"); err != nil {
		return err
	}
	e.pulls = append(e.pulls, image)
	return nil
}

func (e *Engine) health() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.unavailable("health")
}

func commandWord(fn executor.Function) string {
	if len(fn.Command) == 0 {
		return ""
	}
	return fn.Command[0]
}

// behaviour picks what a call of fn does: by image, then by command word
// (a handler first, a built-in next), else cat. Called with e.mu held.
func (e *Engine) behaviour(fn executor.Function) Behaviour {
	if b := e.behaviours[fn.Image]; b != nil {
		return b
	}
	word := commandWord(fn)
	if b := e.behaviours[word]; b != nil {
		return b
	}
	var args []string
	if len(fn.Command) > 1 {
		args = fn.Command[1:]
	}
	switch word {
	case "echo":
		return func(context.Context, executor.Spec, <-chan struct{}) Outcome {
			return Outcome{Stdout: []byte(strings.Join(args, " ") + "\n")}
		}
	case "sleep":
		var d time.Duration
		if len(args) > 0 {
			d, _ = time.ParseDuration(args[0])
		}
		return sleepBehaviour(d)
	case "exit":
		code := 1
		if len(args) > 0 {
			code, _ = strconv.Atoi(args[0])
		}
		return func(context.Context, executor.Spec, <-chan struct{}) Outcome {
			return Outcome{ExitCode: code, Stderr: "exit " + strconv.Itoa(code)}
		}
	case "env":
		return func(_ context.Context, sp executor.Spec, _ <-chan struct{}) Outcome {
			var b strings.Builder
			for _, k := range slices.Sorted(maps.Keys(sp.Env)) {
				b.WriteString(k + "=" + sp.Env[k] + "\n")
			}
			return Outcome{Stdout: []byte(b.String())}
		}
	case "output":
		n := 0
		if len(args) > 0 {
			n, _ = strconv.Atoi(args[0])
		}
		return func(context.Context, executor.Spec, <-chan struct{}) Outcome {
			return Outcome{Stdout: []byte(strings.Repeat("x", n))}
		}
	}
	return func(_ context.Context, sp executor.Spec, _ <-chan struct{}) Outcome {
		return Outcome{Stdout: sp.Stdin}
	}
}

func sleepBehaviour(d time.Duration) Behaviour {
	return func(ctx context.Context, sp executor.Spec, release <-chan struct{}) Outcome {
		var timer <-chan time.Time
		if d > 0 {
			t := time.NewTimer(d)
			defer t.Stop()
			timer = t.C
		}
		select {
		case <-release:
		case <-timer:
		case <-ctx.Done():
		}
		return Outcome{Stdout: sp.Stdin}
	}
}
