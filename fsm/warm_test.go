package fsm

import "testing"

// Function.Warm is bounded: MaxWarm is kept, one more is refused, and the
// record keeps what was applied.
func TestApplyFunctionWarmBound(t *testing.T) {
	h := newHarness(t)
	f := h.fn("alice", "hello")
	g := *f
	g.Warm = MaxWarm
	h.mustApply(FunctionUpsertType, &FunctionUpsertRequest{Function: &g})
	if got, _ := h.f.Store().Function(nil, f.ID); got.Warm != MaxWarm {
		t.Fatalf("warm %d after an update to %d", got.Warm, MaxWarm)
	}
	for _, bad := range []int{MaxWarm + 1, -1} {
		g.Warm = bad
		h.wantErr(ErrLimit, FunctionUpsertType, &FunctionUpsertRequest{Function: &g})
	}
	if got, _ := h.f.Store().Function(nil, f.ID); got.Warm != MaxWarm {
		t.Fatalf("warm %d after refused updates, want %d", got.Warm, MaxWarm)
	}
}
