package fsm

import (
	"fmt"
	"testing"
)

// A page of a long list costs its own length: the walks go in either
// order over exactly one function's (or one owner's and state's) calls and
// stop when told, so the newest 50 of 100,000 calls are 50 steps.
func TestWalkCallsPages(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 5_000
	}
	h := newHarness(t)
	f, ff := h.fn("a", "f"), h.fn("a", "ff") // "a/f" is a prefix of "a/ff"
	var ids []string
	for start := 0; start < n; start += 1000 {
		var batch []string
		for i := start; i < start+1000 && i < n; i++ {
			batch = append(batch, fmt.Sprintf("c%06d", i))
		}
		ids = append(ids, batch...)
		h.enqueue(f.ID, "a", batch...)
		h.enqueue(ff.ID, "a", "ff-"+batch[0])
	}
	st := h.f.Store()
	walk := func(what string, run func(visit func(*Call) bool) error, limit int) []string {
		t.Helper()
		var got []string
		visits := 0
		err := run(func(c *Call) bool {
			visits++
			got = append(got, c.ID)
			return len(got) < limit
		})
		if err != nil || visits != limit {
			t.Fatalf("%s: %d visits for a page of %d (%v)", what, visits, limit, err)
		}
		return got
	}
	newest := walk("newest of f", func(v func(*Call) bool) error { return st.WalkCallsOfFunction(nil, f.ID, true, v) }, 50)
	for i, id := range newest {
		if want := ids[n-1-i]; id != want {
			t.Fatalf("newest[%d] = %s, want %s", i, id, want)
		}
	}
	oldest := walk("oldest of f", func(v func(*Call) bool) error { return st.WalkCallsOfFunction(nil, f.ID, false, v) }, 3)
	if fmt.Sprint(oldest) != fmt.Sprint(ids[:3]) {
		t.Fatalf("oldest %v, want %v", oldest, ids[:3])
	}
	queued := walk("newest pending of a", func(v func(*Call) bool) error { return st.WalkCallsInState(nil, "a", StatePending, true, v) }, 2)
	if want := []string{"ff-" + ids[(n-1)/1000*1000], ids[n-1]}; fmt.Sprint(queued) != fmt.Sprint(want) {
		t.Fatalf("newest pending %v, want %v", queued, want)
	}
	// The ff calls are not f's: a whole walk of ff sees only them.
	all := 0
	if err := st.WalkCallsOfFunction(nil, ff.ID, false, func(c *Call) bool {
		all++
		if c.Function != ff.ID {
			t.Errorf("walk of %s met a call of %s", ff.ID, c.Function)
		}
		return true
	}); err != nil || all != (n+999)/1000 {
		t.Fatalf("walk of ff: %d calls (%v)", all, err)
	}
	none := 0
	if err := st.WalkCallsInState(nil, "a", StateFailed, true, func(*Call) bool { none++; return true }); err != nil || none != 0 {
		t.Fatalf("failed calls of a: %d (%v)", none, err)
	}
}

// TestWalkMergesEnded: ended calls (disk) and calls in flight (memdb) come
// out of one walk in acceptance order, either way; the failures of an
// owner are merged across its functions, and nobody else's are.
func TestWalkMergesEnded(t *testing.T) {
	h := newHarness(t)
	f, g, o := h.fn("a", "f"), h.fn("a", "g"), h.fn("b", "f")
	for i := 0; i < 6; i++ {
		h.enqueue(f.ID, "a", fmt.Sprintf("f%d", i))
		h.enqueue(g.ID, "a", fmt.Sprintf("g%d", i))
		h.enqueue(o.ID, "b", fmt.Sprintf("o%d", i))
	}
	// f0, f2, f4 and g1 end (f2 and g1 failed, o1 too), the rest wait.
	end := func(id, state string) {
		h.mustApply(CallStartType, &CallStartRequest{IDs: []string{id}, Time: t0})
		h.mustApply(CallFinishType, &CallFinishRequest{Results: []*CallResult{{ID: id, State: state, Stdout: []byte(id), Time: t0}}})
	}
	end("f0", StateFinished)
	end("f2", StateFailed)
	end("f4", StateFinished)
	end("g1", StateFailed)
	end("o1", StateFailed)
	st := h.f.Store()
	ids := func(run func(func(*Call) bool) error, limit int) string {
		var got []string
		if err := run(func(c *Call) bool { got = append(got, c.ID); return len(got) < limit }); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(got)
	}
	if got := ids(func(v func(*Call) bool) error { return st.WalkCallsOfFunction(nil, f.ID, false, v) }, 100); got != "[f0 f1 f2 f3 f4 f5]" {
		t.Fatalf("f oldest first: %s", got)
	}
	if got := ids(func(v func(*Call) bool) error { return st.WalkCallsOfFunction(nil, f.ID, true, v) }, 4); got != "[f5 f4 f3 f2]" {
		t.Fatalf("f newest first, a page of 4: %s", got)
	}
	if got := ids(func(v func(*Call) bool) error { return st.WalkCallsInState(nil, "a", StateFailed, true, v) }, 100); got != "[f2 g1]" {
		t.Fatalf("failures of a: %s", got)
	}
	if got := ids(func(v func(*Call) bool) error { return st.WalkCallsInState(nil, "a", StatePending, false, v) }, 3); got != "[g0 f1 g2]" {
		t.Fatalf("pending of a: %s", got)
	}
}
