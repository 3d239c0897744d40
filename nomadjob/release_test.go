package nomadjob_test

import (
	"bytes"
	"slices"
	"sync"
	"testing"

	"github.com/hyperfunc/hyperfunc/executor"
)

// binaryStdin is every byte value, twice, and a trailing NUL.
func binaryStdin() []byte {
	var b []byte
	for range 2 {
		for i := range 256 {
			b = append(b, byte(i))
		}
	}
	return append(b, 0)
}

func TestCollectedChildKeptUntilRelease(t *testing.T) {
	e := newEnv(t)
	f := fn("keep", "cat")
	s := spec("c-keep", f, "kept\n")
	ev := e.run(f, s)
	if ev.Kind != executor.Finished || string(ev.Stdout) != "kept\n" {
		t.Fatalf("%+v", ev)
	}
	// Collected and reported, and the dead child is still there.
	if j := e.srv.Job(ev.Ref); j == nil || *j.Status != "dead" {
		t.Fatalf("child after collection: %+v", j)
	}
	// This executor reports the call once: a Start or a Cancel of it neither
	// dispatches nor reports again.
	dispatches := e.srv.Requests("dispatch")
	h, err := e.ex.Start(ctx(t), s)
	if err != nil || h.Ref != ev.Ref || e.srv.Requests("dispatch") != dispatches {
		t.Fatalf("start of a reported call: %+v %v, %d dispatches", h, err, e.srv.Requests("dispatch")-dispatches)
	}
	if err := e.ex.Cancel(ctx(t), h); err != nil {
		t.Fatal(err)
	}
	e.marker(e.ex, e.col)
	if n := e.col.finals("c-keep"); n != 1 {
		t.Fatalf("%d final events", n)
	}
	// The dead child keeps the idempotency token taken: another executor
	// dispatching the same call gets the same child, which does not run again.
	ex2, _ := e.newExecutor()
	h2, err := ex2.Start(ctx(t), s)
	if err != nil || h2.Ref != ev.Ref || e.srv.Executions("c-keep") != 1 {
		t.Fatalf("start on another executor: %+v %v, %d executions", h2, err, e.srv.Executions("c-keep"))
	}

	// Release purges (the allocation stays readable, fixture 25).
	if err := e.ex.Release(ctx(t), []executor.Handle{{CallID: "c-keep", Ref: ev.Ref}}); err != nil {
		t.Fatal(err)
	}
	if e.srv.Job(ev.Ref) != nil {
		t.Fatal("child not purged by Release")
	}
	kids, err := e.ex.ChildrenOf(ctx(t), f)
	if err != nil || len(kids) != 0 {
		t.Fatalf("children left: %v %v", kids, err)
	}
	// A second Release, and one of an unknown call, are no-ops.
	if err := e.ex.Release(ctx(t), []executor.Handle{{CallID: "c-keep", Ref: ev.Ref}, {CallID: "c-unknown"}}); err != nil {
		t.Fatal(err)
	}
}

func TestReleaseWithoutRef(t *testing.T) {
	e := newEnv(t)
	f := fn("noref", "echo", "x")
	ev := e.run(f, spec("c-noref", f, ""))
	if e.srv.Job(ev.Ref) == nil {
		t.Fatal("child purged before Release")
	}
	// The Ref was never recorded: the executor knows the child it reported.
	if err := e.ex.Release(ctx(t), []executor.Handle{{CallID: "c-noref"}}); err != nil {
		t.Fatal(err)
	}
	if e.srv.Job(ev.Ref) != nil {
		t.Fatal("child not purged")
	}
}

func TestReleaseRetriesWhileNomadUnavailable(t *testing.T) {
	e := newEnv(t)
	f := fn("flaky", "echo", "y")
	ev := e.run(f, spec("c-flaky-rel", f, ""))
	e.srv.FailNext("/v1/job/", 2)
	if err := e.ex.Release(ctx(t), []executor.Handle{{CallID: "c-flaky-rel", Ref: ev.Ref}}); err != nil {
		t.Fatal(err)
	}
	if e.srv.Job(ev.Ref) != nil {
		t.Fatal("child not purged")
	}
}

// The leader dies after the executor reported a call's end and before the
// record: the next leader's executor collects the same result again from
// the dead child, with or without the Ref, and nothing runs twice.
func TestLeaderDiedBetweenReportAndRecord(t *testing.T) {
	e := newEnv(t)
	f := fn("bin", "cat")
	in := binaryStdin()
	s := spec("c-bin", f, string(in))
	ev := e.run(f, s)
	if ev.Kind != executor.Finished || !bytes.Equal(ev.Stdout, in) {
		t.Fatalf("first collection: %v %q", ev.Kind, ev.Stdout)
	}
	// Executor A is closed without Release.
	_ = e.ex.Close()
	if e.srv.Job(ev.Ref) == nil {
		t.Fatal("child purged without Release")
	}

	exB, colB := e.newExecutor()
	evs, err := exB.Reconcile(ctx(t), []executor.Handle{{CallID: "c-bin", Ref: ev.Ref}, {CallID: "c-bin"}})
	if err != nil || len(evs) != 2 {
		t.Fatalf("reconcile: %+v %v", evs, err)
	}
	for i, got := range evs {
		if got.Kind != executor.Finished || got.Ref != ev.Ref || got.ExitCode != 0 || !bytes.Equal(got.Stdout, in) {
			t.Fatalf("reconcile[%d]: %v ref %q stdout %q", i, got.Kind, got.Ref, got.Stdout)
		}
	}
	// Reconcile answers; it does not also report on Events.
	e.marker(exB, colB)
	if n := colB.finals("c-bin"); n != 0 {
		t.Fatalf("%d final events on B", n)
	}
	if n := e.srv.Executions("c-bin"); n != 1 {
		t.Fatalf("executed %d times", n)
	}
	// B records, then releases.
	if err := exB.Release(ctx(t), []executor.Handle{{CallID: "c-bin", Ref: ev.Ref}}); err != nil {
		t.Fatal(err)
	}
	if e.srv.Job(ev.Ref) != nil {
		t.Fatal("child not purged")
	}
}

// A call that ends while no executor watches it (its leader died before
// collecting) is collected by Reconcile from the dead, unpurged child.
func TestReconcileDeadChildNobodyCollected(t *testing.T) {
	e := newEnv(t)
	f := fn("late", "sh", "-c", "echo out; echo err >&2; exit 4")
	e.register(f)
	h, err := ex1Start(e, f, "c-late")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, hang, "dead child", func() bool {
		j := e.srv.Job(h.Ref)
		return j != nil && *j.Status == "dead"
	})
	evs, err := e.ex.Reconcile(ctx(t), []executor.Handle{{CallID: "c-late"}})
	if err != nil || len(evs) != 1 {
		t.Fatalf("%+v %v", evs, err)
	}
	got := evs[0]
	if got.Kind != executor.Failed || got.ExitCode != 4 || string(got.Stdout) != "out\n" || got.Stderr != "err\n" || got.Ref != h.Ref {
		t.Fatalf("%+v", got)
	}
	if e.srv.Job(h.Ref) == nil {
		t.Fatal("Reconcile purged the child")
	}
}

func TestCleanOrphans(t *testing.T) {
	e := newEnv(t)
	f := fn("orph", "cat")
	g := fn("orph2", "echo", "z")
	// Two finished calls whose leader died between record and Release...
	gone := e.run(f, spec("c-gone", f, "a\n"))
	kept := e.run(f, spec("c-kept", f, "b\n"))
	other := e.run(g, spec("c-other", g, ""))
	// ...and one running.
	e.srv.Hold()
	run, err := e.ex.Start(ctx(t), spec("c-running", f, "c\n"))
	if err != nil {
		t.Fatal(err)
	}
	_ = e.ex.Close()

	ex2, _ := e.newExecutor()
	var mu sync.Mutex
	var asked []string
	n, err := ex2.CleanOrphans(ctx(t), func(id string) bool {
		mu.Lock()
		asked = append(asked, id)
		mu.Unlock()
		return id == "c-kept"
	})
	if err != nil || n != 2 {
		t.Fatalf("clean orphans: %d, %v", n, err)
	}
	if e.srv.Job(gone.Ref) != nil || e.srv.Job(other.Ref) != nil {
		t.Fatal("dead children of unkept calls left")
	}
	if e.srv.Job(kept.Ref) == nil {
		t.Fatal("child of a kept call purged")
	}
	if e.srv.Job(run.Ref) == nil {
		t.Fatal("running child purged")
	}
	slices.Sort(asked)
	if !slices.Equal(asked, []string{"c-gone", "c-kept", "c-other"}) {
		t.Fatalf("keep asked about %v (only dead children)", asked)
	}
	for _, id := range []string{"hf-alice-orph", "hf-alice-orph-big", "hf-alice-orph2", "hf-alice-orph2-big"} {
		if e.srv.Job(id) == nil {
			t.Fatalf("parameterized job %s purged", id)
		}
	}
	if n, err := ex2.CleanOrphans(ctx(t), func(string) bool { return false }); err != nil || n != 1 {
		// c-kept's child is dead and now unkept: it goes; the running one stays.
		t.Fatalf("second sweep: %d, %v", n, err)
	}
	if e.srv.Job(run.Ref) == nil {
		t.Fatal("running child purged")
	}
	// The running call still runs to its end for whoever reconciles it.
	evs, err := ex2.Reconcile(ctx(t), []executor.Handle{run})
	if err != nil || evs[0].Kind != executor.Running {
		t.Fatalf("%+v %v", evs, err)
	}
}

func TestCleanOrphansNomadDown(t *testing.T) {
	e := newEnv(t)
	e.srv.SetDown(true)
	n, err := e.ex.CleanOrphans(ctx(t), func(string) bool { return false })
	if err == nil || n != 0 {
		t.Fatalf("%d %v", n, err)
	}
}

// A call whose end was recorded from elsewhere while this executor still
// watches it: Release drops it from the watch list and purges its child;
// nothing is reported after that.
func TestReleaseOfWatchedCall(t *testing.T) {
	e := newEnv(t)
	f := fn("watched", "sleep", "600")
	e.register(f)
	h, err := e.ex.Start(ctx(t), spec("c-watched", f, ""))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, hang, "running", func() bool { return len(e.col.events("c-watched")) > 0 })
	if err := e.ex.Release(ctx(t), []executor.Handle{h}); err != nil {
		t.Fatal(err)
	}
	if e.srv.Job(h.Ref) != nil {
		t.Fatal("child not purged")
	}
	e.srv.DropEventStreams() // the reconnect re-checks every watched call
	e.marker(e.ex, e.col)
	if n := e.col.finals("c-watched"); n != 0 {
		t.Fatalf("%d final events after Release", n)
	}
}
