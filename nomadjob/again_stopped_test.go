package nomadjob_test

import (
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
	// The check Start spawns must have read the child still pending (it
	// would dispatch the call again itself, before the Cancel, otherwise).
	front, reads := allocReadsFront(t, e.srv.URL, nil)
	// The watching executor does not hear of the failure (its stream
	// lags) until the Recheck below.
	ex1, col1, f, h := failFirstDownload(e, g, front.URL, reads, fn("stopped", "sleep", "600"), "c-stopped")
	id := h.CallID

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
