package nomadjob_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
	"github.com/hyperfunc/hyperfunc/nomadjob/nomadtest"
)

// TestRealNomadCancelOfQueuedCall is TestCancelOfQueuedCallReadError
// on the real agent: the child asks for more memory than the node has (its
// evaluation blocks: no allocation), Cancel's read after the stop fails
// once. The call must still end canceled.
func TestRealNomadCancelOfQueuedCall(t *testing.T) {
	addr := nomadtest.RealAddr(t)
	hook, failed := failAllocationsReadAfterStop(true)
	front := interpose(t, addr, hook)
	cluster := "cluster-r8q-" + fmt.Sprint(time.Now().UnixNano())
	fe := nomadtest.NewFrontend(t, nomadjob.DefaultShimArtifactPath, realShimArchive(t))
	ex, err := nomadjob.New(nomadjob.Config{
		Address: front.URL, Token: os.Getenv("NOMAD_TOKEN"), ArtifactBaseURL: fe.URL, ShimSHA256: fe.ShimSHA256,
		ClusterID: cluster, RecheckInterval: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	col := newCollector(ex.Events())
	t.Cleanup(func() { _ = ex.Close(); col.stop() })
	f := executor.Function{
		ID: "real/r8queued", Owner: "real", Name: "r8queued", Image: realImage(),
		Command: []string{"sleep", "600"}, CPU: 100, MemoryMB: 4 << 20, // 4 TiB: never placed
	}
	if err := ex.Register(ctx(t), f); err != nil {
		t.Fatal(err)
	}
	var h executor.Handle
	t.Cleanup(func() {
		if h.Ref != "" {
			_ = ex.Release(context.Background(), []executor.Handle{h})
		}
		_ = ex.Deregister(context.Background(), f)
	})
	const id = "c-r8-queued"
	h, err = ex.Start(ctx(t), spec(id+"-"+cluster, f, ""))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // queued: its evaluation blocked
	cerr := ex.Cancel(context.Background(), h)
	if !failed.Load() {
		t.Fatal("no read of the allocations failed after the stop")
	}
	deadline := time.Now().Add(hang)
	for time.Now().Before(deadline) && col.finals(h.CallID) == 0 {
		time.Sleep(50 * time.Millisecond)
	}
	if n := col.finals(h.CallID); n != 1 {
		t.Fatalf("Cancel returned %v; %d final events, want 1 (canceled): the call stays RUNNING", cerr, n)
	}
	if ev := col.final(t, h.CallID); ev.Kind != executor.Failed || ev.Reason != api.ReasonCancelled {
		t.Fatalf("final = %+v, want canceled", ev)
	}
}
