package bench

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hyperfunc/hyperfunc/cachestore"
	"github.com/hyperfunc/hyperfunc/fsm"
)

// The snapshot benchmarks hold a million queued calls, spread over 100
// functions of 100 owners (10,000 each): a function's log cache (50 MiB)
// then holds all its CALL and PENDING events, so the figures include them.
const (
	millionCalls  = 1_000_000
	snapFunctions = 100
	applyBatch    = 1000
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// fsmHarness applies commands at increasing Raft indexes, as Raft would.
type fsmHarness struct {
	f     *fsm.FSM
	index uint64
}

func newFSMHarness(tb testing.TB) *fsmHarness {
	tb.Helper()
	// A temporary dir of the store's own: millionQueued keeps one harness
	// across benchmarks, past the first one's TempDir.
	f, err := fsm.New(fsm.DefaultConfig(), "")
	if err != nil {
		tb.Fatal(err)
	}
	return &fsmHarness{f: f}
}

func (h *fsmHarness) apply(tb testing.TB, t fsm.MessageType, req any) any {
	tb.Helper()
	buf, err := fsm.Encode(t, req)
	if err != nil {
		tb.Fatal(err)
	}
	h.index++
	res := h.f.Apply(&raft.Log{Index: h.index, Term: 1, Type: raft.LogCommand, Data: buf})
	if err, ok := res.(error); ok {
		tb.Fatalf("%s: %v", t, err)
	}
	return res
}

func snapFunctionID(i int) (id, owner string) {
	owner = fmt.Sprintf("user%03d", i)
	return fsm.FunctionID(owner, "fn"), owner
}

// fill creates the functions and enqueues n calls round-robin over them in
// batches, as the server's enqueuer would, each with stdin of stdinSize.
func (h *fsmHarness) fill(tb testing.TB, n, stdinSize int) []string {
	tb.Helper()
	for i := 0; i < snapFunctions; i++ {
		id, owner := snapFunctionID(i)
		h.apply(tb, fsm.FunctionUpsertType, &fsm.FunctionUpsertRequest{Create: true, Function: &fsm.Function{
			ID: id, Owner: owner, Name: "fn", Image: "ubuntu", Command: []string{"cat"},
			SecretHash: fmt.Sprintf("%064d", i), CreatedAt: t0, UpdatedAt: t0,
		}})
	}
	stdin := make([]byte, stdinSize)
	for i := range stdin {
		stdin[i] = 'a' + byte(i%26)
	}
	ids := make([]string, 0, n)
	for done := 0; done < n; {
		req := &fsm.CallEnqueueRequest{}
		for j := 0; j < applyBatch && done < n; j++ {
			fnID, owner := snapFunctionID(done % snapFunctions)
			id := fmt.Sprintf("%08x-0000-4000-8000-%012x", done, done)
			c := &fsm.Call{
				ID: id, Function: fnID, Owner: owner,
				Env: map[string]string{"HTTP_CONTENT_TYPE": "application/octet-stream"},
				Key: fmt.Sprintf("%032x", done), CreatedAt: t0.Add(time.Duration(done) * time.Millisecond),
			}
			if stdinSize > 0 {
				c.Stdin = stdin
			}
			req.Calls = append(req.Calls, c)
			ids = append(ids, id)
			done++
		}
		res := h.apply(tb, fsm.CallEnqueueType, req).(*fsm.EnqueueResult)
		for _, err := range res.Errors {
			if err != nil {
				tb.Fatal(err)
			}
		}
	}
	return ids
}

// finishAll takes calls through start, running and finish with empty
// stdout, as the dispatcher would.
func (h *fsmHarness) finishAll(tb testing.TB, ids []string) {
	tb.Helper()
	for len(ids) > 0 {
		n := min(len(ids), applyBatch)
		batch := ids[:n]
		ids = ids[n:]
		h.apply(tb, fsm.CallStartType, &fsm.CallStartRequest{IDs: batch, Time: t0})
		run := &fsm.CallRunningRequest{}
		fin := &fsm.CallFinishRequest{}
		for _, id := range batch {
			run.Running = append(run.Running, fsm.CallRunning{ID: id, Ref: "c-" + id[:8], Time: t0})
			fin.Results = append(fin.Results, &fsm.CallResult{ID: id, State: fsm.StateFinished, Time: t0})
		}
		h.apply(tb, fsm.CallRunningType, run)
		h.apply(tb, fsm.CallFinishType, fin)
	}
}

func heapAlloc() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// fileSink is a raft.SnapshotSink on a plain file.
type fileSink struct {
	*bufio.Writer
	f *os.File
}

func newFileSink(tb testing.TB, path string) *fileSink {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	return &fileSink{Writer: bufio.NewWriterSize(f, 1<<20), f: f}
}

func (s *fileSink) ID() string    { return "bench" }
func (s *fileSink) Cancel() error { return s.f.Close() }
func (s *fileSink) Close() error {
	if err := s.Flush(); err != nil {
		return err
	}
	if err := s.f.Sync(); err != nil {
		return err
	}
	return s.f.Close()
}

var million struct {
	once     sync.Once
	h        *fsmHarness
	perCall  float64
	buildDur time.Duration
}

// millionQueued builds (once per process) an FSM holding a million queued
// calls with 32 bytes of stdin each, and measures the heap they take.
func millionQueued(b *testing.B) *fsmHarness {
	b.Helper()
	million.once.Do(func() {
		before := heapAlloc()
		start := time.Now()
		h := newFSMHarness(b)
		h.fill(b, millionCalls, 32)
		million.buildDur = time.Since(start)
		million.perCall = float64(heapAlloc()-before) / millionCalls
		million.h = h
	})
	if million.h == nil {
		b.Fatal("building the million-call state failed earlier")
	}
	return million.h
}

// BenchmarkSnapshot1M measures Persist of a snapshot of a million queued
// calls to a file and Restore of that file into a fresh FSM; each
// operation is one whole snapshot or restore. Run with -benchtime 1x.
func BenchmarkSnapshot1M(b *testing.B) {
	path := filepath.Join(b.TempDir(), "snap")
	b.Run("persist", func(b *testing.B) {
		h := millionQueued(b)
		for b.Loop() {
			snap, err := h.f.Snapshot()
			if err != nil {
				b.Fatal(err)
			}
			if err := snap.Persist(newFileSink(b, path)); err != nil {
				b.Fatal(err)
			}
			snap.Release()
		}
		b.StopTimer()
		st, err := os.Stat(path)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(st.Size())/(1<<20), "snapshot-MiB")
		b.ReportMetric(million.buildDur.Seconds(), "build-s")
	})
	b.Run("restore", func(b *testing.B) {
		millionQueued(b)
		if _, err := os.Stat(path); err != nil {
			b.Skip("persist did not run")
		}
		for b.Loop() {
			f, err := fsm.New(fsm.DefaultConfig(), b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			rc, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			if err := f.Restore(rc); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if c, err := f.Store().Call(nil, fmt.Sprintf("%08x-0000-4000-8000-%012x", millionCalls-1, millionCalls-1)); err != nil || c == nil {
				b.Fatalf("restored state lacks the last call: %v", err)
			}
			b.StartTimer()
		}
	})
}

// BenchmarkMemoryPerCall reports the live heap per stored call record
// (everything the call adds: its row and indexes, its log events, its
// counters), measured as HeapAlloc after GC before and after filling.
//
//   - queued-1M: a million PENDING calls with 32 bytes of stdin (the
//     state BenchmarkSnapshot1M persists).
//   - queued-no-logs: 100,000 such calls without their log events.
//   - finished: 100,000 calls taken to FINISHED with empty stdout; stdin,
//     env and key are dropped, an (empty) output row is kept.
func BenchmarkMemoryPerCall(b *testing.B) {
	b.Run("queued-1M", func(b *testing.B) {
		millionQueued(b)
		for b.Loop() {
		}
		b.ReportMetric(million.perCall, "B/call")
	})
	b.Run("queued-no-logs", func(b *testing.B) {
		// The same queued calls with the log cache capped at one byte, so
		// every log event rotates out at once: the difference to queued-1M
		// is what the CALL and PENDING events of a call cost.
		const n = 100_000
		var perCall float64
		for b.Loop() {
			before := heapAlloc()
			f, err := fsm.New(fsm.Config{OutputCacheBytes: cachestore.DefaultCap, LogCacheBytes: 1}, b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			h := &fsmHarness{f: f}
			h.fill(b, n, 32)
			perCall = float64(heapAlloc()-before) / n
			runtime.KeepAlive(h)
		}
		b.ReportMetric(perCall, "B/call")
	})
	b.Run("finished", func(b *testing.B) {
		const n = 100_000
		var perCall float64
		for b.Loop() {
			before := heapAlloc()
			h := newFSMHarness(b)
			ids := h.fill(b, n, 32)
			h.finishAll(b, ids)
			perCall = float64(heapAlloc()-before) / n
			runtime.KeepAlive(h)
		}
		b.ReportMetric(perCall, "B/call")
	})
}
