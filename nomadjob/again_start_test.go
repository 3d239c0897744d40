package nomadjob_test

import (
	"testing"

	"github.com/hyperfunc/hyperfunc/nomadjob"
)

func TestAgainStartFirstTryGCd(t *testing.T) {
	e := newEnv(t)
	f := fn("sagain", "sleep", "600")
	e.register(f)
	e.fe.FailNext(nomadjob.DefaultShimArtifactPath, 1)
	const id = "c-start-again-gc"
	ex1, _ := e.newExecutor()
	h, err := ex1.Start(ctx(t), spec(id, f, ""))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, hang, "the call runs in its second child", func() bool {
		return e.srv.Executions(id) == 1 && len(e.childrenOf(f, id)) == 2
	})
	second := e.childByToken(f, id, id+"~2")
	waitFor(t, hang, "the leader watches ~2", func() bool { return ex1.WatchedChild(id) == second })
	_ = ex1.Close()
	e.srv.GC(h.Ref)
	ex2, _ := e.newExecutor()
	h2, err := ex2.Start(ctx(t), spec(id, f, ""))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("start again: %+v", h2)
	if got := e.childrenOf(f, id); len(got) != 1 {
		t.Errorf("Start again dispatched the call anew while it runs in %s: children %v", second, got)
		waitFor(t, hang, "the new child ran the command", func() bool { return e.srv.Executions(id) >= 2 })
		t.Errorf("the command ran %d times, want once", e.srv.Executions(id))
	}
}
