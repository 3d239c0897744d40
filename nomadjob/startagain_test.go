package nomadjob_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
)

// childrenOf lists the children dispatched for a call (any try).
func (e *env) childrenOf(f executor.Function, callID string) []string {
	e.t.Helper()
	ids, err := e.ex.ChildrenOf(ctx(e.t), f)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, id := range ids {
		if j := e.srv.Job(id); j != nil && j.Meta[nomadjob.MetaCallID] == callID {
			out = append(out, id)
		}
	}
	return out
}

// TestDispatchedAgainAfterArtifactFailure: a task whose shim download
// failed (the frontends' load balancer answered 502) never ran its
// command; the call is dispatched again, up to MaxStartAttempts children,
// and runs exactly once. At the limit the last child runs it; past it the
// call fails with the download's error, never having run.
func TestDispatchedAgainAfterArtifactFailure(t *testing.T) {
	for _, fails := range []int{1, nomadjob.MaxStartAttempts - 1, nomadjob.MaxStartAttempts} {
		t.Run(fmt.Sprintf("fails=%d", fails), func(t *testing.T) {
			e := newEnv(t)
			f := fn("art", "cat")
			e.register(f)
			e.fe.FailNext(nomadjob.DefaultShimArtifactPath, fails)
			id := fmt.Sprintf("c-art-%d", fails)
			h, err := e.ex.Start(ctx(t), spec(id, f, "hello\n"))
			if err != nil {
				t.Fatal(err)
			}
			ev := e.col.final(t, id)
			if fails < nomadjob.MaxStartAttempts {
				if ev.Kind != executor.Finished || string(ev.Stdout) != "hello\n" {
					t.Fatalf("final = %v %s %q, want finished with the input", ev.Kind, ev.Message, ev.Stdout)
				}
				if n := e.srv.Executions(id); n != 1 {
					t.Errorf("the command ran %d times, want once", n)
				}
			} else {
				if ev.Kind != executor.Failed || ev.Reason != api.ReasonExecutor ||
					!strings.Contains(ev.Message, "Failed Artifact Download") || !strings.Contains(ev.Message, "502") {
					t.Fatalf("final = %v %s %q, want failed at the artifact download", ev.Kind, ev.Reason, ev.Message)
				}
				if n := e.srv.Executions(id); n != 0 {
					t.Errorf("the command ran %d times, want never", n)
				}
			}
			want := min(fails+1, nomadjob.MaxStartAttempts)
			if got := e.childrenOf(f, id); len(got) != want {
				t.Errorf("children %v, want %d", got, want)
			}
			if n := e.fe.Fetches(nomadjob.DefaultShimArtifactPath); n != want {
				t.Errorf("%d shim downloads, want %d", n, want)
			}
			if n := e.col.finals(id); n != 1 {
				t.Errorf("%d final events, want 1", n)
			}
			if want > 1 && ev.Ref == h.Ref {
				t.Errorf("final Ref %s is the first child, want the one it ran in", ev.Ref)
			}
			// Release of the dispatcher's handle (the first child) purges
			// it and the last; CleanOrphans sweeps what is left.
			if err := e.ex.Release(ctx(t), []executor.Handle{h}); err != nil {
				t.Fatal(err)
			}
			for _, c := range []string{h.Ref, ev.Ref} {
				if e.srv.Job(c) != nil {
					t.Errorf("%s left after Release", c)
				}
			}
			if _, err := e.ex.CleanOrphans(ctx(t), func(string) bool { return false }); err != nil {
				t.Fatal(err)
			}
			if got := e.childrenOf(f, id); len(got) != 0 {
				t.Errorf("children left after CleanOrphans: %v", got)
			}
		})
	}
}

// TestDispatchedAgainByNextLeader: the download fails while no executor
// watches (the leader died after the dispatch); the next leader's
// Reconcile of the dispatcher's handle dispatches the call again and
// collects its one run; a third leader's Reconcile of the same handle
// follows the chain to the same child (the token), dispatching nothing.
func TestDispatchedAgainByNextLeader(t *testing.T) {
	e := newEnv(t)
	f := fn("art2", "cat")
	e.register(f)
	e.fe.FailNext(nomadjob.DefaultShimArtifactPath, 1)
	ex1, _ := e.newExecutor()
	h, err := ex1.Start(ctx(t), spec("c-art-fo", f, "again\n"))
	if err != nil {
		t.Fatal(err)
	}
	_ = ex1.Close()
	waitFor(t, hang, "the first child failed", func() bool { return e.srv.AllocStatus(h.Ref) == "failed" })
	ex2, col2 := e.newExecutor()
	evs, err := ex2.Reconcile(ctx(t), []executor.Handle{h})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Ref == h.Ref || (evs[0].Kind != executor.Running && evs[0].Kind != executor.Finished) {
		t.Fatalf("reconcile = %+v, want running or finished in a new child", evs)
	}
	ev := evs[0]
	if ev.Kind == executor.Running {
		ev = col2.final(t, "c-art-fo")
	}
	if ev.Kind != executor.Finished || string(ev.Stdout) != "again\n" {
		t.Fatalf("final = %v %s %q", ev.Kind, ev.Message, ev.Stdout)
	}
	ex3, _ := e.newExecutor()
	evs, err = ex3.Reconcile(ctx(t), []executor.Handle{h})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Kind != executor.Finished || evs[0].Ref != ev.Ref || string(evs[0].Stdout) != "again\n" {
		t.Fatalf("third leader's reconcile = %+v, want the same child's result", evs)
	}
	if n := e.srv.Executions("c-art-fo"); n != 1 {
		t.Errorf("the command ran %d times, want once", n)
	}
	if got := e.childrenOf(f, "c-art-fo"); len(got) != 2 {
		t.Errorf("children %v, want 2", got)
	}
}

// TestDispatchedAgainCanceled: Cancel of the dispatcher's handle (the
// failed first child) stops the child the call was dispatched again as.
func TestDispatchedAgainCanceled(t *testing.T) {
	e := newEnv(t)
	f := fn("art3", "sleep", "600")
	e.register(f)
	e.fe.FailNext(nomadjob.DefaultShimArtifactPath, 1)
	h, err := e.ex.Start(ctx(t), spec("c-art-cancel", f, ""))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, hang, "the call runs in a second child", func() bool { return e.srv.Executions("c-art-cancel") == 1 })
	if err := e.ex.Cancel(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	ev := e.col.final(t, "c-art-cancel")
	if ev.Kind != executor.Failed || ev.Reason != api.ReasonCancelled {
		t.Fatalf("final = %+v, want canceled", ev)
	}
	// The call may be between its children when Cancel comes (the new
	// one dispatched, not yet watched): that one is stopped as the move
	// finds the call ended.
	state := ""
	defer func() { t.Log(state) }()
	waitFor(t, hang, "every child of the call stopped", func() bool {
		cs := e.childrenOf(f, "c-art-cancel")
		state = fmt.Sprint(cs)
		for _, c := range cs {
			if j := e.srv.Job(c); j.Stop == nil || !*j.Stop {
				state += " running: " + c + " " + e.srv.AllocStatus(c)
				return false
			}
		}
		return len(cs) == 2
	})
	for _, c := range e.childrenOf(f, "c-art-cancel") {
		j := e.srv.Job(c)
		t.Logf("child %s stop=%v status=%s token=%s alloc=%s", c, deref(j.Stop), deref(j.Status), deref(j.DispatchIdempotencyToken), e.srv.AllocStatus(c))
	}
	if n := e.col.finals("c-art-cancel"); n != 1 {
		t.Errorf("%d final events, want 1", n)
	}
}

// TestDispatchedAgainFirstChildGone: the first child (the dispatcher's Ref)
// is dead from the start and Nomad's job GC may take it while the call runs
// on in its second; a new leader's Reconcile finds that one by the call ID
// instead of reporting the call lost.
func TestDispatchedAgainFirstChildGone(t *testing.T) {
	e := newEnv(t)
	f := fn("art4", "cat")
	e.register(f)
	e.fe.FailNext(nomadjob.DefaultShimArtifactPath, 1)
	e.srv.HoldEnds()
	ex1, _ := e.newExecutor()
	h, err := ex1.Start(ctx(t), spec("c-art-gc", f, "kept\n"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, hang, "the call runs in its second child", func() bool { return e.srv.Executions("c-art-gc") == 1 })
	_ = ex1.Close()
	req, err := http.NewRequest(http.MethodDelete, e.srv.URL+"/v1/job/"+url.PathEscape(h.Ref)+"?purge=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if e.srv.Job(h.Ref) != nil {
		t.Fatalf("%s not purged", h.Ref)
	}
	ex2, col2 := e.newExecutor()
	evs, err := ex2.Reconcile(ctx(t), []executor.Handle{h})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Kind != executor.Running || evs[0].Ref == h.Ref {
		t.Fatalf("reconcile = %+v, want running in the second child", evs)
	}
	e.srv.ReleaseEnds()
	ev := col2.final(t, "c-art-gc")
	if ev.Kind != executor.Finished || string(ev.Stdout) != "kept\n" {
		t.Fatalf("final = %v %s %q", ev.Kind, ev.Message, ev.Stdout)
	}
	if n := e.srv.Executions("c-art-gc"); n != 1 {
		t.Errorf("the command ran %d times, want once", n)
	}
}
