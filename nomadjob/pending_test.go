package nomadjob_test

import (
	"errors"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
)

// Something said a call's allocation ended while Nomad still has it
// pending (seen on the real agent: the call FAILED "allocation pending:
// Downloading image" and then ran). The collector must not decide an
// outcome from a pending allocation, and the call must still end once,
// with its output, when it really runs.
func TestPendingAllocationIsNotAnOutcome(t *testing.T) {
	e := newEnv(t)
	e.srv.Hold()
	f := fn("echo", "echo", "hi")
	e.register(f)
	s := spec("c-pending", f, "")
	h, err := e.ex.Start(ctx(t), s)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := nomad.NewClient(&nomad.Config{Address: e.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	var allocs []*nomad.AllocationListStub
	waitFor(t, time.Minute, "an allocation for the child", func() bool {
		allocs, _, err = cl.Jobs().Allocations(h.Ref, true, nil)
		return err == nil && len(allocs) == 1
	})
	if st := allocs[0].ClientStatus; st != "pending" {
		t.Fatalf("held allocation is %s, want pending", st)
	}
	_, err = e.ex.CollectAlloc(ctx(t), s.CallID, h.Ref, allocs[0].ID)
	if !errors.Is(err, nomadjob.ErrNotTerminal) {
		t.Fatalf("collect of a pending allocation: %v, want ErrNotTerminal", err)
	}
	e.srv.Release()
	ev := e.col.final(t, s.CallID)
	if ev.Kind != executor.Finished || string(ev.Stdout) != "hi\n" || e.col.finals(s.CallID) != 1 {
		t.Fatalf("after release: %v %q %s (%d final events)", ev.Kind, ev.Stdout, ev.Message, e.col.finals(s.CallID))
	}
}
