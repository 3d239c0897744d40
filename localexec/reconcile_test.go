package localexec_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/hyperfunc/hyperfunc/localexec"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/internal/testimages"
)

// crash starts s on a first executor and closes it, which leaves the
// container as a crashed agent would: running, with no watcher.
func crash(t *testing.T, s executor.Spec) executor.Handle {
	t.Helper()
	cli := dockerClient(t)
	old := newExec(t, cli)
	h := start(t, old, s)
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	return h
}

func reconcileOne(t *testing.T, e interface {
	Reconcile(context.Context, []executor.Handle) ([]executor.Event, error)
}, h executor.Handle) executor.Event {
	t.Helper()
	evs, err := e.Reconcile(context.Background(), []executor.Handle{h})
	if err != nil || len(evs) != 1 {
		t.Fatalf("reconcile: %v %v", evs, err)
	}
	return evs[0]
}

func TestReconcileRunning(t *testing.T) {
	t.Parallel()
	e, cli, img := setup(t)
	// Long enough to still run at the reconcile on a busy machine: with
	// sleep 2, an engine slow to start, close and inspect could see the
	// call exited, not running.
	s := spec(t, cli, img, "sh", "-c", "sleep 20; cat /testdata/bytes.bin")
	h := crash(t, s)
	ev := reconcileOne(t, e, h)
	if ev.Kind != executor.Running || ev.Ref != h.Ref {
		t.Fatalf("got %+v", ev)
	}
	ev = final(t, e, s.CallID)
	if ev.Kind != executor.Finished || !bytes.Equal(ev.Stdout, testimages.BytesContent()) {
		t.Fatalf("%v %s: %d bytes", ev.Kind, ev.Message, len(ev.Stdout))
	}
	release(t, e, cli, executor.Handle{CallID: s.CallID})
}

func TestReconcileExited(t *testing.T) {
	t.Parallel()
	e, cli, img := setup(t)
	s := spec(t, cli, img, "sh", "-c", "sleep 1; cat /testdata/bytes.bin; echo bad >&2; exit 4")
	h := crash(t, s)
	eventually(t, time.Minute, "container exited", func() bool {
		ins, err := cli.ContainerInspect(context.Background(), h.Ref)
		return err == nil && ins.State.Status == "exited"
	})
	ev := reconcileOne(t, e, h)
	wantFailed(t, ev, api.ReasonExit, "exit code 4: bad")
	if !bytes.Equal(ev.Stdout, testimages.BytesContent()) || ev.Stderr != "bad\n" {
		t.Fatalf("stdout %d bytes (binary-safe: %v), stderr %q",
			len(ev.Stdout), bytes.Equal(ev.Stdout, testimages.BytesContent()), ev.Stderr)
	}
	release(t, e, cli, executor.Handle{CallID: s.CallID})
}

func TestReconcileUnknown(t *testing.T) {
	t.Parallel()
	e, _, _ := setup(t)
	id := newCallID(t)
	if ev := reconcileOne(t, e, executor.Handle{CallID: id}); ev.Kind != executor.NotFound {
		t.Fatalf("no ref: %+v", ev)
	}
	ev := reconcileOne(t, e, executor.Handle{CallID: id, Ref: "0123456789ab"})
	wantFailed(t, ev, api.ReasonLost, "0123456789ab")
}

func TestCleanOrphans(t *testing.T) {
	t.Parallel()
	e, cli, img := setup(t)
	s := spec(t, cli, img, "sleep", "60")
	crash(t, s)
	n, err := e.CleanOrphans(context.Background(), func(id string) bool { return id != s.CallID })
	if err != nil || n != 1 {
		t.Fatalf("removed %d: %v", n, err)
	}
	removed(t, cli, s.CallID)
}

// TestReconcileCreatedNotStarted (bug 1): a leader created the container
// and died before starting it. The input is on disk, so the next leader's
// Reconcile starts it: the call runs once, with all of its input (a large
// stdin, in its own file, and a small one, inline in the envelope).
func TestReconcileCreatedNotStarted(t *testing.T) {
	t.Parallel()
	for _, size := range []int{1 << 20, 100} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			t.Parallel()
			e, cli, img := setup(t)
			s := spec(t, cli, img, "cat")
			s.Stdin = randomBytes(t, size)
			old := newExec(t, cli)
			localexec.CrashBeforeStart(old, errors.New("leader died"))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if _, err := old.Start(ctx, s); err == nil {
				t.Fatal("start went through the crash")
			}
			old.Close()
			cs := containers(t, cli, s.CallID)
			if len(cs) != 1 || cs[0].State != "created" {
				t.Fatalf("containers after the crash: %+v", cs)
			}
			// The dispatcher never learned the container's ID.
			ev := reconcileOne(t, e, executor.Handle{CallID: s.CallID})
			if ev.Kind != executor.Running || ev.Ref != cs[0].ID {
				t.Fatalf("reconcile: %+v", ev)
			}
			ev = final(t, e, s.CallID)
			if ev.Kind != executor.Finished || !bytes.Equal(ev.Stdout, s.Stdin) {
				t.Fatalf("%v %s: %d bytes of %d", ev.Kind, ev.Message, len(ev.Stdout), len(s.Stdin))
			}
			// A late Start of the same call (a retry, another leader) gets
			// the same container and runs nothing again. (The call was
			// collected from its result: the sandbox may still be going.)
			first, err := cli.ContainerInspect(context.Background(), cs[0].ID)
			if err != nil {
				t.Fatal(err)
			}
			e3 := newExec(t, cli)
			if h := start(t, e3, s); h.Ref != cs[0].ID {
				t.Fatalf("late start: %+v", h)
			}
			if ev := final(t, e3, s.CallID); ev.Kind != executor.Finished || !bytes.Equal(ev.Stdout, s.Stdin) {
				t.Fatalf("late start: %v %s", ev.Kind, ev.Message)
			}
			var ins container.InspectResponse
			eventually(t, time.Minute, "the container exited", func() bool {
				ins, err = cli.ContainerInspect(context.Background(), cs[0].ID)
				return err != nil || !ins.State.Running
			})
			if err != nil || ins.RestartCount != 0 || ins.State.StartedAt != first.State.StartedAt {
				t.Fatalf("container after the late start: %+v (first started %s) %v", ins.State, first.State.StartedAt, err)
			}
			release(t, e, cli, executor.Handle{CallID: s.CallID, Ref: cs[0].ID})
		})
	}
}

// TestResultSurvivesLeaderDeath (bug 3): the executor reported the outcome
// but the leader died before recording it. Nothing was removed, so the next
// leader's Reconcile finds the same result, byte for byte; also when the
// container itself is gone and only the call dir is left.
func TestResultSurvivesLeaderDeath(t *testing.T) {
	t.Parallel()
	e, cli, img := setup(t)
	for _, rmContainer := range []bool{false, true} {
		s := spec(t, cli, img, "sh", "-c", "cat /testdata/bytes.bin; echo warn >&2")
		old := newExec(t, cli)
		h := start(t, old, s)
		ev := final(t, old, s.CallID)
		if ev.Kind != executor.Finished || !bytes.Equal(ev.Stdout, testimages.BytesContent()) {
			t.Fatalf("%v %s: %d bytes", ev.Kind, ev.Message, len(ev.Stdout))
		}
		old.Close() // no Release: the leader died before the record
		if rmContainer {
			if err := cli.ContainerRemove(context.Background(), h.Ref, container.RemoveOptions{Force: true}); err != nil {
				t.Fatal(err)
			}
		}
		again := reconcileOne(t, e, h)
		if again.Kind != executor.Finished || !bytes.Equal(again.Stdout, testimages.BytesContent()) {
			t.Fatalf("container removed %v: reconcile %v %s: %d bytes", rmContainer, again.Kind, again.Message, len(again.Stdout))
		}
		if !rmContainer && again.Stderr != "warn\n" {
			t.Fatalf("stderr %q", again.Stderr)
		}
		release(t, e, cli, h)
	}
}
