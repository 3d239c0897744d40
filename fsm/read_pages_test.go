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
