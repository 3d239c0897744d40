package fsm

import (
	"bytes"
	"io"
	"testing"

	"github.com/hashicorp/raft"
)

// TestCrashBetweenHalves: a server that dies after an apply committed its
// disk half and before memdb's restarts from its snapshot and the log
// after it, as Raft restarts it, and ends equal to a replica that never
// crashed: the disk file it left is not trusted (NewStore removes it), so
// the half-applied entry cannot count twice or not at all.
func TestCrashBetweenHalves(t *testing.T) {
	ref := newHarness(t)
	var log []*raft.Log
	apply := func(mt MessageType, req any) {
		t.Helper()
		b, err := Encode(mt, req)
		if err != nil {
			t.Fatal(err)
		}
		log = append(log, &raft.Log{Index: uint64(len(log) + 1), Type: raft.LogCommand, Data: b})
		if res, ok := ref.f.Apply(log[len(log)-1]).(error); ok {
			t.Fatal(res)
		}
	}
	f := &Function{ID: "alice/f", Owner: "alice", Name: "f", Image: "busybox", SecretHash: "s", CreatedAt: t0, UpdatedAt: t0}
	apply(FunctionUpsertType, &FunctionUpsertRequest{Function: f, Create: true})
	round := func(ids ...string) {
		var calls []*Call
		var results []*CallResult
		for _, id := range ids {
			calls = append(calls, &Call{ID: id, Function: f.ID, Owner: "alice", Stdin: []byte("in-" + id), CreatedAt: t0})
			results = append(results, &CallResult{ID: id, State: StateFinished, Stdout: bytes.Repeat([]byte(id), 1000), Time: t0})
		}
		apply(CallEnqueueType, &CallEnqueueRequest{Calls: calls})
		apply(CallStartType, &CallStartRequest{IDs: ids[:1], Time: t0})
		apply(CallFinishType, &CallFinishRequest{Results: results[:1]})
	}
	round("a1", "a2")
	// The snapshot Raft would restart from.
	snap, err := ref.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	snapIndex := len(log)
	round("b1", "b2")
	round("c1", "c2")

	// The server that crashes: it applies everything up to the last entry
	// (a finish: outputs and log events on disk), and dies between the
	// halves of that one.
	dir := t.TempDir()
	crashed, err := New(DefaultConfig(), dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range log[:len(log)-1] {
		crashed.Apply(l)
	}
	type crash struct{}
	crashed.store.betweenCommits = func() { panic(crash{}) }
	func() {
		defer func() {
			if _, ok := recover().(crash); !ok {
				t.Fatal("the apply did not reach the point between its commits")
			}
		}()
		crashed.Apply(log[len(log)-1])
	}()
	if o, _ := crashed.Store().Output(nil, "c1"); o == nil {
		t.Fatal("the crash did not leave the last entry's disk half written")
	}
	if c, _ := crashed.Store().Call(nil, "c1"); c == nil {
		t.Fatal("the call is in neither half")
	}
	// The process is gone; its file stays. Raft starts a new FSM on the
	// same dir, restores the snapshot and replays the log after it.
	restarted, err := New(DefaultConfig(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { restarted.Store().Close() })
	if err := restarted.Restore(io.NopCloser(&sink.Buffer)); err != nil {
		t.Fatal(err)
	}
	for _, l := range log[snapIndex:] {
		if res, ok := restarted.Apply(l).(error); ok {
			t.Fatal(res)
		}
	}
	want, _ := ref.f.Store().Hash()
	if got, _ := restarted.Store().Hash(); got != want {
		t.Fatal("the restarted replica differs from one that never crashed")
	}
	if o, _ := restarted.Store().Output(nil, "c1"); o == nil || !bytes.Equal(o.Data, bytes.Repeat([]byte("c1"), 1000)) {
		t.Fatal("the output of the entry the crash cut is lost")
	}
	if b, _ := restarted.Store().Stdin("c2"); string(b) != "in-c2" {
		t.Fatalf("a queued call's stdin after the restart: %q", b)
	}
}
