package fsm

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

var t0 = time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)

type harness struct {
	t     *testing.T
	f     *FSM
	index uint64
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	f, err := New(DefaultConfig(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Store().Close() })
	return &harness{t: t, f: f}
}

// apply encodes and applies one command at the next index.
func (h *harness) apply(mt MessageType, req any) any {
	h.t.Helper()
	b, err := Encode(mt, req)
	if err != nil {
		h.t.Fatal(err)
	}
	h.index++
	return h.f.Apply(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: b})
}

func (h *harness) mustApply(mt MessageType, req any) any {
	h.t.Helper()
	res := h.apply(mt, req)
	if err, ok := res.(error); ok {
		h.t.Fatalf("%s: %v", mt, err)
	}
	return res
}

func (h *harness) wantErr(target error, mt MessageType, req any) {
	h.t.Helper()
	res := h.apply(mt, req)
	err, ok := res.(error)
	if !ok || !errors.Is(err, target) {
		h.t.Fatalf("%s: got %v, want %v", mt, res, target)
	}
}

func (h *harness) fn(owner, name string) *Function {
	h.t.Helper()
	f := &Function{ID: FunctionID(owner, name), Owner: owner, Name: name, Image: "busybox",
		Command: []string{"echo", "hi"}, SecretHash: "h-" + owner + "-" + name, CreatedAt: t0, UpdatedAt: t0}
	h.mustApply(FunctionUpsertType, &FunctionUpsertRequest{Function: f, Create: true})
	return f
}

func (h *harness) enqueue(fnID, owner string, ids ...string) {
	h.t.Helper()
	var calls []*Call
	for _, id := range ids {
		calls = append(calls, &Call{ID: id, Function: fnID, Owner: owner, Stdin: []byte("in-" + id), CreatedAt: t0})
	}
	res := h.mustApply(CallEnqueueType, &CallEnqueueRequest{Calls: calls}).(*EnqueueResult)
	for i, err := range res.Errors {
		if err != nil {
			h.t.Fatalf("enqueue %s: %v", ids[i], err)
		}
	}
}

func (h *harness) call(id string) *Call {
	h.t.Helper()
	c, err := h.f.Store().Call(nil, id)
	if err != nil || c == nil {
		h.t.Fatalf("call %s: %v %v", id, c, err)
	}
	return c
}
