package bench

import (
	"fmt"
	"path/filepath"
	"testing"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/hyperfunc/hyperfunc/cachestore"
	"github.com/hyperfunc/hyperfunc/fsm"
)

// BenchmarkCacheRotation measures one output insert into a function's
// output cache that is full (50 MiB), so that each insert rotates the
// oldest output out, in its own write transaction as Apply runs it.
//
//   - cachestore/size=S: cachestore.PutOutput alone, outputs of S bytes
//     (50 MiB holds 50 MiB/S of them).
//   - fsm/size=S: a whole CallFinish entry of one call through FSM.Apply:
//     decode, state change, output insert with rotation, the rotated
//     call's record marked, the FINISHED log event.
func BenchmarkCacheRotation(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("cachestore/size=%s", sizeName(size)), func(b *testing.B) {
			benchPutOutput(b, size)
		})
	}
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("fsm/size=%s", sizeName(size)), func(b *testing.B) {
			benchFinishRotating(b, size)
		})
	}
}

func sizeName(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}

func benchPutOutput(b *testing.B, size int) {
	db, err := memdb.NewMemDB(&memdb.DBSchema{Tables: cachestore.Tables()})
	if err != nil {
		b.Fatal(err)
	}
	disk, err := cachestore.Open(filepath.Join(b.TempDir(), "caches.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer disk.Close()
	const fn = "user/fn"
	data := make([]byte, size)
	limit := cachestore.DefaultCap
	full := int(min(limit/int64(size), cachestore.MaxEntries))
	seq := uint64(0)
	put := func() []string {
		txn := cachestore.NewTxn(db, disk)
		defer txn.Abort()
		seq++
		rotated, err := cachestore.PutOutput(txn, &cachestore.Output{
			CallID: fmt.Sprintf("call-%012d", seq), Function: fn, Seq: seq, Data: data,
		}, limit)
		if err != nil {
			b.Fatal(err)
		}
		if err := txn.Commit(); err != nil {
			b.Fatal(err)
		}
		return rotated
	}
	for i := 0; i < full; i++ {
		if r := put(); len(r) != 0 {
			b.Fatalf("rotated while filling, at %d of %d", i, full)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		if r := put(); len(r) != 1 {
			b.Fatalf("rotated %d outputs, want 1", len(r))
		}
	}
	b.ReportMetric(float64(full), "outputs-cached")
}

func benchFinishRotating(b *testing.B, size int) {
	h := newFSMHarness(b)
	const owner = "user000"
	fnID := fsm.FunctionID(owner, "fn")
	h.apply(b, fsm.FunctionUpsertType, &fsm.FunctionUpsertRequest{Create: true, Function: &fsm.Function{
		ID: fnID, Owner: owner, Name: "fn", Image: "ubuntu", SecretHash: "s", CreatedAt: t0, UpdatedAt: t0,
	}})
	stdout := make([]byte, size)
	full := int(min(cachestore.DefaultCap/int64(size), cachestore.MaxEntries))
	n := 0
	// started enqueues and starts k calls and returns their IDs, ready to
	// finish.
	started := func(k int) []string {
		req := &fsm.CallEnqueueRequest{}
		ids := make([]string, k)
		for i := range ids {
			n++
			ids[i] = fmt.Sprintf("call-%012d", n)
			req.Calls = append(req.Calls, &fsm.Call{ID: ids[i], Function: fnID, Owner: owner, CreatedAt: t0})
		}
		h.apply(b, fsm.CallEnqueueType, req)
		h.apply(b, fsm.CallStartType, &fsm.CallStartRequest{IDs: ids, Time: t0})
		return ids
	}
	finish := func(id string) {
		h.apply(b, fsm.CallFinishType, &fsm.CallFinishRequest{Results: []*fsm.CallResult{{
			ID: id, State: fsm.StateFinished, Stdout: stdout, Time: t0,
		}}})
	}
	for left := full; left > 0; {
		ids := started(min(left, 4096))
		for _, id := range ids {
			finish(id)
		}
		left -= len(ids)
	}
	u, err := h.f.Store().CacheUsage(cachestore.KindOutput, fnID)
	if err != nil || u.Count != int64(full) {
		b.Fatalf("cache holds %d outputs (%v), want %d", u.Count, err, full)
	}
	// The calls to finish are queued and started outside the timer, in
	// chunks, so the timed part is exactly one CallFinish entry per op.
	var ready []string
	b.ResetTimer()
	for b.Loop() {
		if len(ready) == 0 {
			b.StopTimer()
			ready = started(min(fsm.MaxBatch, 4096))
			b.StartTimer()
		}
		finish(ready[0])
		ready = ready[1:]
	}
	b.StopTimer()
	c, err := h.f.Store().Call(nil, fmt.Sprintf("call-%012d", 1))
	// Rotated out: marked (410), or forgotten once its final log event
	// rotated out too.
	if err != nil || (c != nil && !c.Rotated) {
		b.Fatalf("the oldest call is not marked rotated: %+v %v", c, err)
	}
}
