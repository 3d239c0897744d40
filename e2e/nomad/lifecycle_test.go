package nomad

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/e2e/harness"
)

// TestNomadLeaderKilledBetweenDispatchAndRecord: the only server dies
// (SIGKILL) while its call runs on Nomad; restarted on its data dir, it
// reconciles the dispatched child instead of dispatching again. The call
// finishes once: one container start on the engine, one output.
func TestNomadLeaderKilledBetweenDispatchAndRecord(t *testing.T) {
	dc := harness.Docker(t)
	w := harness.WatchContainers(t, dc)
	args := append([]string{"-dev"}, nomadArgs(t)...)
	a := startAgent(t)
	name := harness.Name("once")
	create(t, a, &api.FunctionSpec{Name: name, Image: "ubuntu", Command: []string{"sh", "-c", "sleep 3; echo once"}})
	id := submit(t, a, name, nil, nil)
	harness.Eventually(t, callTimeout, func() (bool, string) {
		cl, _, err := a.Client().Calls().Info(t.Context(), id, nil)
		if err != nil {
			return false, err.Error()
		}
		return cl.State == api.StateRunning, "call " + cl.State
	})
	a.Kill()
	a.Restart(t, args)
	if err := a.WaitHealthy(t.Context(), time.Minute); err != nil {
		t.Fatalf("restart: %v", err)
	}
	cl := harness.WaitCall(t, a.Client(), id, callTimeout, false)
	if cl.State != api.StateFinished {
		t.Fatalf("after the restart: %s", describe(cl))
	}
	if out := output(t, a, id); string(out) != "once\n" {
		t.Fatalf("output %q", out)
	}
	if starts := w.Starts(name); starts[id] != 1 || len(starts) != 1 {
		t.Fatalf("container starts per call: %v, want exactly one for %s", starts, id)
	}
	harness.Eventually(t, time.Minute, func() (bool, string) {
		n := children(t, name)
		return n == 0, fmt.Sprintf("%d children of %s left", n, name)
	})
}

// TestNomadFunctionJobFollowsTheFunction: `hyper func update --size`
// updates the function's Nomad jobs; `hyper func rm` removes them.
func TestNomadFunctionJobFollowsTheFunction(t *testing.T) {
	a := startAgent(t)
	name := harness.Name("sized")
	harness.Hyper(t, a, nil, "func", "create", "--name", name, "--size", "s1", "ubuntu", "echo", "sized").Must(t, "create")
	jobs := func() (small, big map[string]any) {
		for _, j := range nomadJobs(t, name) {
			switch {
			case j.ParentID != "":
			case strings.HasSuffix(j.ID, "-big"):
				big = nomadJob(t, j.ID)
			default:
				small = nomadJob(t, j.ID)
			}
		}
		return small, big
	}
	small, big := jobs()
	if memory(small) != 64 || memory(big) != 64 {
		t.Fatalf("after create: memory %d and %d MB, want 64 (s1)", memory(small), memory(big))
	}
	harness.Hyper(t, a, nil, "func", "update", "--size", "s2", name).Must(t, "update")
	harness.Eventually(t, time.Minute, func() (bool, string) {
		small, big := jobs()
		return memory(small) == 128 && memory(big) == 128, fmt.Sprintf("memory %d and %d MB, want 128 (s2)", memory(small), memory(big))
	})
	if cl := call(t, a, name, nil, nil); cl.State != api.StateFinished {
		t.Fatalf("call after update: %s", describe(cl))
	}
	harness.Hyper(t, a, nil, "func", "rm", name).Must(t, "rm")
	harness.Eventually(t, time.Minute, func() (bool, string) {
		js := nomadJobs(t, name)
		return len(js) == 0, fmt.Sprintf("jobs after rm: %+v", js)
	})
}

// memory is the task's MemoryMB of a job read from Nomad (0: none).
func memory(job map[string]any) int {
	defer func() { _ = recover() }()
	tg := job["TaskGroups"].([]any)[0].(map[string]any)
	task := tg["Tasks"].([]any)[0].(map[string]any)
	return int(task["Resources"].(map[string]any)["MemoryMB"].(float64))
}
