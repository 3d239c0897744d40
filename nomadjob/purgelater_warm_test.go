package nomadjob_test

import (
	"strings"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
)

// TestLateDispatchAfterWarmRelease: as TestLateDispatchAfterRelease, but
// the next leader ran the call warm. Its token was the sandbox's, so the
// only guards against the deposed leader's late Start are the call's
// record (it names the sandbox) and the sandbox's claim (it names the
// call); Release must keep them, and the sandbox, for the delay too.
func TestLateDispatchAfterWarmRelease(t *testing.T) {
	e := newEnv(t)
	leader, col := e.newDelayedExecutor(time.Hour)
	f := fn("latewarm", "cat")
	e.register(f)
	leader.SetWarm([]executor.WarmTarget{{Function: f, N: 1}})
	waitReady(t, leader, f.ID, 1)
	s := spec("c-late-warm", f, "once\n")
	if _, err := leader.Start(ctx(t), s); err != nil {
		t.Fatal(err)
	}
	ev := e.warmFinal(col, s.CallID)
	if ev.Kind != executor.Finished || string(ev.Stdout) != "once\n" {
		t.Fatalf("%+v", ev)
	}
	if !strings.Contains(ev.Ref, nomadjob.WarmSuffix+"/dispatch-") {
		t.Fatalf("the call ran cold (%s) with a pool ready", ev.Ref)
	}
	if err := leader.Release(ctx(t), []executor.Handle{{CallID: s.CallID, Ref: ev.Ref}}); err != nil {
		t.Fatal(err)
	}
	deposed, dcol := e.newDelayedExecutor(time.Hour)
	h, err := deposed.Start(ctx(t), s)
	if err != nil {
		t.Fatal(err)
	}
	if h.Ref != ev.Ref {
		t.Errorf("the late Start placed the call in %s, want the released %s", h.Ref, ev.Ref)
	}
	if dev := e.warmFinal(dcol, s.CallID); string(dev.Stdout) != "once\n" {
		t.Errorf("the late Start reported %+v", dev)
	}
	if n := e.srv.Executions(s.CallID); n != 1 {
		t.Fatalf("the call ran %d times, want once", n)
	}
}

// TestCleanOrphansDelayedWarm: CleanOrphans leaves the dead warm child of
// an ended call (and its variable, and the call's record) for the delay
// too, so that a late Start of the call gets it back.
func TestCleanOrphansDelayedWarm(t *testing.T) {
	e := newEnv(t)
	ex, col := e.newDelayedExecutor(time.Hour)
	f := fn("orphwarm", "cat")
	e.register(f)
	ex.SetWarm([]executor.WarmTarget{{Function: f, N: 1}})
	waitReady(t, ex, f.ID, 1)
	s := spec("c-orph-warm", f, "x")
	if _, err := ex.Start(ctx(t), s); err != nil {
		t.Fatal(err)
	}
	ev := e.warmFinal(col, s.CallID)
	if !strings.Contains(ev.Ref, nomadjob.WarmSuffix+"/dispatch-") {
		t.Fatalf("the call ran cold (%s) with a pool ready", ev.Ref)
	}
	ex.DropWarm()
	next, _ := e.newDelayedExecutor(time.Hour)
	n, err := next.CleanOrphans(ctx(t), func(string) bool { return false })
	if err != nil || n != 1 {
		t.Fatalf("CleanOrphans = %d, %v; want 1 queued", n, err)
	}
	if e.srv.Job(ev.Ref) == nil || e.srv.Variable(nomadjob.WarmVariablePath(ev.Ref)) == nil {
		t.Fatal("CleanOrphans purged the warm child (or its variable) at once")
	}
	deposed, _ := e.newDelayedExecutor(time.Hour)
	h, err := deposed.Start(ctx(t), s)
	if err != nil {
		t.Fatal(err)
	}
	if h.Ref != ev.Ref {
		t.Errorf("the late Start placed the call in %s, want %s", h.Ref, ev.Ref)
	}
	if n := e.srv.Executions(s.CallID); n != 1 {
		t.Fatalf("the call ran %d times, want once", n)
	}
}
