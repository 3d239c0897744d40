package fsm

import (
	"bytes"
	"io"
	"reflect"
	"testing"

	"github.com/hyperfunc/hyperfunc/cachestore"
)

// heldSum is what TableStdin holds, to compare with the counter.
func heldSum(t *testing.T, s *Store) int64 {
	txn := s.ReadTxn()
	it, err := txn.Get(cachestore.TableStdin, cachestore.IndexID)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for raw := it.Next(); raw != nil; raw = it.Next() {
		n += int64(reflect.ValueOf(raw).Elem().FieldByName("Data").Len())
	}
	return n
}

func TestHeldCounterDrift(t *testing.T) {
	h := newHarness(t)
	f := h.fn("alice", "f")
	g := h.fn("alice", "g")
	big := bytes.Repeat([]byte("b"), 6<<20)
	st := h.f.Store()
	enq := func(fn string, id string, data []byte) {
		h.mustApply(CallEnqueueType, &CallEnqueueRequest{Calls: []*Call{{ID: id, Function: fn, Owner: "alice", Stdin: data, CreatedAt: t0}}})
	}
	// a duplicate ID in one batch
	res := h.mustApply(CallEnqueueType, &CallEnqueueRequest{Calls: []*Call{
		{ID: "d", Function: f.ID, Owner: "alice", Stdin: big, CreatedAt: t0},
		{ID: "d", Function: f.ID, Owner: "alice", Stdin: []byte("other"), CreatedAt: t0},
	}}).(*EnqueueResult)
	if res.Errors[1] == nil {
		t.Fatal("duplicate accepted")
	}
	enq(g.ID, "g1", big)
	enq(g.ID, "g2", big) // spills: 18 MiB > 16
	enq(f.ID, "d", []byte("again"))
	if got := st.HeldStdinBytes(); got != 12<<20 || heldSum(t, st) != got {
		t.Fatalf("held %d, rows %d", got, heldSum(t, st))
	}
	if b, _ := st.Stdin("d"); !bytes.Equal(b, big) {
		t.Fatalf("d: %d bytes", len(b))
	}
	h.mustApply(FunctionDeleteType, &FunctionDeleteRequest{ID: g.ID})
	if got := st.HeldStdinBytes(); got != 6<<20 || heldSum(t, st) != got {
		t.Fatalf("after delete: held %d, rows %d", got, heldSum(t, st))
	}
	// restore in place while held
	snap, _ := h.f.Snapshot()
	var buf bytes.Buffer
	if err := snap.Persist(&bufSink{&buf}); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if err := h.f.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if b, _ := st.Stdin("d"); !bytes.Equal(b, big) {
		t.Fatalf("d after restore: %d bytes", len(b))
	}
	h.mustApply(CallCancelType, &CallCancelRequest{ID: "d", Time: t0})
	if got := st.HeldStdinBytes(); got != 0 || heldSum(t, st) != 0 {
		t.Fatalf("after restore+cancel: held %d rows %d", got, heldSum(t, st))
	}
	if b, _ := st.Stdin("d"); b != nil {
		t.Fatal("stdin after cancel")
	}
	enq(f.ID, "n", big)
	if got := st.HeldStdinBytes(); got != 6<<20 || heldSum(t, st) != got {
		t.Fatalf("new after restore: held %d rows %d", got, heldSum(t, st))
	}
}

type bufSink struct{ *bytes.Buffer }

func (bufSink) ID() string    { return "x" }
func (bufSink) Cancel() error { return nil }
func (bufSink) Close() error  { return nil }

func TestLargeOutputRoundTrip(t *testing.T) {
	h := newHarness(t)
	f := h.fn("alice", "f")
	out := bytes.Repeat([]byte("0123456789abcdeZ"), (20<<20)/16)
	h.mustApply(CallEnqueueType, &CallEnqueueRequest{Calls: []*Call{{ID: "o", Function: f.ID, Owner: "alice", Stdin: []byte("x"), CreatedAt: t0}}})
	h.mustApply(CallStartType, &CallStartRequest{IDs: []string{"o"}, Time: t0})
	h.mustApply(CallFinishType, &CallFinishRequest{Results: []*CallResult{{ID: "o", State: StateFinished, Stdout: out, Time: t0}}})
	o, err := h.f.Store().Output(nil, "o")
	if err != nil || o == nil {
		t.Skipf("output not cached: %v", err)
	}
	g := roundTrip(t, h.f)
	o2, err := g.Store().Output(nil, "o")
	if err != nil || o2 == nil || !bytes.Equal(o2.Data, out) {
		t.Fatalf("output after round trip: %v %v", o2 != nil, err)
	}
}
