package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/e2e/harness"
)

// TestQuotaFIFO: with quota 2, six `sleep 2` calls never run more than two
// at a time, start in enqueue order, and all finish.
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
	harness.Eventually(t, 90*time.Second, func() (bool, string) {
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
		calls[i] = harness.WaitCall(t, c, id, 10*time.Second, false)
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
	// RUNNING events of the log come in waves of at most two, in queue order
	// within the constraints above: the first two RUNNING are calls 0 and 1.
	var running []string
	if err := c.Calls().Logs(ctx, name, nil, func(ev api.LogEvent) error {
		if ev.Kind == api.StateRunning {
			running = append(running, ev.CallID)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(running) != n {
		t.Fatalf("%d RUNNING events, want %d", len(running), n)
	}
	for wave := 0; wave < n; wave += 2 {
		got := map[string]bool{running[wave]: true, running[wave+1]: true}
		if !got[ids[wave]] || !got[ids[wave+1]] {
			t.Errorf("RUNNING events %d-%d are %v, want calls %d and %d (%s, %s)", wave, wave+1,
				running[wave:wave+2], wave, wave+1, ids[wave], ids[wave+1])
		}
	}

	// The engine agrees: never more than two containers ran at once, one
	// container per call.
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		cr := w.Creates(name)
		return len(cr) == n, fmt.Sprintf("%d calls with containers created", len(cr))
	})
	for id, k := range w.Creates(name) {
		if k != 1 {
			t.Errorf("call %s: %d containers", id, k)
		}
	}
	if m := w.MaxConcurrent(name); m > 2 || m < 2 {
		t.Errorf("at most %d containers ran at once, want 2", m)
	}
	t.Logf("max running by status %d, by engine events %d", maxRunning, w.MaxConcurrent(name))
}
