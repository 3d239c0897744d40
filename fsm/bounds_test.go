package fsm

import (
	"bytes"
	"errors"
	"testing"
)

func usage(h *harness, owner string) OwnerUsage {
	u, err := h.f.Store().OwnerUsage(owner)
	if err != nil {
		h.t.Fatal(err)
	}
	return u
}

// The stdin a user's unfinished calls hold is bounded in bytes: a call
// that reaches the bound exactly is queued, one byte more is ErrQueueFull,
// and the bytes come back as calls end (and through the binary entry and
// a snapshot the same).
func TestApplyQueuedBytesBound(t *testing.T) {
	for _, mt := range []MessageType{CallEnqueueType, CallEnqueueBinType} {
		t.Run(mt.String(), func(t *testing.T) {
			h := newHarness(t)
			h.fn("alice", "f")
			enq := func(id string, n int) error {
				res := h.mustApply(mt, &CallEnqueueRequest{MaxQueuedBytes: 100, Calls: []*Call{
					{ID: id, Function: "alice/f", Owner: "alice", Stdin: bytes.Repeat([]byte("x"), n), CreatedAt: t0},
				}}).(*EnqueueResult)
				return res.Errors[0]
			}
			if err := enq("a", 60); err != nil {
				t.Fatal(err)
			}
			if err := enq("b", 41); !errors.Is(err, ErrQueueFull) {
				t.Fatalf("60+41 bytes past a bound of 100: %v, want ErrQueueFull", err)
			}
			if err := enq("c", 40); err != nil {
				t.Fatalf("60+40 bytes at a bound of 100: %v", err)
			}
			if u := usage(h, "alice"); u.StdinBytes != 100 || u.Pending != 2 {
				t.Fatalf("usage %+v", u)
			}
			if u, _ := roundTrip(t, h.f).Store().OwnerUsage("alice"); u.StdinBytes != 100 {
				t.Fatalf("usage after restore %+v", u)
			}
			h.mustApply(CallStartType, &CallStartRequest{IDs: []string{"a"}, Time: t0})
			h.mustApply(CallFinishType, &CallFinishRequest{Results: []*CallResult{{ID: "a", State: StateFinished, Time: t0}}})
			if u := usage(h, "alice"); u.StdinBytes != 40 {
				t.Fatalf("usage after a's end %+v", u)
			}
			if err := enq("d", 60); err != nil {
				t.Fatalf("after a's end: %v", err)
			}
			h.mustApply(FunctionDeleteType, &FunctionDeleteRequest{ID: "alice/f", Time: t0})
			if u := usage(h, "alice"); u.StdinBytes != 0 || u.Pending != 0 {
				t.Fatalf("usage after the function's delete %+v", u)
			}
		})
	}
}

// A user's functions are bounded in number: the last one allowed is
// created, the next is ErrLimit, an update is never refused, and another
// user is not affected.
func TestApplyFunctionsPerOwner(t *testing.T) {
	h := newHarness(t)
	create := func(owner, name string) error {
		f := &Function{ID: FunctionID(owner, name), Owner: owner, Name: name, Image: "busybox", SecretHash: "h-" + owner + name, CreatedAt: t0}
		res := h.apply(FunctionUpsertType, &FunctionUpsertRequest{Function: f, Create: true, MaxPerOwner: 2})
		err, _ := res.(error)
		return err
	}
	for _, n := range []string{"a", "b"} {
		if err := create("alice", n); err != nil {
			t.Fatal(err)
		}
	}
	if err := create("alice", "c"); !errors.Is(err, ErrLimit) {
		t.Fatalf("third function: %v, want ErrLimit", err)
	}
	if err := create("bob", "a"); err != nil {
		t.Fatalf("bob's first: %v", err)
	}
	f, _ := h.f.Store().Function(nil, "alice/a")
	g := *f
	g.Image = "other"
	h.mustApply(FunctionUpsertType, &FunctionUpsertRequest{Function: &g, MaxPerOwner: 2})
}
