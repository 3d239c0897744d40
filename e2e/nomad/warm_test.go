package nomad

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/e2e/harness"
	"github.com/hyperfunc/hyperfunc/nomadjob"
	"github.com/hyperfunc/hyperfunc/nomadjob/nomadtest"
	"github.com/hyperfunc/hyperfunc/shim"
)

// TestNomadWarm: warm allocations through real agent processes on the real
// Nomad agent. The per-user cap holds (two functions asking 2 each get 3
// in all); every call runs exactly once (runs counted from every
// allocation's result.json); a leader killed and restarted takes the
// unclaimed sandboxes over instead of booting more; an update never runs a
// call on the old version.
func TestNomadWarm(t *testing.T) {
	args := append([]string{"-dev", "-warm-user-cap", "3"}, nomadArgs(t)...)
	a := startAgent(t, "-warm-user-cap", "3")
	f1, f2 := harness.Name("warma"), harness.Name("warmb")
	two := 2
	for _, n := range []string{f1, f2} {
		create(t, a, &api.FunctionSpec{Name: n, Image: "ubuntu", Command: []string{"sh", "-c", "echo $HYPER_CALL_ID"}, Size: "s1", Warm: two})
	}
	t.Cleanup(func() { purgeWarm(t, f1, f2) })
	pooled := func() (bool, string) {
		n1, n2 := unclaimed(t, f1), unclaimed(t, f2)
		return n1+n2 == 3 && n1 >= 1 && n2 >= 1, fmt.Sprintf("unclaimed warm sandboxes %d + %d, want 3 in all (user cap)", n1, n2)
	}
	harness.Eventually(t, callTimeout, pooled)

	var ids []string
	for range 3 {
		ids = append(ids, syncEcho(t, a, f1))
	}
	runs := runsPerCall(t, f1)
	warmRuns := 0
	for _, id := range ids {
		if runs[id].n != 1 {
			t.Fatalf("call %s ran %d times (%v)", id, runs[id].n, runs)
		}
		if strings.Contains(runs[id].child, nomadjob.WarmSuffix+"/dispatch-") {
			warmRuns++
		}
	}
	if warmRuns == 0 {
		t.Fatalf("no call ran warm: %v", runs)
	}

	// Kill the leader once all three are ready (the agent saw their shims
	// wait): the restarted agent takes exactly those over, boots none, and
	// the cap still holds.
	harness.Eventually(t, callTimeout, func() (bool, string) {
		if ok, why := pooled(); !ok {
			return false, why
		}
		n := warmReady(t, a)
		return n == 3, fmt.Sprintf("%d warm sandboxes ready (metrics), want 3", n)
	})
	before := unclaimedSet(t, f1, f2)
	a.Kill()
	a.Restart(t, args)
	if err := a.WaitHealthy(t.Context(), time.Minute); err != nil {
		t.Fatalf("restart: %v", err)
	}
	harness.Eventually(t, callTimeout, func() (bool, string) {
		n := warmReady(t, a)
		return n == 3, fmt.Sprintf("%d warm sandboxes ready after the restart, want 3", n)
	})
	if after := unclaimedSet(t, f1, f2); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("unclaimed sandboxes after the restart %v, want the same as before %v (taken over)", after, before)
	}
	id := syncEcho(t, a, f1)
	if r := runsPerCall(t, f1)[id]; r.n != 1 || !before[r.child] {
		t.Fatalf("after the restart the call ran %d times in %s, want once in a sandbox taken over (%v)", r.n, r.child, before)
	}

	// An update (size s1 -> s2): the next calls run on the new version
	// only, 128 MB.
	s2 := "s2"
	if _, err := a.Client().Functions().Update(context.Background(), f1, &api.FunctionUpdate{Size: &s2}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		cl := call(t, a, f1, nil, nil)
		if cl.State != api.StateFinished {
			t.Fatalf("after the update: %s", describe(cl))
		}
		r := runsPerCall(t, f1)[cl.ID]
		if r.n != 1 || r.memoryMB != 128 {
			t.Fatalf("after the update the call ran %d times with %d MB (%s), want once with 128", r.n, r.memoryMB, r.child)
		}
	}
}

// syncEcho makes a sync call of a function that echoes its call ID, checks
// the answer and returns the call ID.
func syncEcho(t *testing.T, a *harness.Agent, name string) string {
	t.Helper()
	body, id, err := a.Client().Calls().CallSync(context.Background(), name, nil, nil)
	if err != nil {
		t.Fatalf("sync call of %s: %v", name, err)
	}
	out, _ := io.ReadAll(body)
	body.Close()
	if string(out) != id+"\n" {
		t.Fatalf("sync call %s answered %q", id, out)
	}
	return id
}

type run struct {
	n        int
	child    string
	memoryMB int
}

// runsPerCall reads every allocation of the function's children (cold and
// warm) on the real agent: the call its shim ran (result.json), the child
// and its memory. It lists allocations, not jobs: Release purges a
// finished call's child, whose allocation stays readable (fixture 25).
func runsPerCall(t *testing.T, name string) map[string]run {
	t.Helper()
	addr := nomadtest.RealAddr(t)
	out := map[string]run{}
	var allocs []struct{ ID, JobID string }
	getJSON(t, addr+"/v1/allocations", &allocs)
	for _, al := range allocs {
		if !strings.Contains(al.JobID, name) {
			continue
		}
		var full struct {
			AllocatedResources struct {
				Tasks map[string]struct{ Memory struct{ MemoryMB int } }
			}
		}
		getJSON(t, addr+"/v1/allocation/"+al.ID, &full)
		resp, err := http.Get(addr + "/v1/client/fs/cat/" + al.ID + "?path=" + url.QueryEscape(nomadjob.ResultFilePath))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var res shim.Result
		if json.Unmarshal(b, &res) != nil || res.CallID == "" {
			continue // no result (a sandbox that took no call): 200 with an error text
		}
		r := out[res.CallID]
		r.n++
		r.child = al.JobID
		r.memoryMB = full.AllocatedResources.Tasks[nomadjob.TaskName].Memory.MemoryMB
		out[res.CallID] = r
	}
	return out
}

// unclaimed counts the function's warm children that run without a
// variable (no call handed to them).
func unclaimed(t *testing.T, name string) int { return len(unclaimedSet(t, name)) }

// unclaimedSet is the unclaimed warm children of the functions.
func unclaimedSet(t *testing.T, names ...string) map[string]bool {
	out := map[string]bool{}
	for _, name := range names {
		for id := range unclaimedOf(t, name) {
			out[id] = true
		}
	}
	return out
}

func unclaimedOf(t *testing.T, name string) map[string]bool {
	out := map[string]bool{}
	for _, j := range nomadJobs(t, name+nomadjob.WarmSuffix+"/") {
		if !strings.Contains(j.ID, nomadjob.WarmSuffix+"/dispatch-") || j.Status != "running" {
			continue
		}
		resp, err := http.Get(nomadtest.RealAddr(t) + "/v1/var/" + nomadjob.WarmVariablePath(j.ID))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			out[j.ID] = true
		}
	}
	return out
}

// warmReady sums the agent's hyperfunc_warm_ready gauges: sandboxes its
// executor holds ready (booted, shim waiting).
func warmReady(t *testing.T, a *harness.Agent) int {
	t.Helper()
	resp, err := http.Get(a.URL() + "/metrics")
	if err != nil {
		return -1 // restarting
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "hyperfunc_warm_ready{") {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &v); err == nil {
				n += int(v)
			}
		}
	}
	return n
}

// purgeWarm removes what the test left on the shared agent: the
// functions' jobs, warm children and their variables.
func purgeWarm(t *testing.T, names ...string) {
	addr := nomadtest.RealAddr(t)
	for _, n := range names {
		for _, j := range nomadJobs(t, n) {
			req, _ := http.NewRequest(http.MethodDelete, addr+"/v1/job/"+url.PathEscape(j.ID)+"?purge=true", nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
			req, _ = http.NewRequest(http.MethodDelete, addr+"/v1/var/"+nomadjob.WarmVariablePath(j.ID), nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	}
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", u, err)
	}
}
