package fsm

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// TestStagedStdin: a stdin staged in chunks is taken by its enqueue, whole
// and in order; a chunk out of order is refused; a call whose chunks are
// missing or short is refused, and its chunks go whatever happens.
func TestStagedStdin(t *testing.T) {
	h := newHarness(t)
	f := h.fn("alice", "f")
	stage := func(key string, off int, data string) any {
		// Both encodings apply alike: JSON (entries of older versions) and
		// binary.
		mt := PayloadStageBinType
		if off == 0 {
			mt = PayloadStageType
		}
		return h.apply(mt, &PayloadStageRequest{Key: key, Offset: int64(off), Data: []byte(data), Time: t0})
	}
	if err := stage("c1", 0, "hello "); err != nil {
		t.Fatal(err)
	}
	if err, _ := stage("c1", 3, "x").(error); !errors.Is(err, ErrConflict) {
		t.Fatalf("a chunk that does not follow: %v", err)
	}
	stage("c1", 6, "world")
	stage("c2", 0, "shor")
	res := h.mustApply(CallEnqueueType, &CallEnqueueRequest{Calls: []*Call{
		{ID: "c1", Function: f.ID, Owner: "alice", StdinSize: 11, CreatedAt: t0},
		{ID: "c2", Function: f.ID, Owner: "alice", StdinSize: 5, CreatedAt: t0}, // one byte short
		{ID: "c3", Function: f.ID, Owner: "alice", StdinSize: 1, CreatedAt: t0}, // none staged
	}}).(*EnqueueResult)
	if res.Errors[0] != nil || !errors.Is(res.Errors[1], ErrNotFound) || !errors.Is(res.Errors[2], ErrNotFound) {
		t.Fatalf("enqueue: %v", res.Errors)
	}
	st := h.f.Store()
	if b, _ := st.Stdin("c1"); string(b) != "hello world" || h.call("c1").StdinSize != 11 {
		t.Fatalf("staged stdin: %q", b)
	}
	if u, _ := st.OwnerUsage("alice"); u.StdinBytes != 11 {
		t.Fatalf("queued bytes %d, want the staged stdin's 11", u.StdinBytes)
	}
	for _, k := range []string{"c1", "c2"} {
		if n, _ := st.StagedBytes(k); n != 0 {
			t.Fatalf("%s: %d bytes still staged after the enqueue", k, n)
		}
	}
}

// TestStagedStdout: a finish takes its staged stdout; one whose chunks
// were dropped fails the call instead of keeping a part.
func TestStagedStdout(t *testing.T) {
	h := newHarness(t)
	f := h.fn("alice", "f")
	h.enqueue(f.ID, "alice", "c1", "c2")
	h.mustApply(CallStartType, &CallStartRequest{IDs: []string{"c1", "c2"}, Time: t0})
	big := bytes.Repeat([]byte("o"), 100)
	h.mustApply(PayloadStageType, &PayloadStageRequest{Key: StagedStdout("c1"), Data: big[:60], Time: t0})
	h.mustApply(PayloadStageType, &PayloadStageRequest{Key: StagedStdout("c1"), Offset: 60, Data: big[60:], Time: t0})
	h.mustApply(PayloadStageType, &PayloadStageRequest{Key: StagedStdout("c2"), Data: big[:10], Time: t0})
	// The leader drops chunks older than its bound: c2's are.
	h.mustApply(PayloadDropType, &PayloadDropRequest{Before: t0.Add(time.Nanosecond)})
	h.mustApply(PayloadStageType, &PayloadStageRequest{Key: StagedStdout("c1"), Data: big, Time: t0.Add(time.Hour)})
	h.mustApply(CallFinishType, &CallFinishRequest{Results: []*CallResult{
		{ID: "c1", State: StateFinished, StdoutSize: 100, Time: t0},
		{ID: "c2", State: StateFinished, StdoutSize: 10, Time: t0},
	}})
	if o, _ := h.f.Store().Output(nil, "c1"); o == nil || !bytes.Equal(o.Data, big) {
		t.Fatalf("c1 output %v", o)
	}
	if c := h.call("c2"); c.State != StateFailed || c.Message == "" {
		t.Fatalf("c2 with its chunks dropped: %s %q", c.State, c.Message)
	}
}
