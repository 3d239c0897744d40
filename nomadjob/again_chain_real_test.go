package nomadjob_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
	"github.com/hyperfunc/hyperfunc/nomadjob/nomadtest"
)

// TestRealNomadAgainMiddleTryPurged: TestAgainMiddleTryPurged
// on the real agent. The call runs in its third child (~3) after two failed
// shim downloads; ~2 is purged (its token free again: Nomad 1.6.5 hands
// out a token's existing child only while that job exists); the next
// leader's Reconcile of the first child must not create another ~2, which
// would run the command next to ~3.
func TestRealNomadAgainMiddleTryPurged(t *testing.T) {
	cluster := "cluster-r6mid-" + fmt.Sprint(time.Now().UnixNano())
	r := newRealEnv(t, "", cluster)
	f := executor.Function{
		ID: "real/r6mid", Owner: "real", Name: "r6mid", Image: realImage(),
		Command: []string{"sleep", "300"}, CPU: 100, MemoryMB: 48,
	}
	if err := r.ex.Register(ctx(t), f); err != nil {
		t.Fatal(err)
	}
	callID := "mid-" + cluster
	// Every child of the call goes with the test, and the function.
	mine := func() map[string]*nomad.Job {
		ids, err := r.ex.ChildrenOf(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*nomad.Job{}
		for _, id := range ids {
			if j, _, err := r.nc.Jobs().Info(id, nil); err == nil && j.Meta[nomadjob.MetaCallID] == callID {
				out[id] = j
			}
		}
		return out
	}
	t.Cleanup(func() {
		for id := range mine() {
			_, _, _ = r.nc.Jobs().Deregister(id, true, nil)
		}
		_ = r.ex.Deregister(context.Background(), f)
	})
	byToken := func(tok string) string {
		for id, j := range mine() {
			if deref(j.DispatchIdempotencyToken) == tok {
				return id
			}
		}
		return ""
	}
	running := func(child string) bool {
		as, _, err := r.nc.Jobs().Allocations(child, false, nil)
		if err != nil {
			return false
		}
		for _, a := range as {
			if a.ClientStatus == nomad.AllocClientStatusRunning {
				return true
			}
		}
		return false
	}
	r.fe.FailNext(nomadjob.DefaultShimArtifactPath, 2)
	h, err := r.ex.Start(ctx(t), spec(callID, f, ""))
	if err != nil {
		t.Fatal(err)
	}
	third := ""
	waitFor(t, 3*time.Minute, "the call runs in its third child", func() bool {
		third = byToken(callID + "~3")
		return third != "" && running(third)
	})
	_ = r.ex.Close()
	second := byToken(callID + "~2")
	if second == "" {
		t.Fatal("no ~2 child")
	}
	if _, _, err := r.nc.Jobs().Deregister(second, true, nil); err != nil {
		t.Fatal(err)
	}
	ex2, err := nomadjob.New(nomadjob.Config{
		Address: nomadtest.RealAddr(t), Token: os.Getenv("NOMAD_TOKEN"), ArtifactBaseURL: r.fe.URL, ShimSHA256: r.fe.ShimSHA256,
		ClusterID: cluster, RecheckInterval: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	col2 := newCollector(ex2.Events())
	defer func() { _ = ex2.Close(); col2.stop() }()
	evs, err := ex2.Reconcile(ctx(t), []executor.Handle{h})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("reconcile: %+v", evs)
	if again := byToken(callID + "~2"); again != "" {
		t.Errorf("Reconcile dispatched ~2 again (%s) while the call runs in %s", again, third)
		waitFor(t, 3*time.Minute, "the new ~2 runs the command", func() bool { return running(again) })
		t.Errorf("the command runs twice: %s and %s both running", again, third)
	}
	if len(evs) != 1 || evs[0].Kind != executor.Running || evs[0].Ref != third {
		t.Errorf("reconcile = %+v, want running in %s", evs, third)
	}
}
