package nomadjob_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
)

// hang only catches a hang: the double runs tasks in milliseconds.
const hang = time.Minute

func (e *env) warmFinal(col *collector, callID string) executor.Event {
	e.t.Helper()
	return col.finalWithin(e.t, hang, callID)
}

// newWarmEnv is a double with function name (command argv) registered and
// a ready pool of n.
func newWarmEnv(t *testing.T, n int, name string, argv ...string) (*env, executor.Function) {
	t.Helper()
	e := newEnv(t)
	f := fn(name, argv...)
	e.register(f)
	e.ex.SetWarm([]executor.WarmTarget{{Function: f, N: n}})
	waitReady(t, e.ex, f.ID, n)
	return e, f
}

// startFinal starts a call on e's executor and waits for its final event.
func (e *env) startFinal(s executor.Spec) executor.Event {
	e.t.Helper()
	if _, err := e.ex.Start(ctx(e.t), s); err != nil {
		e.t.Fatal(err)
	}
	return e.warmFinal(e.col, s.CallID)
}

func waitReady(t *testing.T, ex *nomadjob.Executor, fnID string, n int) {
	t.Helper()
	waitFor(t, hang, fmt.Sprintf("%d warm sandboxes of %s", n, fnID), func() bool { return ex.Warm().Ready[fnID] == n })
}

// Every warm call runs once, in a sandbox no other call had: the task
// starts counted per call are one each, and no child takes two calls.
func TestWarmSandboxServesOneCall(t *testing.T) {
	e, f := newWarmEnv(t, 2, "echo", "sh", "-c", "echo $HYPER_CALL_ID; cat; echo oops >&2")
	children := map[string]string{}
	for i := range 5 {
		s := spec(fmt.Sprintf("c-warm-%d", i), f, "in")
		if _, err := e.ex.Start(ctx(t), s); err != nil {
			t.Fatal(err)
		}
		ev := e.warmFinal(e.col, s.CallID)
		if ev.Kind != executor.Finished || string(ev.Stdout) != s.CallID+"\nin" || ev.Stderr != "oops\n" {
			t.Fatalf("call %d: %+v %q", i, ev, ev.Stdout)
		}
		if !strings.Contains(ev.Ref, nomadjob.WarmSuffix+"/dispatch-") {
			t.Fatalf("call %d ran cold (%s) with a pool ready", i, ev.Ref)
		}
		if prev, ok := children[ev.Ref]; ok {
			t.Fatalf("child %s took %s and %s", ev.Ref, prev, s.CallID)
		}
		children[ev.Ref] = s.CallID
		if got := e.srv.Variable(nomadjob.WarmVariablePath(ev.Ref))[nomadjob.ItemCallID]; got != s.CallID {
			t.Fatalf("the variable of %s names %q", ev.Ref, got)
		}
		waitReady(t, e.ex, f.ID, 2) // refilled
	}
	for _, call := range children {
		if n := e.srv.Executions(call); n != 1 {
			t.Errorf("%s ran %d times", call, n)
		}
	}
	if st := e.ex.Warm(); st.Hits != 5 || st.Misses != 0 {
		t.Errorf("stats %+v, want 5 hits", st)
	}
	// Release purges the child and deletes its variable.
	var hs []executor.Handle
	for child, call := range children {
		hs = append(hs, executor.Handle{CallID: call, Ref: child})
	}
	if err := e.ex.Release(ctx(t), hs); err != nil {
		t.Fatal(err)
	}
	for child := range children {
		if e.srv.Job(child) != nil || e.srv.Variable(nomadjob.WarmVariablePath(child)) != nil {
			t.Errorf("%s or its variable left after Release", child)
		}
	}
}

// Two executors (a stale leader and the new one) hold the same sandbox:
// the new one took it over. Both hand it a call at once; the variable's
// check-and-set lets one through, the other goes elsewhere (cold here).
// Each call runs exactly once and the sandbox runs one of them.
func TestWarmTwoExecutorsRaceForOneSandbox(t *testing.T) {
	e, f := newWarmEnv(t, 1, "race", "sh", "-c", "echo $HYPER_CALL_ID")
	b, bcol := e.newExecutor()
	b.SetWarm([]executor.WarmTarget{{Function: f, N: 1}})
	waitReady(t, b, f.ID, 1)
	sandbox := e.ex.WarmChildren(f.ID)[0]
	if got := b.WarmChildren(f.ID); !slices.Equal(got, []string{sandbox}) {
		t.Fatalf("the second executor holds %v, want the first's %s", got, sandbox)
	}
	// Neither refills while they race: the loser must find nothing.
	e.ex.DropWarm()
	b.DropWarm()
	// (DropWarm forgets the pools; put the one sandbox back in both.)
	e.ex.SetWarm([]executor.WarmTarget{{Function: f, N: 1}})
	b.SetWarm([]executor.WarmTarget{{Function: f, N: 1}})
	waitReady(t, e.ex, f.ID, 1)
	waitReady(t, b, f.ID, 1)
	if !slices.Equal(e.ex.WarmChildren(f.ID), []string{sandbox}) || !slices.Equal(b.WarmChildren(f.ID), []string{sandbox}) {
		t.Fatalf("pools %v %v, want both %s", e.ex.WarmChildren(f.ID), b.WarmChildren(f.ID), sandbox)
	}
	sa, sb := spec("c-race-a", f, ""), spec("c-race-b", f, "")
	errs := make(chan error, 2)
	go func() { _, err := e.ex.Start(context.Background(), sa); errs <- err }()
	go func() { _, err := b.Start(context.Background(), sb); errs <- err }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	ea, eb := e.warmFinal(e.col, sa.CallID), e.warmFinal(bcol, sb.CallID)
	for _, ev := range []executor.Event{ea, eb} {
		if ev.Kind != executor.Finished || string(ev.Stdout) != ev.CallID+"\n" {
			t.Fatalf("%s: %+v %q", ev.CallID, ev, ev.Stdout)
		}
		if n := e.srv.Executions(ev.CallID); n != 1 {
			t.Fatalf("%s ran %d times", ev.CallID, n)
		}
	}
	if (ea.Ref == sandbox) == (eb.Ref == sandbox) {
		t.Fatalf("refs %s and %s: exactly one call must have run in %s", ea.Ref, eb.Ref, sandbox)
	}
	owner := e.srv.Variable(nomadjob.WarmVariablePath(sandbox))[nomadjob.ItemCallID]
	if (owner == sa.CallID) != (ea.Ref == sandbox) {
		t.Fatalf("the sandbox's variable names %s", owner)
	}
}

// An update: a call of the new version never takes a sandbox of the old
// one (it goes cold until the new pool is up), the old pool is drained,
// and the new pool's calls run the new command.
func TestWarmUpdateNeverRunsOldVersion(t *testing.T) {
	e, v1 := newWarmEnv(t, 2, "upd", "echo", "v1")
	old := e.ex.WarmChildren(v1.ID)
	v2 := v1
	v2.Command = []string{"echo", "v2"}
	e.register(v2)
	s := spec("c-upd-1", v2, "")
	if ev := e.startFinal(s); ev.Kind != executor.Finished || string(ev.Stdout) != "v2\n" || slices.Contains(old, ev.Ref) {
		t.Fatalf("call after the update: %+v %q", ev, ev.Stdout)
	}
	e.ex.SetWarm([]executor.WarmTarget{{Function: v2, N: 2}})
	waitFor(t, hang, "the old version's sandboxes stopped", func() bool {
		for _, c := range old {
			if j := e.srv.Job(c); j != nil && !deref(j.Stop) {
				return false
			}
		}
		return true
	})
	waitReady(t, e.ex, v2.ID, 2)
	s = spec("c-upd-2", v2, "")
	if ev := e.startFinal(s); ev.Kind != executor.Finished || string(ev.Stdout) != "v2\n" || !strings.Contains(ev.Ref, nomadjob.WarmSuffix+"/") {
		t.Fatalf("warm call of the new version: %+v %q", ev, ev.Stdout)
	}
	for _, c := range old {
		if e.srv.Variable(nomadjob.WarmVariablePath(c)) != nil {
			t.Errorf("old sandbox %s got a call", c)
		}
	}
}

// A sandbox stopped before its call: the call still runs, once, and the
// pool boots a replacement.
func TestWarmDeadSandboxReplaced(t *testing.T) {
	e, f := newWarmEnv(t, 1, "dead", "echo", "ok")
	dead := e.ex.WarmChildren(f.ID)[0]
	stopJob(t, e.srv.URL, dead)
	// Once Nomad says it ended (the executor may not have heard yet), a
	// call never goes there.
	waitFor(t, hang, "the stopped sandbox's allocation ended", func() bool { return e.srv.AllocStatus(dead) == "complete" })
	s := spec("c-dead-1", f, "")
	ev := e.startFinal(s)
	if ev.Kind != executor.Finished || string(ev.Stdout) != "ok\n" || ev.Ref == dead {
		t.Fatalf("call after the sandbox died: %+v %q", ev, ev.Stdout)
	}
	if n := e.srv.Executions(s.CallID); n != 1 {
		t.Fatalf("ran %d times", n)
	}
	waitFor(t, hang, "a replacement sandbox", func() bool {
		got := e.ex.WarmChildren(f.ID)
		return len(got) == 1 && got[0] != dead
	})
	s = spec("c-dead-2", f, "")
	if ev := e.startFinal(s); ev.Kind != executor.Finished || !strings.Contains(ev.Ref, nomadjob.WarmSuffix+"/") {
		t.Fatalf("call on the replacement: %+v", ev)
	}
}

// A new leader's Reconcile finds the call a warm child took from the
// child's variable, with no Ref recorded, and collects it once.
func TestWarmReconcileFindsTheClaim(t *testing.T) {
	e, f := newWarmEnv(t, 1, "rec", "echo", "found")
	s := spec("c-rec-1", f, "")
	h, err := e.ex.Start(ctx(t), s)
	if err != nil {
		t.Fatal(err)
	}
	e.warmFinal(e.col, s.CallID)
	_ = e.ex.Close() // the leader dies before recording anything
	b, _ := e.newExecutor()
	evs, err := b.Reconcile(ctx(t), []executor.Handle{{CallID: s.CallID}})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Kind != executor.Finished || string(evs[0].Stdout) != "found\n" || evs[0].Ref != h.Ref {
		t.Fatalf("reconcile: %+v", evs)
	}
	if n := e.srv.Executions(s.CallID); n != 1 {
		t.Fatalf("ran %d times", n)
	}
	// Its sandbox is claimed: a new leader's take-over leaves it alone and
	// boots its own.
	b.SetWarm([]executor.WarmTarget{{Function: f, N: 1}})
	waitReady(t, b, f.ID, 1)
	if got := b.WarmChildren(f.ID); got[0] == h.Ref {
		t.Fatalf("the new leader pooled the claimed child %s", h.Ref)
	}
}

// The pool never holds more than N, however many calls take sandboxes.
func TestWarmPoolBounded(t *testing.T) {
	e, f := newWarmEnv(t, 2, "bound", "echo", "x")
	for i := range 6 {
		s := spec(fmt.Sprintf("c-bound-%d", i), f, "")
		if _, err := e.ex.Start(ctx(t), s); err != nil {
			t.Fatal(err)
		}
		e.warmFinal(e.col, s.CallID)
	}
	waitReady(t, e.ex, f.ID, 2)
	// Unclaimed live sandboxes in Nomad: at most N (no spare boots).
	waitFor(t, hang, "at most 2 unclaimed sandboxes", func() bool {
		n := 0
		for _, id := range e.srv.JobIDs() {
			j := e.srv.Job(id)
			if strings.Contains(id, nomadjob.WarmSuffix+"/dispatch-") && !deref(j.Stop) && deref(j.Status) != "dead" && e.srv.Variable(nomadjob.WarmVariablePath(id)) == nil {
				n++
			}
		}
		return n <= 2
	})
	e.ex.SetWarm(nil)
	if st := e.ex.Warm(); len(st.Ready) != 0 {
		t.Fatalf("pools after SetWarm(nil): %+v", st.Ready)
	}
}

func stopJob(t *testing.T, addr, id string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, addr+"/v1/job/"+url.PathEscape(id), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func deref[T any](p *T) T {
	var z T
	if p == nil {
		return z
	}
	return *p
}

// A function whose warm children's variable paths would be over Nomad's
// 128 characters gets no pool (every claim would be refused); its calls
// start cold.
func TestWarmPathTooLongGoesCold(t *testing.T) {
	e := newEnv(t)
	f := fn(strings.Repeat("n", 63), "echo", "cold")
	f.Owner = strings.Repeat("o", 40)
	f.ID = f.Owner + "/" + f.Name
	e.register(f)
	e.ex.SetWarm([]executor.WarmTarget{{Function: f, N: 1}})
	if st := e.ex.Warm(); len(st.Ready) != 0 {
		t.Fatalf("a pool for a function too long for variable paths: %+v", st.Ready)
	}
	s := spec("c-long", f, "")
	if ev := e.startFinal(s); ev.Kind != executor.Finished || string(ev.Stdout) != "cold\n" || strings.Contains(ev.Ref, nomadjob.WarmSuffix+"/") {
		t.Fatalf("%+v", ev)
	}
}

// A claim whose envelope never reaches the task (its template cannot read
// the variable: ACLs without the warm job's policy) fails the call after
// WarmDeliverTimeout instead of hanging, stops the sandbox, and runs
// nothing.
func TestWarmUndeliveredFails(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.WarmDeliverTimeout = 200 * time.Millisecond
	ex, col := e.startExecutor(cfg)
	f := fn("acl", "echo", "x")
	if err := ex.Register(ctx(t), f); err != nil {
		t.Fatal(err)
	}
	e.srv.HideVariables(true)
	ex.SetWarm([]executor.WarmTarget{{Function: f, N: 1}})
	waitReady(t, ex, f.ID, 1)
	s := spec("c-acl", f, "")
	h, err := ex.Start(ctx(t), s)
	if err != nil {
		t.Fatal(err)
	}
	ev := e.warmFinal(col, s.CallID)
	if ev.Kind != executor.Failed || ev.Reason != "executor" || !strings.Contains(ev.Message, "did not receive its call") {
		t.Fatalf("%+v", ev)
	}
	waitFor(t, hang, "the sandbox stopped", func() bool { j := e.srv.Job(h.Ref); return j == nil || deref(j.Stop) })
	if n := e.srv.Executions(s.CallID); n != 0 {
		t.Fatalf("ran %d times", n)
	}
}

// One call, two leaders: a stale one with a warm sandbox ready and the new
// one without a pool both Start it (in both orders, and at once). The
// call's record (where it runs) makes the second follow the first: one
// run, one child.
func TestWarmOneCallTwoLeaders(t *testing.T) {
	for _, order := range []string{"cold-first", "warm-first", "together"} {
		t.Run(order, func(t *testing.T) {
			e := newEnv(t)
			f := fn("two", "sh", "-c", "echo $HYPER_CALL_ID")
			e.register(f)
			e.ex.SetWarm([]executor.WarmTarget{{Function: f, N: 1}})
			waitReady(t, e.ex, f.ID, 1)
			cold, ccol := e.newExecutor()
			s := spec("c-two-"+order, f, "")
			var hw, hc executor.Handle
			var errW, errC error
			switch order {
			case "cold-first":
				hc, errC = cold.Start(ctx(t), s)
				hw, errW = e.ex.Start(ctx(t), s)
			case "warm-first":
				hw, errW = e.ex.Start(ctx(t), s)
				hc, errC = cold.Start(ctx(t), s)
			default:
				done := make(chan struct{})
				go func() { hc, errC = cold.Start(context.Background(), s); close(done) }()
				hw, errW = e.ex.Start(context.Background(), s)
				<-done
			}
			if errW != nil || errC != nil {
				t.Fatalf("starts: %v, %v", errW, errC)
			}
			if hw.Ref != hc.Ref {
				t.Fatalf("the two leaders started the call in %s and %s", hw.Ref, hc.Ref)
			}
			for _, col := range []*collector{e.col, ccol} {
				if ev := e.warmFinal(col, s.CallID); ev.Kind != executor.Finished || string(ev.Stdout) != s.CallID+"\n" {
					t.Fatalf("%+v", ev)
				}
			}
			if n := e.srv.Executions(s.CallID); n != 1 {
				t.Fatalf("ran %d times", n)
			}
			rec := e.srv.Variable(nomadjob.CallVariablePath("", s.CallID))
			want := "cold"
			if strings.Contains(hw.Ref, nomadjob.WarmSuffix+"/") {
				want = hw.Ref
			}
			if rec[nomadjob.ItemChild] != want {
				t.Fatalf("record %v, want child %s", rec, want)
			}
			if err := e.ex.Release(ctx(t), []executor.Handle{hw}); err != nil {
				t.Fatal(err)
			}
			if e.srv.Variable(nomadjob.CallVariablePath("", s.CallID)) != nil {
				t.Fatal("the call's record outlived Release")
			}
		})
	}
}

// A sandbox that dies under its call, or between the claim's allocation
// check and Nomad noticing: the call ends (Failed, never hangs) and runs
// at most once.
func TestWarmSandboxDiesUnderItsCall(t *testing.T) {
	e, f := newWarmEnv(t, 1, "under", "sleep", "600")
	s := spec("c-under", f, "")
	h, err := e.ex.Start(ctx(t), s)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, hang, "the call running in its sandbox", func() bool { return e.srv.Executions(s.CallID) == 1 })
	stopJob(t, e.srv.URL, h.Ref)
	if ev := e.warmFinal(e.col, s.CallID); ev.Kind != executor.Failed {
		t.Fatalf("%+v", ev)
	}
	if n := e.srv.Executions(s.CallID); n != 1 {
		t.Fatalf("ran %d times", n)
	}
}

// A call ID Nomad would refuse in a variable path (a dot, a slash) is
// recorded under its hash: the call still goes warm, guarded.
func TestWarmCallIDNotPathSafe(t *testing.T) {
	e, f := newWarmEnv(t, 1, "odd", "echo", "odd")
	s := spec("c.odd/1", f, "")
	if ev := e.startFinal(s); ev.Kind != executor.Finished || !strings.Contains(ev.Ref, nomadjob.WarmSuffix+"/") {
		t.Fatalf("%+v", ev)
	}
	path := nomadjob.CallVariablePath("", s.CallID)
	if !strings.HasPrefix(path, "hyperfunc/calls/none/h-") || e.srv.Variable(path)[nomadjob.ItemCallID] != s.CallID {
		t.Fatalf("record at %s: %v", path, e.srv.Variable(path))
	}
}

// A sandbox that dies between the claim and the shim's start (no
// .started, no result: nothing ran): the executor places the call again,
// in the pool's other sandbox, and it runs once. Release of the first
// handle (the child the dispatcher knows) purges both children and the
// record; a new leader's Reconcile of that handle follows the record.
func TestWarmUndeliveredPlacedAgain(t *testing.T) {
	e, f := newWarmEnv(t, 2, "again", "sh", "-c", "echo $HYPER_CALL_ID")
	e.srv.CrashWarmTasks(1)
	s := spec("c-again", f, "")
	h, err := e.ex.Start(ctx(t), s)
	if err != nil {
		t.Fatal(err)
	}
	ev := e.warmFinal(e.col, s.CallID)
	if ev.Kind != executor.Finished || string(ev.Stdout) != s.CallID+"\n" || ev.Ref == h.Ref {
		t.Fatalf("%+v (first child %s)", ev, h.Ref)
	}
	if n := e.srv.Executions(s.CallID); n != 1 {
		t.Fatalf("ran %d times", n)
	}
	if got := e.srv.Variable(nomadjob.CallVariablePath("", s.CallID))[nomadjob.ItemChild]; got != ev.Ref {
		t.Fatalf("record names %q, want %s", got, ev.Ref)
	}
	b, _ := e.newExecutor()
	evs, err := b.Reconcile(ctx(t), []executor.Handle{h})
	if err != nil || len(evs) != 1 || evs[0].Kind != executor.Finished || evs[0].Ref != ev.Ref {
		t.Fatalf("reconcile of the first handle: %+v %v", evs, err)
	}
	if err := e.ex.Release(ctx(t), []executor.Handle{h}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{h.Ref, ev.Ref} {
		if e.srv.Job(c) != nil {
			t.Errorf("%s left after Release", c)
		}
	}
	if e.srv.Variable(nomadjob.CallVariablePath("", s.CallID)) != nil {
		t.Error("record left after Release")
	}
}

// TestWarmSuffixIsNoFunctionName: the cold job of a function named
// "<x>-warm" (or anything else) is never taken for x's warm job or its
// children, whatever the names.
func TestWarmSuffixIsNoFunctionName(t *testing.T) {
	x := executor.Function{ID: "alice/x", Owner: "alice", Name: "x"}
	for _, name := range []string{"x-warm", "warm", "x-warm-big", "w"} {
		other := executor.Function{ID: "alice/" + name, Owner: "alice", Name: name}
		cold := nomadjob.JobID("cluster", other)
		if cold == nomadjob.WarmJobID("cluster", x) {
			t.Fatalf("function %q's job is x's warm job %s", name, cold)
		}
		if nomadjob.IsWarmChild(cold + "/dispatch-1-abc") {
			t.Fatalf("a cold child of %q (%s) is taken for a warm one", name, cold)
		}
	}
	// Across owners too: user alice-x's function "warm".
	ax := executor.Function{ID: "alice-x/warm", Owner: "alice-x", Name: "warm"}
	if nomadjob.JobID("cluster", ax) == nomadjob.WarmJobID("cluster", x) || nomadjob.IsWarmChild(nomadjob.JobID("cluster", ax)+"/dispatch-1-abc") {
		t.Fatal("alice-x/warm's job collides with alice/x's warm job")
	}
	if !nomadjob.IsWarmChild(nomadjob.WarmJobID("cluster", x) + "/dispatch-1-abc") {
		t.Fatal("x's warm child is not recognised")
	}
}

// A sandbox that ends after its envelope was delivered (Nomad's Signaling
// event), with no .started and no result, may have run the call: a
// function can remove .started and crash its shim. The call is not placed
// again (it would run twice); it ends failed, having run once.
func TestWarmDeliveredCrashNotPlacedAgain(t *testing.T) {
	e, f := newWarmEnv(t, 2, "crashed", "sh", "-c", "echo $HYPER_CALL_ID")
	e.srv.CrashWarmTasksDelivered(1)
	s := spec("c-crashed", f, "")
	h, err := e.ex.Start(ctx(t), s)
	if err != nil {
		t.Fatal(err)
	}
	ev := e.warmFinal(e.col, s.CallID)
	if ev.Kind != executor.Failed || ev.Ref != h.Ref {
		t.Fatalf("%+v (its child %s): want it failed where it was", ev, h.Ref)
	}
	if n := e.srv.Executions(s.CallID); n != 1 {
		t.Fatalf("ran %d times", n)
	}
}

// TestWarmPlacedAgainCanceled: a warm call placed again (its first sandbox
// died before the envelope reached it) runs in another child than the Ref
// the dispatcher holds; Cancel of that handle stops the child the call runs
// in, not only the dead one, and the call is reported canceled once.
func TestWarmPlacedAgainCanceled(t *testing.T) {
	e, f := newWarmEnv(t, 2, "againcancel", "sleep", "600")
	e.srv.CrashWarmTasks(1)
	s := spec("c-again-cancel", f, "")
	h, err := e.ex.Start(ctx(t), s)
	if err != nil {
		t.Fatal(err)
	}
	var moved string
	waitFor(t, hang, "the call placed again and running", func() bool {
		moved = e.srv.Variable(nomadjob.CallVariablePath("", s.CallID))[nomadjob.ItemChild]
		return moved != "" && moved != h.Ref && e.srv.Executions(s.CallID) == 1
	})
	if err := e.ex.Cancel(ctx(t), h); err != nil {
		t.Fatal(err)
	}
	ev := e.col.final(t, s.CallID)
	if ev.Kind != executor.Failed || ev.Reason != api.ReasonCancelled {
		t.Fatalf("final = %+v, want canceled", ev)
	}
	if j := e.srv.Job(moved); j == nil || j.Stop == nil || !*j.Stop {
		t.Fatalf("the child the call runs in (%s) was not stopped by Cancel", moved)
	}
	if n := e.col.finals(s.CallID); n != 1 {
		t.Fatalf("%d final events, want 1", n)
	}
}

// TestWarmCanceledWhilePlacedAgain: Cancel comes while a warm call is being
// placed again (off the watch list, its new child not dispatched yet): the
// call is canceled where it lands, its new child stopped, and it is
// reported canceled once, not run to its end.
func TestWarmCanceledWhilePlacedAgain(t *testing.T) {
	e := newEnv(t)
	f := fn("movecancel", "sleep", "600")
	e.register(f)
	var armed atomic.Bool
	refills := make(chan struct{})
	var once sync.Once
	canceled := make(chan error, 1)
	handle := make(chan executor.Handle, 1)
	e.srv.BeforeDispatch = func(parent string) {
		if !armed.Load() {
			return
		}
		if strings.HasSuffix(parent, nomadjob.WarmSuffix) {
			<-refills // no new sandbox: the call goes cold
			return
		}
		once.Do(func() { canceled <- e.ex.Cancel(context.Background(), <-handle) })
	}
	t.Cleanup(func() { close(refills) })
	e.ex.SetWarm([]executor.WarmTarget{{Function: f, N: 1}})
	waitReady(t, e.ex, f.ID, 1)
	armed.Store(true)
	e.srv.CrashWarmTasks(1)
	s := spec("c-move-cancel", f, "")
	h, err := e.ex.Start(ctx(t), s)
	if err != nil {
		t.Fatal(err)
	}
	handle <- h
	ev := e.col.final(t, s.CallID)
	select {
	case err := <-canceled:
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatal("the call ended before it was placed again")
	}
	if ev.Kind != executor.Failed || ev.Reason != api.ReasonCancelled {
		t.Fatalf("final = %+v, want canceled", ev)
	}
	cold := ""
	for _, id := range e.srv.JobIDs() {
		if strings.HasPrefix(id, nomadjob.JobID("", f)+"/dispatch-") {
			cold = id
		}
	}
	if j := e.srv.Job(cold); cold == "" || j.Stop == nil || !*j.Stop {
		t.Fatalf("the cold child the call went to (%q) was not stopped", cold)
	}
	if n := e.col.finals(s.CallID); n != 1 {
		t.Fatalf("%d final events, want 1", n)
	}
}
