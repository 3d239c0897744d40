package nomadjob_test

import (
	"strings"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
)

// newDelayedExecutor is an executor on e's double whose Release and
// CleanOrphans purge after delay.
func (e *env) newDelayedExecutor(delay time.Duration) (*nomadjob.Executor, *collector) {
	e.t.Helper()
	cfg := e.config()
	cfg.PurgeDelay = delay
	ex, col := e.startExecutor(cfg)
	return ex, col
}

// TestLateDispatchAfterRelease: a leader paused with a call's dispatch in
// flight (SIGSTOP, a long GC pause) was deposed; the next leader found no
// child, queued the call again, ran it to its end and released it. The
// deposed leader, running again, sends its dispatch. Seen in the chaos
// suite under load: Release had purged the child, the token was free, and
// Nomad created a new child: the call ran twice. With a purge delay the
// dead child is still there and answers the late dispatch: one run. The
// delayed purge then comes, child and record.
func TestLateDispatchAfterRelease(t *testing.T) {
	e := newEnv(t)
	leader, col := e.newDelayedExecutor(time.Hour)
	f := fn("late", "cat")
	e.register(f)
	s := spec("c-late", f, "once\n")
	if _, err := leader.Start(ctx(t), s); err != nil {
		t.Fatal(err)
	}
	ev := col.final(t, s.CallID)
	if ev.Kind != executor.Finished || string(ev.Stdout) != "once\n" {
		t.Fatalf("%+v", ev)
	}
	if err := leader.Release(ctx(t), []executor.Handle{{CallID: s.CallID, Ref: ev.Ref}}); err != nil {
		t.Fatal(err)
	}
	if e.srv.Job(ev.Ref) == nil {
		t.Fatal("Release purged the child at once: a late dispatch of the call would run it again")
	}
	deposed, _ := e.newDelayedExecutor(time.Hour)
	h, err := deposed.Start(ctx(t), s)
	if err != nil {
		t.Fatal(err)
	}
	if h.Ref != ev.Ref {
		t.Fatalf("the late dispatch made child %s, want the released %s", h.Ref, ev.Ref)
	}
	if n := e.srv.Executions(s.CallID); n != 1 {
		t.Fatalf("the call ran %d times, want once", n)
	}

	// An executor with a short delay purges a released child and its
	// call's record once the delay is over.
	ex, col2 := e.newDelayedExecutor(50 * time.Millisecond)
	s2 := spec("c-late-2", f, "two\n")
	if _, err := ex.Start(ctx(t), s2); err != nil {
		t.Fatal(err)
	}
	ev2 := col2.final(t, s2.CallID)
	if err := ex.Release(ctx(t), []executor.Handle{{CallID: s2.CallID, Ref: ev2.Ref}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, hang, "the released child and its record purged after the delay", func() bool {
		return e.srv.Job(ev2.Ref) == nil && len(e.srv.Variable(nomadjob.CallVariablePath("", s2.CallID))) == 0
	})
}

// TestCleanOrphansDelayed: CleanOrphans queues the dead child of an ended
// call for the same delay instead of purging it at once.
func TestCleanOrphansDelayed(t *testing.T) {
	e := newEnv(t)
	ex, col := e.newDelayedExecutor(time.Hour)
	f := fn("orph", "cat")
	e.register(f)
	s := spec("c-orph", f, "x")
	if _, err := ex.Start(ctx(t), s); err != nil {
		t.Fatal(err)
	}
	ev := col.final(t, s.CallID)
	// A new leader's executor: the call ended (keep says no).
	next, _ := e.newDelayedExecutor(time.Hour)
	n, err := next.CleanOrphans(ctx(t), func(string) bool { return false })
	if err != nil || n != 1 {
		t.Fatalf("CleanOrphans = %d, %v; want 1 queued", n, err)
	}
	if e.srv.Job(ev.Ref) == nil {
		t.Fatal("CleanOrphans purged the child at once")
	}
}

// TestPurgeDelayNegativeRefused: a negative delay is a clear error at New;
// 0 (at once) and a positive one start.
func TestPurgeDelayNegativeRefused(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.PurgeDelay = -time.Second
	if _, err := nomadjob.New(cfg); err == nil || !strings.Contains(err.Error(), "-nomad-purge-delay") {
		t.Fatalf("New with a negative purge delay: %v", err)
	}
	for _, d := range []time.Duration{0, time.Nanosecond} {
		cfg.PurgeDelay = d
		e.startExecutor(cfg)
	}
}
