package nomadjob_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
)

// TestCancelRacesWatchAfterFailedDownload: a cold call's first child
// failed at its shim download and the watch has not collected it yet (no
// event reached it). Cancel stops the child and, before it reports, reads
// the child's allocations for later tries; the watch's collect of the
// child lands in between (a re-check, or the check Reconcile spawns,
// running late on a loaded machine). It found the child stopped with no
// later try and reported the download's failure as the call's end (FAILED,
// reason executor, "Failed Artifact Download ... 502"), so the Cancel's
// own report was dropped: a canceled call ended as a failed download
// (TestAgainCancelRacesOldLeaderDispatch, once in three runs of nomadjob
// beside e2e/nomad on a busy 2-core machine). The download was not the
// call's end (a collect before the stop dispatches the call again); the
// Cancel is: canceled, as Reconcile and the watch's check say of a child
// stopped before it ran.
func TestCancelRacesWatchAfterFailedDownload(t *testing.T) {
	e := newEnv(t)
	g := newGatedShim(t, e.fe.URL)
	// The Cancel's sweep (the first read of the child's allocations after
	// its stop) waits for open. The check Start spawns must have read the
	// child still pending, or it would dispatch the call again before the
	// Cancel.
	var stopped, held atomic.Bool
	arrived := make(chan struct{})
	open := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(open) }) }
	front, reads := allocReadsFront(t, e.srv.URL, func(r *http.Request, allocs bool) {
		switch {
		case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/v1/job/"):
			stopped.Store(true)
		case allocs && stopped.Load() && held.CompareAndSwap(false, true):
			close(arrived)
			<-open
		}
	})
	t.Cleanup(release) // before the proxy closes
	// The watch hears nothing of the failure by the stream.
	ex, col, _, h := failFirstDownload(e, g, front.URL, reads, fn("cdl", "sleep", "600"), "c-cancel-dl")
	id := h.CallID
	cancelled := make(chan error, 1)
	go func() { cancelled <- ex.Cancel(ctx(t), h) }()
	select {
	case <-arrived:
	case err := <-cancelled:
		t.Fatalf("Cancel returned (%v) without reading the child's later tries", err)
	case <-time.After(hang):
		t.Fatal("Cancel did not read the child's later tries after its stop")
	}
	// The watch collects the stopped child while the Cancel waits.
	ex.Recheck()
	ev := col.final(t, id)
	if ev.Kind != executor.Failed || ev.Reason != api.ReasonCancelled {
		t.Errorf("final = %+v, want canceled", ev)
	}
	release()
	if err := <-cancelled; err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if n := col.finals(id); n != 1 {
		t.Errorf("%d final events, want 1", n)
	}
	if n := e.srv.Executions(id); n != 0 {
		t.Errorf("the command ran %d times, want never", n)
	}
}

// allocReadsFront is a reverse proxy before the Nomad at upstream that
// counts the answered reads of allocations (GET .../allocations); before,
// when set, sees each request first and may hold it.
func allocReadsFront(t *testing.T, upstream string, before func(r *http.Request, allocs bool)) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.FlushInterval = -1
	var reads atomic.Int64
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		allocs := r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/allocations")
		if before != nil {
			before(r, allocs)
		}
		proxy.ServeHTTP(w, r)
		if allocs {
			reads.Add(1)
		}
	}))
	t.Cleanup(func() { front.CloseClientConnections(); front.Close() })
	return front, &reads
}

// failFirstDownload starts call id of f on an executor that talks to Nomad
// through front (allocReadsFront's reads) and fetches the shim from g, and
// returns once the call's first child failed at its shim download, which
// the executor has not heard of: its events are silenced after the check
// Start spawns read the child still pending.
func failFirstDownload(e *env, g *gatedShim, front string, reads *atomic.Int64, f executor.Function, id string) (*nomadjob.Executor, *collector, executor.Function, executor.Handle) {
	t := e.t
	t.Helper()
	cfg := e.config()
	cfg.Address = front
	cfg.ArtifactBaseURL = g.srv.URL
	ex, col := e.startExecutor(cfg)
	if err := ex.Register(ctx(t), f); err != nil {
		t.Fatal(err)
	}
	h, err := ex.Start(ctx(t), spec(id, f, ""))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, hang, "the check Start spawns read the child", func() bool { return reads.Load() > 0 })
	e.srv.SilenceEvents(true)
	g.release()
	waitFor(t, hang, "the first child failed at its download", func() bool { return e.srv.AllocStatus(h.Ref) == "failed" })
	return ex, col, f, h
}
