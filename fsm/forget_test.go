package fsm

import (
	"fmt"
	"testing"
)

// TestEndedCallsAreForgottenWithTheirCaches: a busy function's state stays
// bounded. A call whose output rotated out but whose final log event is
// still there answers "rotated" (410); once both are gone its record goes.
func TestEndedCallsAreForgottenWithTheirCaches(t *testing.T) {
	f, err := New(Config{OutputCacheBytes: 5 * 1024, LogCacheBytes: 12 * 1024}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, f: f}
	h.fn("alice", "f")
	out := make([]byte, 1000)
	for i := 0; i < 200; i++ {
		id := fmt.Sprintf("c%03d", i)
		h.enqueue("alice/f", "alice", id)
		h.mustApply(CallStartType, &CallStartRequest{IDs: []string{id}, Time: t0})
		h.mustApply(CallFinishType, &CallFinishRequest{Results: []*CallResult{{ID: id, State: StateFinished, Stdout: out, Time: t0}}})
	}
	calls, _ := f.Store().CallsOfFunction(nil, "alice/f")
	if len(calls) == 0 || len(calls) > 60 {
		t.Fatalf("%d call records kept for 200 calls; want a bounded few", len(calls))
	}
	if c, _ := f.Store().Call(nil, "c000"); c != nil {
		t.Fatal("the oldest call is still known after its output and log rotated out")
	}
	var rotated, withOutput int
	for _, c := range calls {
		o, _ := f.Store().Output(nil, c.ID)
		switch {
		case c.Rotated && o == nil:
			rotated++
		case !c.Rotated && o != nil:
			withOutput++
		default:
			t.Fatalf("call %s: rotated=%v output=%v", c.ID, c.Rotated, o != nil)
		}
	}
	if rotated == 0 || withOutput == 0 {
		t.Fatalf("want both rotated-but-known calls (410) and calls with output: %d, %d", rotated, withOutput)
	}
	if c, _ := f.Store().Call(nil, "c199"); c == nil || c.Rotated {
		t.Fatal("the newest call must be there with its output")
	}
	// The counters still count every call ever made.
	if st, _ := f.Store().FunctionStats(nil, "alice/f"); st.Finished != 200 {
		t.Fatalf("stats: %+v", st)
	}
}
