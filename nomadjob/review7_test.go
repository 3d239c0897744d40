package nomadjob_test

import (
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
)

// TestReview7LastTryGCdRunsAgain: a call's first child failed at its shim
// download; the leader dispatched it again as <call>~2, which ran the
// command to its end. The leader died before the end was recorded. Nomad's
// job GC (or an operator's purge) then takes ~2, dead, while the first
// child (the handle's Ref) is still there. The next leader's Reconcile of
// the handle collects the first child's failed download, finds no later
// try (~2 is gone, its token free again) and dispatches "<call>~2": Nomad
// creates a NEW child and the command runs a second time. A call whose
// only child was taken the same way is reported Lost, never run again.
func TestReview7LastTryGCdRunsAgain(t *testing.T) {
	e := newEnv(t)
	f := fn("gclast", "cat")
	e.register(f)
	e.fe.FailNext(nomadjob.DefaultShimArtifactPath, 1)
	e.srv.HoldEnds()
	defer e.srv.ReleaseEnds()
	const id = "c-gc-last"
	ex1, _ := e.newExecutor()
	h, err := ex1.Start(ctx(t), spec(id, f, "once\n"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the call runs in its second child", func() bool {
		return e.srv.Executions(id) == 1 && len(e.childrenOf(f, id)) == 2
	})
	_ = ex1.Close() // the leader dies before the end is recorded
	second := e.childByToken(f, id, id+"~2")
	if second == "" {
		t.Fatalf("children %v: no ~2", e.childrenOf(f, id))
	}
	e.srv.ReleaseEnds()
	waitFor(t, 10*time.Second, "the second child ended", func() bool { return e.srv.AllocStatus(second) == "complete" })
	e.srv.GC(second)
	ex2, col2 := e.newExecutor()
	evs, err := ex2.Reconcile(ctx(t), []executor.Handle{h})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("reconcile: %+v", evs)
	if got := e.childrenOf(f, id); len(got) != 1 {
		t.Errorf("Reconcile dispatched the call again after its run in %s: children %v", second, got)
		if len(evs) == 1 && evs[0].Kind == executor.Running {
			ev := col2.final(t, id)
			t.Logf("final: %v %s", ev.Kind, ev.Message)
		}
		waitFor(t, 10*time.Second, "the new child ran the command", func() bool { return e.srv.Executions(id) >= 2 })
	}
	if n := e.srv.Executions(id); n != 1 {
		t.Errorf("the command ran %d times, want once", n)
	}
}
