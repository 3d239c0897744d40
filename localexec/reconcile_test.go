package localexec_test

import (
	"bytes"
	"context"
	"testing"
	"time"

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
	s := spec(t, cli, img, "sh", "-c", "sleep 2; cat /testdata/bytes.bin")
	h := crash(t, s)
	ev := reconcileOne(t, e, h)
	if ev.Kind != executor.Running || ev.Ref != h.Ref {
		t.Fatalf("got %+v", ev)
	}
	ev = final(t, e, s.CallID)
	if ev.Kind != executor.Finished || !bytes.Equal(ev.Stdout, testimages.BytesContent()) {
		t.Fatalf("%v %s: %d bytes", ev.Kind, ev.Message, len(ev.Stdout))
	}
	removed(t, cli, s.CallID)
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
	removed(t, cli, s.CallID)
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
