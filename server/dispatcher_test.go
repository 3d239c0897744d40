package server_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/server"
	"github.com/hyperfunc/hyperfunc/server/servertest"
)

func withQuota(quota, maxQueued int) func(int, *server.Config) {
	return func(_ int, cfg *server.Config) {
		cfg.DefaultQuota = quota
		cfg.MaxQueued = maxQueued
	}
}

// TestDispatcherQuotaFIFO: quota 2 and six calls. Never more than two run
// at once, each free slot goes to the oldest queued call, all finish.
func TestDispatcherQuotaFIFO(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{Configure: withQuota(2, 0)})
	cl, eng := c.Client(0), c.Engine
	createFn(t, cl, "slow", "sleep")
	var ids []string
	for i := range 6 {
		ids = append(ids, call(t, cl, "slow", fmt.Sprint(i)))
	}
	waitRunning(t, eng, ids[0], ids[1])
	// The engine runs a call a moment before its RUNNING is applied (until
	// then the status counts it, STARTING, as pending): poll. Nothing is
	// released, so the counts stay once reached.
	servertest.Eventually(t, 60*time.Second, func() error {
		st, err := cl.Functions().Status(ctx(t), "slow")
		if err != nil || st.Running != 2 || st.Pending != 4 {
			return fmt.Errorf("status %+v (%v), want 2 running and 4 pending", st, err)
		}
		return nil
	})
	// Free one slot at a time: the oldest queued call takes it.
	for next := 2; next < 6; next++ {
		eng.Release(ids[next-2])
		waitRunning(t, eng, ids[next-1], ids[next])
	}
	eng.Release(ids[4], ids[5])
	for _, id := range ids {
		waitState(t, cl, id, api.StateFinished)
	}
	order := eng.StartOrder()
	if !slices.Equal(sortedCopy(order[:2]), sortedCopy(ids[:2])) || !slices.Equal(order[2:], ids[2:]) {
		t.Fatalf("start order %v, want %v", order, ids)
	}
	if m := eng.MaxRunning(server.DefaultUser); m != 2 {
		t.Fatalf("%d calls ran at once, quota is 2", m)
	}
}

// TestDispatcherQuotaPerUser: a user at quota does not block another, and
// a raised quota takes effect at once: the dispatcher's periodic wake-up
// is an hour here, so only the quota change can wake it. (It was the 2 s
// default with a 1.5 s deadline, a race a busy machine could lose.)
func TestDispatcherQuotaPerUser(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{ACL: true, Configure: func(_ int, cfg *server.Config) {
		server.DispatchSafetyNet(cfg, time.Hour)
	}})
	alice, _ := newUser(t, c, 0, "alice", 1, false)
	bob, _ := newUser(t, c, 0, "bob", 1, false)
	createFn(t, alice, "slow", "sleep")
	createFn(t, bob, "fast", "cat")
	a := []string{call(t, alice, "slow", "1"), call(t, alice, "slow", "2"), call(t, alice, "slow", "3")}
	waitRunning(t, c.Engine, a[0])
	for i := range 3 {
		id := call(t, bob, "fast", fmt.Sprint(i))
		waitState(t, bob, id, api.StateFinished)
	}
	if got := c.Engine.RunningOf("alice"); got != 1 {
		t.Fatalf("alice runs %d calls with quota 1", got)
	}
	raised := time.Now()
	if _, err := c.Client(0).Users().SetQuota(ctx(t), "alice", 3); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, 60*time.Second, func() error { // only a hang
		if n := c.Engine.RunningOf("alice"); n != 3 {
			return fmt.Errorf("alice runs %d calls after her quota went to 3", n)
		}
		return nil
	})
	t.Logf("raised quota took effect in %s", time.Since(raised).Round(time.Millisecond))
}

// TestDispatcherQueueBound: at the bound a call is accepted, one past it is
// a 429 with a clear message, and nothing accepted is lost.
func TestDispatcherQueueBound(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{Configure: withQuota(1, 3)})
	cl := c.Client(0)
	createFn(t, cl, "slow", "sleep")
	ids := []string{call(t, cl, "slow", "running")}
	waitRunning(t, c.Engine, ids[0])
	for i := range 3 {
		ids = append(ids, call(t, cl, "slow", fmt.Sprint(i)))
	}
	r := do(t, http.MethodPost, c.URL(0)+"/v1/functions/slow/call", "", "one too many").want(t, http.StatusTooManyRequests)
	if msg := r.errorBody(t); !strings.Contains(msg, "queued") {
		t.Fatalf("429 message %q does not say the queue is full", msg)
	}
	c.Engine.ReleaseAll()
	for _, id := range ids {
		waitState(t, cl, id, api.StateFinished)
	}
	calls, _, err := cl.Calls().List(ctx(t), "slow", nil)
	if err != nil || len(calls) != 4 {
		t.Fatalf("%d calls recorded (%v), want the 4 accepted", len(calls), err)
	}
}

// TestDispatcherNewLeaderReconcilesFirst: after the leader dies, the new
// leader asks the executor about the started calls before it starts
// anything, so no call starts twice and none is forgotten.
func TestDispatcherNewLeaderReconcilesFirst(t *testing.T) {
	c := servertest.NewCluster(t, 3, servertest.Options{Configure: withQuota(2, 0)})
	old := c.LeaderIndex()
	cl := c.Client(old)
	createFn(t, cl, "slow", "sleep")
	var ids []string
	for i := range 4 {
		ids = append(ids, call(t, cl, "slow", fmt.Sprint(i)))
	}
	waitRunning(t, c.Engine, ids[0], ids[1])
	// The FSM must know they run before the leader dies, else the new
	// leader would reconcile STARTING calls, which is the next test.
	servertest.Eventually(t, 60*time.Second, func() error {
		for _, id := range ids[:2] {
			if call, _ := c.Server(old).Store().Call(nil, id); call == nil || call.Ref == "" {
				return fmt.Errorf("call %s not recorded as running", id)
			}
		}
		return nil
	})
	c.Kill(old)
	nl := c.WaitForLeader()
	servertest.Eventually(t, 60*time.Second, func() error {
		if ops := c.Node(nl).Exec.Ops(); len(ops) == 0 {
			return fmt.Errorf("new leader has not asked its executor anything")
		}
		return nil
	})
	ops := c.Node(nl).Exec.Ops()
	if ops[0].Kind != "reconcile" || !slices.Equal(sortedCopy(ops[0].CallIDs), sortedCopy(ids[:2])) {
		t.Fatalf("new leader's first executor op is %+v, want reconcile of %v", ops[0], ids[:2])
	}
	c.Engine.ReleaseAll()
	ncl := c.Client(nl)
	for _, id := range ids {
		waitState(t, ncl, id, api.StateFinished)
		if n := c.Engine.Starts(id); n != 1 {
			t.Errorf("call %s: Start invoked %d times", id, n)
		}
		if n := c.Engine.Runs(id); n != 1 {
			t.Errorf("call %s ran %d times", id, n)
		}
	}
}

// TestDispatcherLeaderDiesMidStart: the leader decided to start a call
// (STARTING) and died while the executor hung; the new leader finds no
// trace of it, queues it again and runs it exactly once.
func TestDispatcherLeaderDiesMidStart(t *testing.T) {
	c := servertest.NewCluster(t, 3, servertest.Options{})
	old := c.LeaderIndex()
	createFn(t, c.Client(old), "quick", "cat")
	c.Engine.HoldStarts()
	id := call(t, c.Client(old), "quick", "once")
	servertest.Eventually(t, 60*time.Second, func() error {
		if c.Engine.Starts(id) == 0 {
			return fmt.Errorf("no Start yet")
		}
		return nil
	})
	c.Kill(old) // the held Start sees its context end and starts nothing
	nl := c.WaitForLeader()
	servertest.Eventually(t, 60*time.Second, func() error {
		ops := c.Node(nl).Exec.Ops()
		if len(ops) < 2 {
			return fmt.Errorf("new leader ops %+v", ops)
		}
		return nil
	})
	ops := c.Node(nl).Exec.Ops()
	if ops[0].Kind != "reconcile" || ops[1].Kind != "start" || ops[1].CallIDs[0] != id {
		t.Fatalf("new leader ops %+v, want reconcile then start of %s", ops, id)
	}
	c.Engine.ReleaseStarts()
	got := waitState(t, c.Client(nl), id, api.StateFinished)
	if n := c.Engine.Runs(id); n != 1 {
		t.Fatalf("call ran %d times", n)
	}
	if got.StdinSize != 4 {
		t.Fatalf("stdin size %d after the requeue", got.StdinSize)
	}
}

// TestDispatcherExecutorUnavailable: while the executor is down calls stay
// queued (none fails, none runs); they drain when it returns.
func TestDispatcherExecutorUnavailable(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{})
	cl := c.Client(0)
	createFn(t, cl, "quick", "cat")
	c.Engine.SetUnavailable(true)
	ids := []string{call(t, cl, "quick", "a"), call(t, cl, "quick", "b"), call(t, cl, "quick", "c")}
	// Each was refused and queued again, then tried again.
	servertest.Eventually(t, 60*time.Second, func() error {
		for _, id := range ids {
			if n := c.Engine.Starts(id); n < 2 {
				return fmt.Errorf("call %s tried %d times", id, n)
			}
		}
		return nil
	})
	for _, id := range ids {
		got, _, err := cl.Calls().Info(ctx(t), id, nil)
		if err != nil || got.Done() || c.Engine.Runs(id) != 0 {
			t.Fatalf("call %s is %s (%v) while the executor is down", id, got.State, err)
		}
	}
	c.Engine.SetUnavailable(false)
	for _, id := range ids {
		waitState(t, cl, id, api.StateFinished)
		if n := c.Engine.Runs(id); n != 1 {
			t.Fatalf("call %s ran %d times", id, n)
		}
	}
}

func TestDispatcherCancelQueuedAndRunning(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{Configure: withQuota(1, 0)})
	cl := c.Client(0)
	createFn(t, cl, "slow", "sleep")
	running := call(t, cl, "slow", "1")
	queued := call(t, cl, "slow", "2")
	waitRunning(t, c.Engine, running)
	if err := cl.Calls().Cancel(ctx(t), queued); err != nil {
		t.Fatal(err)
	}
	waitState(t, cl, queued, api.StateCanceled)
	if err := cl.Calls().Cancel(ctx(t), running); err != nil {
		t.Fatal(err)
	}
	got := waitState(t, cl, running, api.StateCanceled)
	if got.Reason != api.ReasonCancelled {
		t.Fatalf("reason %q", got.Reason)
	}
	if r := c.Engine.Result(running); r == nil || r.Reason != api.ReasonCancelled {
		t.Fatalf("the executor did not stop the running call: %+v", r)
	}
	if n := c.Engine.Runs(queued); n != 0 {
		t.Fatalf("the canceled queued call ran %d times", n)
	}
	r := do(t, http.MethodPost, c.URL(0)+"/v1/calls/"+running+"/cancel", "", nil).want(t, http.StatusConflict)
	r.errorBody(t)
	// The slot is free again.
	c.Engine.ReleaseAll()
	waitState(t, cl, call(t, cl, "slow", "3"), api.StateFinished)
}

func TestDeleteFunctionWhileCallRuns(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{})
	cl := c.Client(0)
	createFn(t, cl, "slow", "sleep")
	id := call(t, cl, "slow", "x")
	waitRunning(t, c.Engine, id)
	r := do(t, http.MethodDelete, c.URL(0)+"/v1/functions/slow", "", nil).want(t, http.StatusConflict)
	if msg := r.errorBody(t); !strings.Contains(msg, "running") {
		t.Fatalf("409 message %q", msg)
	}
	if _, _, err := cl.Functions().Info(ctx(t), "slow", nil); err != nil {
		t.Fatalf("function gone after a refused delete: %v", err)
	}
	c.Engine.Release(id)
	waitState(t, cl, id, api.StateFinished)
	if err := cl.Functions().Delete(ctx(t), "slow"); err != nil {
		t.Fatal(err)
	}
	if reg := c.Engine.Registered(); len(reg) != 0 {
		t.Fatalf("still registered with the executor: %v", reg)
	}
}
