package nomadjob_test

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
)

// TestAgainStoppedBeforeNextTry: a call's first child fails at its shim
// download, and a Cancel stops it before the watching executor got to
// dispatch the call again (here the Cancel of another executor; in one
// executor, a collect racing its own Cancel, seen once in nomadjob under
// load). The watching executor's collect then finds a stopped child that
// failed at its download and no later try: the call was canceled, not
// failed by the download, and it is not dispatched again.
func TestAgainStoppedBeforeNextTry(t *testing.T) {
	e := newEnv(t)
	g := newGatedShim(t, e.fe.URL)
	// reads counts the watching executor's answered reads of allocations:
	// the check Start spawns must have read the child still pending (it
	// would dispatch the call again itself, before the Cancel, otherwise).
	u, err := url.Parse(e.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.FlushInterval = -1
	var reads atomic.Int64
	front := interpose(t, e.srv.URL, func(w http.ResponseWriter, r *http.Request) bool {
		proxy.ServeHTTP(w, r)
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/allocations") {
			reads.Add(1)
		}
		return true
	})
	cfg := e.config()
	cfg.Address = front.URL
	cfg.ArtifactBaseURL = g.srv.URL
	ex1, col1 := e.startExecutor(cfg)
	f := fn("stopped", "sleep", "600")
	if err := ex1.Register(ctx(t), f); err != nil {
		t.Fatal(err)
	}
	const id = "c-stopped"
	h, err := ex1.Start(ctx(t), spec(id, f, ""))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, hang, "the check Start spawns read the child", func() bool { return reads.Load() > 0 })
	// The watching executor does not hear of the failure (its stream
	// lags) until the Recheck below.
	e.srv.SilenceEvents(true)
	g.release()
	waitFor(t, hang, "the first child failed at its download", func() bool { return e.srv.AllocStatus(h.Ref) == "failed" })

	ex2, col2 := e.newExecutor()
	if err := ex2.Cancel(ctx(t), h); err != nil {
		t.Fatal(err)
	}
	if ev := col2.final(t, id); ev.Kind != executor.Failed || ev.Reason != api.ReasonCancelled {
		t.Fatalf("the canceling executor reports %+v, want canceled", ev)
	}
	ex1.Recheck()
	ev := col1.final(t, id)
	if ev.Kind != executor.Failed || ev.Reason != api.ReasonCancelled {
		t.Fatalf("the watching executor reports %+v, want canceled", ev)
	}
	if got := e.childByToken(f, id, id+"~2"); got != "" {
		t.Errorf("the canceled call was dispatched again as %s", got)
	}
	if n := e.srv.Executions(id); n != 0 {
		t.Errorf("the command ran %d times, want 0", n)
	}
}
