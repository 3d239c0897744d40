package e2e

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/e2e/harness"
)

// TestQuotaFIFO: with quota 2, six `sleep 2` calls never run more than two
// at a time, start in enqueue order, and all finish. The deadlines only
// catch hangs; on a stall the agent's debug log (printed on failure) says
// what became of each call.
func TestQuotaFIFO(t *testing.T) {
	t.Parallel()
	dc := harness.Docker(t)
	a := harness.StartAgent(t, harness.AgentOptions{Dev: true, Args: []string{"-default-quota", "2"}})
	c := a.Client()
	ctx := context.Background()
	name := harness.Name("sleeper")
	if _, err := c.Functions().Create(ctx, &api.FunctionSpec{Name: name, Image: "ubuntu", Command: []string{"sleep", "2"}}); err != nil {
		t.Fatal(err)
	}
	w := harness.WatchContainers(t, dc)

	const n = 6
	ids := make([]string, n)
	for i := range ids {
		id, err := c.Calls().Call(ctx, name, nil, nil)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		ids[i] = id
	}

	// Poll the status endpoint until all are done; it must never count more
	// than two running.
	maxRunning := int64(0)
	harness.Eventually(t, 5*time.Minute, func() (bool, string) {
		st, err := c.Functions().Status(ctx, name)
		if err != nil {
			return false, err.Error()
		}
		maxRunning = max(maxRunning, st.Running)
		if st.Running > 2 {
			t.Errorf("status counts %d running calls with quota 2: %+v", st.Running, st)
		}
		return st.Finished+st.Failed+st.Canceled == n, fmt.Sprintf("status %+v", *st)
	})

	calls := make([]*api.Call, n)
	for i, id := range ids {
		calls[i] = harness.WaitCall(t, c, id, callTimeout, false)
		if calls[i].State != api.StateFinished {
			t.Errorf("call %d %s: %s %s %s", i, id, calls[i].State, calls[i].Reason, calls[i].Message)
		}
	}
	// Enqueue order is start order: the leader stamps StartedAt when it
	// decides to start a call, so it never decreases along the queue.
	for i := 1; i < n; i++ {
		if calls[i].StartedAt.Before(calls[i-1].StartedAt) {
			t.Errorf("call %d started at %s, before call %d at %s", i, calls[i].StartedAt, i-1, calls[i-1].StartedAt)
		}
	}
	// Call i+2 waits for a slot: it cannot start before call i ended.
	for i := 2; i < n; i++ {
		if calls[i].StartedAt.Before(calls[i-2].FinishedAt) && calls[i].StartedAt.Before(calls[i-1].FinishedAt) {
			t.Errorf("call %d started at %s, before calls %d and %d ended (%s, %s)", i, calls[i].StartedAt,
				i-2, i-1, calls[i-2].FinishedAt, calls[i-1].FinishedAt)
		}
	}
	// Every call has its RUNNING event. (Their order in the log is the
	// order the engine confirmed starts, which a loaded engine may swap
	// within the constraints above: the decision order is what FIFO is.)
	running := map[string]int{}
	if err := c.Calls().Logs(ctx, name, nil, func(ev api.LogEvent) error {
		if ev.Kind == api.StateRunning {
			running[ev.CallID]++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if running[id] != 1 {
			t.Errorf("call %d %s: %d RUNNING events, want 1", i, id, running[id])
		}
	}
	// The quota lets two run: call 1 was started before call 0 ended.
	if !calls[1].StartedAt.Before(calls[0].FinishedAt) {
		t.Errorf("call 1 started at %s, after call 0 ended at %s: the quota of 2 ran one at a time", calls[1].StartedAt, calls[0].FinishedAt)
	}

	// The engine agrees: never more than two containers ran at once, one
	// container per call.
	harness.Eventually(t, callTimeout, func() (bool, string) {
		cr := w.Creates(name)
		return len(cr) == n, fmt.Sprintf("%d calls with containers created", len(cr))
	})
	for id, k := range w.Creates(name) {
		if k != 1 {
			t.Errorf("call %s: %d containers", id, k)
		}
	}
	// Never more than two at once. (Exactly two at some moment depends on
	// how fast the engine starts containers, so it is not asserted here.)
	// A container runs from its start event to its die event or its
	// call's end, whichever comes first: the executor collects a call as
	// soon as its result is complete, and the sandbox's teardown that
	// follows is no longer the call's (its slot is free).
	ended := map[string]time.Time{}
	for i, id := range ids {
		ended[id] = calls[i].FinishedAt
	}
	if m := maxConcurrentCalls(w.Events(name), ended); m > 2 {
		t.Errorf("%d containers ran at once, quota 2", m)
	}
	t.Logf("max running by status %d, by engine events %d (%d counting teardowns)", maxRunning,
		maxConcurrentCalls(w.Events(name), ended), w.MaxConcurrent(name))
}

// maxConcurrentCalls is the most containers that ran a call at once, by the
// engine's start and die events, a container's run ending at its call's
// end (ended, by call ID) when that comes before its die event.
func maxConcurrentCalls(evs []harness.ContainerEvent, ended map[string]time.Time) int {
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	started := map[string]time.Time{}
	call := map[string]string{}
	for _, e := range evs {
		switch e.Action {
		case "start":
			started[e.ID], call[e.ID] = e.Time, e.CallID
		case "die":
			if s, ok := started[e.ID]; ok {
				end := e.Time
				if f, ok := ended[call[e.ID]]; ok && !f.IsZero() && f.Before(end) {
					end = f
				}
				edges = append(edges, edge{s, 1}, edge{end, -1})
				delete(started, e.ID)
			}
		}
	}
	for id, s := range started { // no die seen yet
		edges = append(edges, edge{s, 1})
		if f, ok := ended[call[id]]; ok && !f.IsZero() {
			edges = append(edges, edge{f, -1})
		}
	}
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at.Equal(edges[j].at) {
			return edges[i].delta < edges[j].delta // an end before a start at the same instant
		}
		return edges[i].at.Before(edges[j].at)
	})
	n, most := 0, 0
	for _, e := range edges {
		n += e.delta
		most = max(most, n)
	}
	return most
}
