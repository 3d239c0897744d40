package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/e2e/harness"
	"github.com/hyperfunc/hyperfunc/executor"
)

// TestWarmLeaderKill: a function with --warm 2 on a three-node cluster of
// real processes; calls take pre-started sandboxes, the leader is killed
// with SIGKILL, the new leader rebuilds the pool (taking over the old
// one's unclaimed sandboxes) and more calls run warm. By the engine's
// events: every container started once, every call ran in exactly one
// container, and no container was claimed (renamed to a call) twice.
func TestWarmLeaderKill(t *testing.T) {
	t.Parallel()
	dc := harness.Docker(t)
	nodes := harness.StartCluster(t, 3, []string{"-cluster-key", "e2e-warm-key-" + harness.RunID()})
	ctx := context.Background()
	lead := leaderOf(t, nodes, "")
	name := harness.Name("warm")
	w := harness.WatchContainers(t, dc)
	if _, err := lead.Client().Functions().Create(ctx, &api.FunctionSpec{Name: name, Image: "ubuntu", Command: []string{"cat"}, Warm: 2}); err != nil {
		t.Fatalf("create: %v", err)
	}
	f, _, err := lead.Client().Functions().Info(ctx, name, nil)
	if err != nil || f.Warm != 2 {
		t.Fatalf("inspect: %+v, %v", f, err)
	}
	fnID := f.Owner + "/" + name
	warmReady(t, dc, fnID, 2)

	var ids []string
	inputs := map[string]string{}
	call := func(via *harness.Agent, i int) {
		in := fmt.Sprintf("call %d of %s\n", i, name)
		id, err := via.Client().Calls().Call(ctx, name, strings.NewReader(in), nil)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if c := harness.WaitCall(t, via.Client(), id, callTimeout, false); c.State != api.StateFinished {
			t.Fatalf("call %d %s: %s %s %s", i, id, c.State, c.Reason, c.Message)
		}
		ids = append(ids, id)
		inputs[id] = in
	}
	for i := range 4 {
		call(lead, i)
	}
	claimedBefore := len(renames(w, name))
	if claimedBefore == 0 {
		t.Fatal("no call took a warm sandbox before the kill")
	}

	warmReady(t, dc, fnID, 2) // refilled: the dead leader leaves two unclaimed sandboxes
	lead.Kill()
	var survivors []*harness.Agent
	for _, n := range nodes {
		if n != lead {
			survivors = append(survivors, n)
		}
	}
	next := leaderOf(t, survivors, lead.RaftAddr)
	for i := 4; i < 8; i++ {
		call(next, i)
	}
	if len(renames(w, name)) == claimedBefore {
		t.Fatal("no call took a warm sandbox after the kill")
	}

	for _, id := range ids {
		r := harness.Do(t, "GET", next.URL()+"/v1/calls/"+id+"/output", nil)
		if r.Code != 200 || string(r.Body) != inputs[id] {
			t.Errorf("output of %s: HTTP %d %q, want %q", id, r.Code, r.Body, inputs[id])
		}
	}
	// The engine's view.
	starts := map[string]int{}
	byCall := map[string][]string{} // call -> containers
	for _, e := range w.Events(name) {
		switch e.Action {
		case "start":
			starts[e.ID]++
		case "create":
			if e.CallID != "" {
				byCall[e.CallID] = append(byCall[e.CallID], e.ID)
			}
		}
	}
	claimed := map[string]int{}
	for _, e := range renames(w, name) {
		claimed[e.ID]++
		id := strings.TrimPrefix(e.Attrs["name"], "hf-")
		byCall[id] = append(byCall[id], e.ID)
	}
	for id, n := range starts {
		if n != 1 {
			t.Errorf("container %s started %d times", id, n)
		}
	}
	for id, n := range claimed {
		if n != 1 {
			t.Errorf("warm container %s claimed %d times", id, n)
		}
	}
	for _, id := range ids {
		if cs := byCall[id]; len(cs) != 1 || starts[cs[0]] != 1 {
			t.Errorf("call %s: containers %v (starts %v), want exactly one started once", id, cs, starts)
		}
	}
	t.Logf("%d of %d calls warm", len(claimed), len(ids))
}

// renames are the engine's rename events of function's containers: a
// warm sandbox claimed for a call (renamed hf-<call>).
func renames(w *harness.Watcher, function string) []harness.ContainerEvent {
	var out []harness.ContainerEvent
	for _, e := range w.Events(function) {
		if e.Action == "rename" {
			out = append(out, e)
		}
	}
	return out
}

// warmReady waits until fnID has n running, unclaimed warm sandboxes.
func warmReady(t *testing.T, dc *client.Client, fnID string, n int) {
	t.Helper()
	harness.Eventually(t, callTimeout, func() (bool, string) {
		list, err := dc.ContainerList(context.Background(), container.ListOptions{Filters: filters.NewArgs(
			filters.Arg("label", executor.LabelFunction+"="+fnID),
			filters.Arg("label", "io.hyperfunc.warm"),
			filters.Arg("status", "running"),
		)})
		if err != nil {
			return false, err.Error()
		}
		k := 0
		for _, c := range list {
			if len(c.Names) > 0 && strings.HasPrefix(c.Names[0], "/hf-warm-") {
				k++
			}
		}
		return k == n, fmt.Sprintf("%d warm sandboxes of %s running, want %d", k, fnID, n)
	})
}

// leaderOf waits for a leader among agents other than the one at raft
// address not.
func leaderOf(t *testing.T, among []*harness.Agent, not string) *harness.Agent {
	t.Helper()
	var lead *harness.Agent
	harness.Eventually(t, callTimeout, func() (bool, string) {
		var seen []string
		for _, n := range among {
			h, err := n.Health(context.Background())
			if err != nil {
				seen = append(seen, n.Name+": "+err.Error())
				continue
			}
			for _, m := range among {
				if h.Leader != "" && h.Leader != not && h.Leader == m.RaftAddr {
					lead = m
					return true, ""
				}
			}
			seen = append(seen, n.Name+" sees "+h.Leader)
		}
		return false, strings.Join(seen, "; ")
	})
	return lead
}
