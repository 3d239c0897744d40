package nomadjob_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
	"github.com/hyperfunc/hyperfunc/nomadjob/nomadtest"
)

// The warm path on the real agent: the warm job validates and runs, a
// sandbox boots and waits, the claim's variable reaches the task through
// its template and SIGUSR1, the call runs once in it and is collected from
// alloc/data; after a function update no call runs on the old version,
// and the new version's pool serves.
func TestRealNomadWarm(t *testing.T) {
	cluster := "cluster-warm-" + fmt.Sprint(time.Now().UnixNano())
	r := newRealEnv(t, nomadtest.ShimVolume(), cluster)
	f := r.warmFunction("warm", "echo v1 $HYPER_CALL_ID; cat; echo err >&2")
	r.validate(r.ex.WarmJob(f))
	t.Cleanup(func() { cleanWarm(t, r, f, r.ex) })
	r.ex.SetWarm([]executor.WarmTarget{{Function: f, N: 2}})
	waitFor(t, 3*time.Minute, "two warm sandboxes", func() bool { return r.ex.Warm().Ready[f.ID] == 2 })

	for i := range 3 {
		s := spec(fmt.Sprintf("warm-%d-%s", i, cluster), f, "in")
		ev := r.run(f, s)
		if ev.Kind != executor.Finished || string(ev.Stdout) != "v1 "+s.CallID+"\nin" || !strings.Contains(ev.Ref, nomadjob.WarmSuffix+"/dispatch-") || ev.Stderr != "err\n" {
			t.Fatalf("warm call %d: %+v %q", i, ev, ev.Stdout)
		}
		// The executor trusts Nomad's Signaling event (the template's
		// re-render) to tell a delivered call from one that never reached
		// its sandbox: the real client must record it.
		// A sealed call is read before the client's next update of its
		// allocation: wait for the event.
		waitFor(t, 3*time.Minute, fmt.Sprintf("warm call %d: a %q task event on %s", i, nomad.TaskSignaling, ev.Ref), func() bool { return signaled(t, ev.Ref) })
		if err := r.ex.Release(ctx(t), []executor.Handle{{CallID: s.CallID, Ref: ev.Ref}}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 3*time.Minute, "the pool refilled", func() bool { return r.ex.Warm().Ready[f.ID] == 2 })
	}
	if st := r.ex.Warm(); st.Hits != 3 || st.Misses != 0 {
		t.Fatalf("warm stats %+v, want 3 hits", st)
	}

	// An update: the next call runs the new command, never the old one.
	f2 := f
	f2.Command = []string{"sh", "-c", "echo v2"}
	if err := r.ex.Register(ctx(t), f2); err != nil {
		t.Fatal(err)
	}
	s := spec("warm-update-"+cluster, f2, "")
	if ev := r.run(f2, s); ev.Kind != executor.Finished || string(ev.Stdout) != "v2\n" {
		t.Fatalf("call after the update: %+v %q", ev, ev.Stdout)
	}
	r.ex.SetWarm([]executor.WarmTarget{{Function: f2, N: 1}})
	waitFor(t, 3*time.Minute, "a sandbox of the new version", func() bool { return r.ex.Warm().Ready[f.ID] == 1 })
	s = spec("warm-v2-"+cluster, f2, "")
	if ev := r.run(f2, s); ev.Kind != executor.Finished || string(ev.Stdout) != "v2\n" || !strings.Contains(ev.Ref, nomadjob.WarmSuffix+"/") {
		t.Fatalf("warm call of the new version: %+v %q", ev, ev.Stdout)
	}
}

// Two executors (a stale leader and the new one) hold the same sandbox on
// the real agent and Start a call each at once: one claims it, the other
// goes elsewhere. Each call's runs are counted from every allocation of
// the cluster's jobs (their result.json names the call): one each.
func TestRealNomadWarmRace(t *testing.T) {
	cluster := "cluster-warmrace-" + fmt.Sprint(time.Now().UnixNano())
	r := newRealEnv(t, nomadtest.ShimVolume(), cluster)
	f := r.warmFunction("race", "echo $HYPER_CALL_ID")
	var r2 *realEnv
	t.Cleanup(func() {
		if r2 != nil {
			cleanWarm(t, r, f, r.ex, r2.ex)
		} else {
			cleanWarm(t, r, f, r.ex)
		}
	})
	r.ex.SetWarm([]executor.WarmTarget{{Function: f, N: 1}})
	waitFor(t, 3*time.Minute, "a warm sandbox", func() bool { return r.ex.Warm().Ready[f.ID] == 1 })
	// Forget the pool: the next SetWarm takes the sandbox over, as the
	// second executor does.
	r.ex.DropWarm()
	r2 = newRealEnv(t, nomadtest.ShimVolume(), cluster)
	for _, ex := range []*nomadjob.Executor{r.ex, r2.ex} {
		ex.SetWarm([]executor.WarmTarget{{Function: f, N: 1}})
		waitFor(t, 3*time.Minute, "the sandbox taken over", func() bool { return ex.Warm().Ready[f.ID] == 1 })
	}
	sandbox := r.ex.WarmChildren(f.ID)[0]
	if got := r2.ex.WarmChildren(f.ID); len(got) != 1 || got[0] != sandbox {
		t.Fatalf("pools %v and %v, want both %s", r.ex.WarmChildren(f.ID), got, sandbox)
	}
	sa, sb := spec("race-a-"+cluster, f, ""), spec("race-b-"+cluster, f, "")
	errs := make(chan error, 2)
	go func() { _, err := r.ex.Start(context.Background(), sa); errs <- err }()
	go func() { _, err := r2.ex.Start(context.Background(), sb); errs <- err }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	ea, eb := r.final(sa.CallID), r2.final(sb.CallID)
	for _, ev := range []executor.Event{ea, eb} {
		if ev.Kind != executor.Finished || string(ev.Stdout) != ev.CallID+"\n" {
			t.Fatalf("%s: %+v %q", ev.CallID, ev, ev.Stdout)
		}
	}
	if (ea.Ref == sandbox) == (eb.Ref == sandbox) {
		t.Fatalf("refs %s and %s: exactly one call must have run in %s", ea.Ref, eb.Ref, sandbox)
	}
	runs := realRuns(t, r, cluster)
	for _, id := range []string{sa.CallID, sb.CallID} {
		if runs[id] != 1 {
			t.Errorf("%s ran %d times (runs: %v)", id, runs[id], runs)
		}
	}
}

// warmFunction registers the function real/<name> running sh -c script.
func (r *realEnv) warmFunction(name, script string) executor.Function {
	r.t.Helper()
	f := executor.Function{
		ID: "real/" + name, Owner: "real", Name: name, Image: realImage(),
		Command: []string{"sh", "-c", script}, CPU: 100, MemoryMB: 48,
	}
	if err := r.ex.Register(ctx(r.t), f); err != nil {
		r.t.Fatal(err)
	}
	return f
}

// realRuns counts, per call ID, the allocations of the cluster's jobs
// whose shim wrote a result for it.
func realRuns(t *testing.T, r *realEnv, cluster string) map[string]int {
	t.Helper()
	stubs, _, err := r.nc.Jobs().PrefixList("hf-" + nomadjob.ClusterTag(cluster))
	if err != nil {
		t.Fatal(err)
	}
	runs := map[string]int{}
	for _, s := range stubs {
		if s.ParentID == "" {
			continue
		}
		allocs, _, err := r.nc.Jobs().Allocations(s.ID, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range allocs {
			b, err := r.ex.CatFile(ctx(t), a.ID, nomadjob.ResultFilePath)
			if err != nil {
				t.Fatal(err)
			}
			// A missing file answers 200 with an error text: no result.
			if res, err := nomadjob.DecodeResult(b); err == nil {
				runs[res.CallID]++
			}
		}
	}
	return runs
}

// cleanWarm stops the executors' pools and the executors, then purges
// every child of f's warm job with its variable (a boot in flight at the
// end may have left one) and f's jobs: nothing of the test stays on the
// shared agent.
func cleanWarm(t *testing.T, r *realEnv, f executor.Function, exs ...*nomadjob.Executor) {
	for _, ex := range exs {
		ex.SetWarm(nil)
		_ = ex.Close()
	}
	_ = exs[0].Deregister(context.Background(), f)
	prefix := nomadjob.JobID(r.cluster, f)
	stubs, _, err := r.nc.Jobs().PrefixList(prefix)
	if err != nil {
		t.Logf("cleanup: listing %s: %v", prefix, err)
		return
	}
	for _, s := range stubs {
		if s.ParentID == "" {
			continue
		}
		_, _, _ = r.nc.Jobs().Deregister(s.ID, true, nil)
		_, _ = r.nc.Variables().Delete(nomadjob.WarmVariablePath(s.ID), nil)
	}
}

// signaled reports whether the child job's allocation has a Signaling
// task event, read from the real agent.
func signaled(t *testing.T, child string) bool {
	t.Helper()
	resp, err := http.Get(nomadtest.RealAddr(t) + "/v1/job/" + url.PathEscape(child) + "/allocations")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var allocs []*nomad.AllocationListStub
	if err := json.NewDecoder(resp.Body).Decode(&allocs); err != nil {
		t.Fatal(err)
	}
	for _, a := range allocs {
		if ts := a.TaskStates[nomadjob.TaskName]; ts != nil {
			for _, e := range ts.Events {
				if e.Type == nomad.TaskSignaling {
					return true
				}
			}
		}
	}
	return false
}
