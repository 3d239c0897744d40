package nomadjob_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"

	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
)

// TestAgainLastTryGCd: a call's first child failed at its shim
// download; the leader dispatched it again as <call>~2, which ran the
// command to its end. The leader died before the end was recorded. Nomad's
// job GC (or an operator's purge) then takes ~2, dead, while the first
// child (the handle's Ref) is still there. The next leader's Reconcile of
// the handle collects the first child's failed download, finds no later
// try (~2 is gone, its token free again) and dispatches "<call>~2": Nomad
// creates a NEW child and the command runs a second time. A call whose
// only child was taken the same way is reported Lost, never run again.
func TestAgainLastTryGCd(t *testing.T) {
	e := newEnv(t)
	f := fn("gclast", "cat")
	e.register(f)
	e.fe.FailNext(nomadjob.DefaultShimArtifactPath, 1)
	e.srv.HoldEnds()
	defer e.srv.ReleaseEnds()
	const id = "c-gc-last"
	ex1, _ := e.newExecutor()
	h, err := ex1.Start(ctx(t), spec(id, f, "once\n"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, hang, "the call runs in its second child", func() bool {
		return e.srv.Executions(id) == 1 && len(e.childrenOf(f, id)) == 2
	})
	second := e.childByToken(f, id, id+"~2")
	if second == "" {
		t.Fatalf("children %v: no ~2", e.childrenOf(f, id))
	}
	// The leader watches the call in ~2 (its dispatch is done, all of
	// it), then dies before the end is recorded.
	waitFor(t, hang, "the leader watches ~2", func() bool { return ex1.WatchedChild(id) == second })
	_ = ex1.Close()
	e.srv.ReleaseEnds()
	waitFor(t, hang, "the second child ended", func() bool { return e.srv.AllocStatus(second) == "complete" })
	e.srv.GC(second)
	ex2, col2 := e.newExecutor()
	evs, err := ex2.Reconcile(ctx(t), []executor.Handle{h})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("reconcile: %+v", evs)
	if got := e.childrenOf(f, id); len(got) != 1 {
		t.Errorf("Reconcile dispatched the call again after its run in %s: children %v", second, got)
		if len(evs) == 1 && evs[0].Kind == executor.Running {
			ev := col2.final(t, id)
			t.Logf("final: %v %s", ev.Kind, ev.Message)
		}
		waitFor(t, hang, "the new child ran the command", func() bool { return e.srv.Executions(id) >= 2 })
	}
	if n := e.srv.Executions(id); n != 1 {
		t.Errorf("the command ran %d times, want once", n)
	}
}

// heldDispatch is a proxy in front of the double for one executor (the old
// leader): once armed, its next dispatch waits for open.
type heldDispatch struct {
	srv     *httptest.Server
	armed   atomic.Bool
	arrived chan struct{}
	open    chan struct{}
	once    sync.Once
}

func newHeldDispatch(t *testing.T, upstream string) *heldDispatch {
	h := &heldDispatch{arrived: make(chan struct{}, 1), open: make(chan struct{})}
	h.srv = interpose(t, upstream, func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet && strings.HasSuffix(r.URL.Path, "/dispatch") && h.armed.Load() {
			select {
			case h.arrived <- struct{}{}:
			default:
			}
			<-h.open
		}
		return false
	})
	t.Cleanup(h.release) // before the proxy closes
	return h
}

func (h *heldDispatch) release() { h.once.Do(func() { close(h.open) }) }

// TestAgainCancelRacesOldLeaderDispatch: after a failover the old
// leader's executor is still alive (partitioned from Raft, not from
// Nomad). The first child fails at its shim download; the old executor's
// collect reads the first child (not stopped yet) and is about to dispatch
// <call>~2. The new leader's Cancel stops the first child, lists its later
// tries (none yet) and reports the call canceled. Then the old executor's
// dispatch lands: ~2 runs the command to its end although the call was
// reported canceled, and nobody stops it (the old executor watches it and
// reports to nobody; the new one's call is done).
func TestAgainCancelRacesOldLeaderDispatch(t *testing.T) {
	e := newEnv(t)
	g := newGatedShim(t, e.fe.URL)
	held := newHeldDispatch(t, e.srv.URL)
	mk := func(addr string) (*nomadjob.Executor, *collector) {
		cfg := e.config()
		cfg.Address = addr
		cfg.CollectTimeout = time.Minute // a held dispatch stays held
		cfg.ArtifactBaseURL = g.srv.URL
		ex, col := e.startExecutor(cfg)
		return ex, col
	}
	f := fn("oldrace", "sleep", "600")
	ex1, _ := mk(held.srv.URL) // the old leader, alive
	if err := ex1.Register(ctx(t), f); err != nil {
		t.Fatal(err)
	}
	const id = "c-old-race"
	h, err := ex1.Start(ctx(t), spec(id, f, ""))
	if err != nil {
		t.Fatal(err)
	}
	// The new leader: its own dispatch, if its watch gets there first,
	// waits to the end of the test (the old one's is the race here).
	held2 := newHeldDispatch(t, e.srv.URL)
	ex2, col2 := mk(held2.srv.URL)
	evs, err := ex2.Reconcile(ctx(t), []executor.Handle{h})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Kind != executor.Running {
		t.Fatalf("reconcile = %+v, want running", evs)
	}
	// Neither leader hears the failure by the stream; the old one
	// re-checks (its timer), the new one's stream lags.
	e.srv.SilenceEvents(true)
	held.armed.Store(true)
	held2.armed.Store(true)
	g.release()
	waitFor(t, hang, "the first child failed at its download", func() bool { return e.srv.AllocStatus(h.Ref) == "failed" })
	ex1.Recheck()
	select {
	case <-held.arrived:
	case <-time.After(hang):
		t.Fatal("the old leader did not dispatch the call again")
	}
	if err := ex2.Cancel(ctx(t), h); err != nil {
		t.Fatal(err)
	}
	ev := col2.final(t, id)
	if ev.Kind != executor.Failed || ev.Reason != api.ReasonCancelled {
		t.Fatalf("final = %+v, want canceled", ev)
	}
	held.release()
	var second string
	waitFor(t, hang, "the old leader's ~2 exists", func() bool {
		second = e.childByToken(f, id, id+"~2")
		return second != ""
	})
	state := ""
	deadline := time.Now().Add(hang)
	for {
		sj := e.srv.Job(second)
		state = "stop=" + strconv.FormatBool(sj != nil && deref(sj.Stop)) + " alloc=" + e.srv.AllocStatus(second) + " runs=" + strconv.Itoa(e.srv.Executions(id))
		if sj == nil || deref(sj.Stop) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the call was reported canceled but the old leader's %s runs the command (%s)", second, state)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("second child: %s", state)
	if n := col2.finals(id); n != 1 {
		t.Errorf("%d final events, want 1", n)
	}
}

// TestCancelDuringShimDownload: Cancel of a cold call
// whose task is still downloading its shim stops the child; the download
// is cut ("Failed Artifact Download: ... context canceled", the task never
// started). Cancel now reads the child's allocations and lists its later
// tries before it reports; meanwhile the executor's own collect of the cut
// allocation (its job stopped, so dispatchAgain follows no later try)
// reports the call FAILED with the download's error, not canceled. (Seen
// as TestWarmCanceledWhilePlacedAgain failing about one run in three.)
func TestCancelDuringShimDownload(t *testing.T) {
	e := newEnv(t)
	// The shim download hangs until the client gives up.
	arrived := make(chan struct{}, 1)
	shim := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		<-r.Context().Done()
	}))
	t.Cleanup(func() { shim.CloseClientConnections(); shim.Close() })
	// Cancel's read of the child's allocations waits for the call's end
	// (or 10s): the window between Cancel's stop and its report, widened.
	var armed atomic.Bool
	ended := make(chan struct{})
	var endOnce sync.Once
	end := func() { endOnce.Do(func() { close(ended) }) }
	t.Cleanup(end)
	front := interpose(t, e.srv.URL, func(w http.ResponseWriter, r *http.Request) bool {
		if armed.Load() && r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/job/") && strings.HasSuffix(r.URL.Path, "/allocations") {
			select {
			case <-ended:
			case <-time.After(10 * time.Second):
			}
		}
		return false
	})
	cfg := e.config()
	cfg.Address = front.URL
	cfg.ArtifactBaseURL = shim.URL
	ex, col := e.startExecutor(cfg)
	f := fn("dlcancel", "sleep", "600")
	if err := ex.Register(ctx(t), f); err != nil {
		t.Fatal(err)
	}
	const id = "c-dl-cancel"
	h, err := ex.Start(ctx(t), spec(id, f, ""))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-arrived:
	case <-time.After(hang):
		t.Fatal("the shim download did not start")
	}
	armed.Store(true)
	canceled := make(chan error, 1)
	go func() { canceled <- ex.Cancel(context.Background(), h) }()
	ev := col.final(t, id)
	end()
	if err := <-canceled; err != nil {
		t.Fatal(err)
	}
	if ev.Kind != executor.Failed || ev.Reason != api.ReasonCancelled {
		t.Errorf("final = %v %s %q, want canceled", ev.Kind, ev.Reason, ev.Message)
	}
	if n := e.srv.Executions(id); n != 0 {
		t.Errorf("the command ran %d times, want never", n)
	}
	if n := col.finals(id); n != 1 {
		t.Errorf("%d final events, want 1", n)
	}
}
