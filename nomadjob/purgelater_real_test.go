package nomadjob_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
	"github.com/hyperfunc/hyperfunc/nomadjob/nomadtest"
)

// TestRealNomadLateDispatchAfterRelease is TestLateDispatchAfterRelease on
// the real agent: a released (dead, not yet purged) child answers a late
// dispatch of its call with the same token, so the call does not run
// again. Purged at once, as Release did, the token was free.
func TestRealNomadLateDispatchAfterRelease(t *testing.T) {
	addr := nomadtest.RealAddr(t)
	cluster := "cluster-rlate-" + fmt.Sprint(time.Now().UnixNano())
	fe := nomadtest.NewFrontend(t, nomadjob.DefaultShimArtifactPath, realShimArchive(t))
	mk := func(delay time.Duration) (*nomadjob.Executor, *collector) {
		ex, err := nomadjob.New(nomadjob.Config{
			Address: addr, Token: os.Getenv("NOMAD_TOKEN"), ArtifactBaseURL: fe.URL, ShimSHA256: fe.ShimSHA256,
			ClusterID: cluster, RecheckInterval: time.Hour, PurgeDelay: delay,
		})
		if err != nil {
			t.Fatal(err)
		}
		col := newCollector(ex.Events())
		t.Cleanup(func() { _ = ex.Close(); col.stop() })
		return ex, col
	}
	leader, col := mk(time.Hour)
	cleaner, _ := mk(0)
	f := executor.Function{
		ID: "real/rlate", Owner: "real", Name: "rlate", Image: realImage(),
		Command: []string{"cat"}, CPU: 100, MemoryMB: 64,
	}
	if err := leader.Register(ctx(t), f); err != nil {
		t.Fatal(err)
	}
	s := spec("c-rlate-"+cluster, f, "once\n")
	t.Cleanup(func() {
		_ = cleaner.Release(context.Background(), []executor.Handle{{CallID: s.CallID}})
		_ = cleaner.Deregister(context.Background(), f)
	})
	if _, err := leader.Start(ctx(t), s); err != nil {
		t.Fatal(err)
	}
	ev := col.final(t, s.CallID)
	if ev.Kind != executor.Finished || string(ev.Stdout) != "once\n" {
		t.Fatalf("%+v", ev)
	}
	t.Cleanup(func() { _ = cleaner.Release(context.Background(), []executor.Handle{{CallID: s.CallID, Ref: ev.Ref}}) })
	if err := leader.Release(ctx(t), []executor.Handle{{CallID: s.CallID, Ref: ev.Ref}}); err != nil {
		t.Fatal(err)
	}
	deposed, _ := mk(time.Hour)
	h, err := deposed.Start(ctx(t), s)
	if err != nil {
		t.Fatal(err)
	}
	if h.Ref != ev.Ref {
		t.Fatalf("the late dispatch made child %s, want the released %s: the call runs again", h.Ref, ev.Ref)
	}
	kids, err := cleaner.ChildrenOf(ctx(t), f)
	if err != nil || len(kids) != 1 {
		t.Fatalf("children of the function: %v %v, want the one", kids, err)
	}
}
