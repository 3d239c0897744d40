package nomadjob_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
)

// rawNomad is a plain Nomad client on the double: an operator, or another
// leader's executor acting behind this one's back.
func (e *env) rawNomad() *nomad.Client {
	e.t.Helper()
	c, err := nomad.NewClient(&nomad.Config{Address: e.srv.URL})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// childByToken is the call's child dispatched under token.
func (e *env) childByToken(f executor.Function, callID, token string) string {
	e.t.Helper()
	for _, c := range e.childrenOf(f, callID) {
		if j := e.srv.Job(c); j != nil && deref(j.DispatchIdempotencyToken) == token {
			return c
		}
	}
	return ""
}

// TestAgainMiddleTryPurged: a call whose first two children
// failed at their artifact download runs in its third (~3). The second
// child (~2, dead from the start, its command never ran) is purged (an
// operator's `nomad job stop -purge`, a GC pass): its token is free again.
// The next leader's Reconcile of the dispatcher's handle (the first child)
// follows the chain by dispatching "<call>~2" again; Nomad creates a NEW
// child under the freed token and the command runs a second time while ~3
// still runs it.
func TestAgainMiddleTryPurged(t *testing.T) {
	e := newEnv(t)
	f := fn("mid", "cat")
	e.register(f)
	e.fe.FailNext(nomadjob.DefaultShimArtifactPath, 2)
	e.srv.HoldEnds()
	defer e.srv.ReleaseEnds()
	const id = "c-mid-purged"
	ex1, _ := e.newExecutor()
	h, err := ex1.Start(ctx(t), spec(id, f, "once\n"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, hang, "the call runs in its third child", func() bool {
		return e.srv.Executions(id) == 1 && len(e.childrenOf(f, id)) == 3
	})
	_ = ex1.Close()
	second := e.childByToken(f, id, id+"~2")
	third := e.childByToken(f, id, id+"~3")
	if second == "" || third == "" {
		t.Fatalf("children %v: no ~2 or ~3", e.childrenOf(f, id))
	}
	if _, _, err := e.rawNomad().Jobs().Deregister(second, true, nil); err != nil {
		t.Fatal(err)
	}
	if e.srv.Job(second) != nil {
		t.Fatalf("%s not purged", second)
	}
	ex2, _ := e.newExecutor()
	evs, err := ex2.Reconcile(ctx(t), []executor.Handle{h})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("reconcile: %+v", evs)
	// Reconcile dispatches synchronously: a new child is there now if any.
	got := e.childrenOf(f, id)
	if len(got) != 2 {
		again := e.childByToken(f, id, id+"~2")
		t.Errorf("Reconcile dispatched the call again while it runs in %s: children %v (new ~2: %s)", third, got, again)
		waitFor(t, hang, "the new ~2 ran the command", func() bool { return e.srv.Executions(id) >= 2 })
		t.Errorf("the command ran %d times, want once", e.srv.Executions(id))
	}
	if len(evs) != 1 || evs[0].Ref != third {
		t.Errorf("reconcile = %+v, want running in %s", evs, third)
	}
}

// gatedShim is a frontend in front of the double's: the first shim
// download waits for open, then answers 502 (the load balancer's answer
// while a server restarts); everything else goes through.
type gatedShim struct {
	srv   *httptest.Server
	open  chan struct{}
	once  sync.Once
	first sync.Once
}

func newGatedShim(t *testing.T, upstream string) *gatedShim {
	g := &gatedShim{open: make(chan struct{})}
	g.srv = interpose(t, upstream, func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, nomadjob.DefaultShimArtifactPath) {
			return false
		}
		gate := false
		g.first.Do(func() { gate = true })
		if gate {
			<-g.open
			http.Error(w, "bad gateway", http.StatusBadGateway)
		}
		return gate
	})
	t.Cleanup(g.release) // before the proxy closes
	return g
}

func (g *gatedShim) release() { g.once.Do(func() { close(g.open) }) }

// TestAgainCancelStopsLaterTry: after a failover, the new leader's
// executor watches the first child (its shim download still in progress
// at Reconcile). The download fails; the old leader's executor, still
// alive behind a partition, dispatches the call again as <call>~2 (the
// same dispatch the new one would make) before the new one's collect gets
// there. A Cancel on the new leader in that window stops only the first
// child (dead already), reports the call canceled, and its own collect
// then sees the first child stopped and dispatches (and follows) nothing:
// ~2 runs the command to its end after the call was reported canceled.
func TestAgainCancelStopsLaterTry(t *testing.T) {
	e := newEnv(t)
	g := newGatedShim(t, e.fe.URL)
	cfg := e.config()
	cfg.ArtifactBaseURL = g.srv.URL
	mk := func() (*nomadjob.Executor, *collector) {
		ex, col := e.startExecutor(cfg)
		return ex, col
	}
	f := fn("cgap", "sleep", "600")
	ex1, _ := mk()
	if err := ex1.Register(ctx(t), f); err != nil {
		t.Fatal(err)
	}
	const id = "c-cancel-gap"
	h, err := ex1.Start(ctx(t), spec(id, f, ""))
	if err != nil {
		t.Fatal(err)
	}
	_ = ex1.Close() // the old leader: from here on, played by raw calls
	ex2, col2 := mk()
	evs, err := ex2.Reconcile(ctx(t), []executor.Handle{h})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Kind != executor.Running || evs[0].Ref != h.Ref {
		t.Fatalf("reconcile = %+v, want running in %s", evs, h.Ref)
	}
	// The window between the first child's failure and the new leader's
	// move, widened: the new leader's stream lags.
	e.srv.SilenceEvents(true)
	g.release()
	waitFor(t, hang, "the first child failed at its download", func() bool { return e.srv.AllocStatus(h.Ref) == "failed" })
	// The old leader's executor collects that failure and dispatches again.
	j := e.srv.Job(h.Ref)
	if _, _, err := e.rawNomad().Jobs().Dispatch(deref(j.ParentID), map[string]string{nomadjob.MetaCallID: id}, j.Payload, "",
		&nomad.WriteOptions{IdempotencyToken: id + "~2"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, hang, "the call runs in its second child", func() bool { return e.srv.Executions(id) == 1 })
	second := e.childByToken(f, id, id+"~2")
	if err := ex2.Cancel(ctx(t), h); err != nil {
		t.Fatal(err)
	}
	ev := col2.final(t, id)
	if ev.Kind != executor.Failed || ev.Reason != api.ReasonCancelled {
		t.Fatalf("final = %+v, want canceled", ev)
	}
	// The stream comes back; the executor re-checks what it watches.
	e.srv.SilenceEvents(false)
	ex2.Recheck()
	state := ""
	ok := true
	deadline := time.Now().Add(hang)
	for {
		sj := e.srv.Job(second)
		state = "stop=" + strconv.FormatBool(sj != nil && deref(sj.Stop)) + " alloc=" + e.srv.AllocStatus(second)
		if sj == nil || deref(sj.Stop) {
			break
		}
		if time.Now().After(deadline) {
			ok = false
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !ok {
		t.Errorf("the call was reported canceled but its second child %s still runs the command (%s)", second, state)
	}
	if n := col2.finals(id); n != 1 {
		t.Errorf("%d final events, want 1", n)
	}
}

// TestAgainReconcileOfCanceledMovedCall: a call dispatched again (its
// first child failed at its download) is canceled on its leader, which
// dies before the canceled end is recorded. The next leader's Reconcile of
// the dispatcher's handle (the first child, stopped by Cancel) must answer
// canceled, as for a call that never moved, not the first child's download
// failure.
func TestAgainReconcileOfCanceledMovedCall(t *testing.T) {
	e := newEnv(t)
	f := fn("rcan", "sleep", "600")
	e.register(f)
	e.fe.FailNext(nomadjob.DefaultShimArtifactPath, 1)
	const id = "c-rcan"
	ex1, col1 := e.newExecutor()
	h, err := ex1.Start(ctx(t), spec(id, f, ""))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, hang, "the call runs in its second child", func() bool { return e.srv.Executions(id) == 1 })
	if err := ex1.Cancel(ctx(t), h); err != nil {
		t.Fatal(err)
	}
	if ev := col1.final(t, id); ev.Reason != api.ReasonCancelled {
		t.Fatalf("final = %+v, want canceled", ev)
	}
	_ = ex1.Close()
	ex2, _ := e.newExecutor()
	evs, err := ex2.Reconcile(ctx(t), []executor.Handle{h})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Kind != executor.Failed || evs[0].Reason != api.ReasonCancelled {
		t.Errorf("reconcile = %+v, want canceled", evs)
	}
}

// TestAgainReleaseAfterReconcile: the next leader's
// Reconcile answers a moved call's end from its second child; the
// dispatcher records it and releases its handle (the first child). The
// child the call ran in (with its result, holding the token "<call>~2")
// must go too: CleanOrphans runs only when a leader starts, so until the
// next failover it stays.
func TestAgainReleaseAfterReconcile(t *testing.T) {
	e := newEnv(t)
	f := fn("rrel", "cat")
	e.register(f)
	e.fe.FailNext(nomadjob.DefaultShimArtifactPath, 1)
	const id = "c-rrel"
	ex1, col1 := e.newExecutor()
	h, err := ex1.Start(ctx(t), spec(id, f, "x\n"))
	if err != nil {
		t.Fatal(err)
	}
	col1.final(t, id)
	_ = ex1.Close() // died before the end was recorded
	ex2, _ := e.newExecutor()
	evs, err := ex2.Reconcile(ctx(t), []executor.Handle{h})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Kind != executor.Finished || evs[0].Ref == h.Ref {
		t.Fatalf("reconcile = %+v, want finished in the second child", evs)
	}
	if err := ex2.Release(ctx(t), []executor.Handle{h}); err != nil {
		t.Fatal(err)
	}
	if got := e.childrenOf(f, id); len(got) != 0 {
		t.Errorf("children left after Release: %v (the one it ran in: %s)", got, evs[0].Ref)
	}
}

// TestAgainReconcileGoneChildrenListOnce: after a long outage Nomad's
// job GC took the children of many calls (they end lost). Reconcile looks
// for a later try of each gone child by listing every child of the
// cluster and reading each one's job: once per gone handle, so n gone
// calls among m children cost n*m job reads before the new leader starts
// anything. One listing serves them all.
func TestAgainReconcileGoneChildrenListOnce(t *testing.T) {
	e := newEnv(t)
	f := fn("gone", "cat")
	e.register(f)
	const n = 15
	var gone []executor.Handle
	for i := range 2 * n {
		id := fmt.Sprintf("c-gone-%02d", i)
		h, err := e.ex.Start(ctx(t), spec(id, f, "x"))
		if err != nil {
			t.Fatal(err)
		}
		e.col.final(t, id)
		if i < n {
			gone = append(gone, h)
		}
	}
	for _, h := range gone {
		e.srv.GC(h.Ref)
	}
	ex2, _ := e.newExecutor()
	lists, jobs := e.srv.Requests("list"), e.srv.Requests("job")
	evs, err := ex2.Reconcile(ctx(t), gone)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Kind != executor.Failed || ev.Reason != api.ReasonLost {
			t.Errorf("reconcile %s = %v %s, want lost", ev.CallID, ev.Kind, ev.Reason)
		}
	}
	dl, dj := e.srv.Requests("list")-lists, e.srv.Requests("job")-jobs
	t.Logf("%d gone handles: %d job lists, %d job reads", n, dl, dj)
	if dl > 1 || dj > 3*n {
		t.Errorf("%d gone handles cost %d job lists and %d job reads, want one list and O(handles+children) reads", n, dl, dj)
	}
}
