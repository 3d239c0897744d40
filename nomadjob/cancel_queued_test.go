package nomadjob_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
)

// TestCancelOfQueuedCallReadError: a user cancels a call
// whose child waits queued in Nomad (no node has room: no allocation).
// Cancel stops the child, then (new in this change) reads its allocations
// to sweep later tries; that one read fails (a leader election, "No
// cluster leader"). Cancel returns the error without reporting, and the
// dispatcher does not retry a failed Cancel. Before the change, Cancel
// reported canceled right after the stop. Now the child is stopped and
// never gets an allocation, and the watch (check: no allocation, the job
// still there) never reports: the call stays RUNNING forever (until a
// leader failover), its quota slot taken.
func TestCancelOfQueuedCallReadError(t *testing.T) {
	e := newEnv(t)
	// After the child's stop, the next read of its allocations fails once.
	hook, failed := failAllocationsReadAfterStop(false)
	front := interpose(t, e.srv.URL, hook)
	cfg := e.config()
	cfg.Address = front.URL
	ex, col := e.startExecutor(cfg)
	f := fn("queued", "sleep", "600")
	if err := ex.Register(ctx(t), f); err != nil {
		t.Fatal(err)
	}
	e.srv.Unplaced(true) // the cluster is full: the child waits queued
	const id = "c-queued-cancel"
	h, err := ex.Start(ctx(t), spec(id, f, ""))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the Start's first check is done
	cerr := ex.Cancel(context.Background(), h)
	if !failed.Load() {
		t.Fatal("no read of the allocations failed after the stop")
	}
	// The dispatcher logs a failed Cancel and does not call it again. A
	// re-check (the watch's safety net) comes by.
	ex.Recheck()
	deadline := time.Now().Add(hang)
	for time.Now().Before(deadline) && col.finals(id) == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	if j := e.srv.Job(h.Ref); j == nil || j.Stop == nil || !*j.Stop {
		t.Fatalf("child not stopped: %+v", j)
	}
	if n := col.finals(id); n != 1 {
		t.Fatalf("Cancel returned %v; the child is stopped (it will never run) and %d final events were reported, want 1 (canceled): the call stays RUNNING", cerr, n)
	}
	if ev := col.final(t, id); ev.Kind != executor.Failed || ev.Reason != api.ReasonCancelled {
		t.Fatalf("final = %+v, want canceled", ev)
	}
}

// failAllocationsReadAfterStop is an interpose hook: once a job is stopped
// (DELETE; onlyChildren: a dispatched child's), the next read of a job's
// allocations answers 500 "No cluster leader", once; failed tells whether
// it did.
func failAllocationsReadAfterStop(onlyChildren bool) (hook func(http.ResponseWriter, *http.Request) bool, failed *atomic.Bool) {
	var stopped atomic.Bool
	failed = new(atomic.Bool)
	return func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/v1/job/") &&
			(!onlyChildren || strings.Contains(r.URL.Path, "dispatch")) {
			stopped.Store(true)
		}
		if stopped.Load() && r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/job/") &&
			strings.HasSuffix(r.URL.Path, "/allocations") && failed.CompareAndSwap(false, true) {
			http.Error(w, "rpc error: No cluster leader", http.StatusInternalServerError)
			return true
		}
		return false
	}, failed
}
