package server

import (
	"testing"

	"github.com/hyperfunc/hyperfunc/fsm"
)

// TestFillBatch: an enqueue entry carries up to fsm.MaxEntryPayload bytes
// of calls (at the bound all fit; one byte past, the last request heads
// the next batch, in order); a call larger than the bound goes alone.
func TestFillBatch(t *testing.T) {
	// n is what the request costs (entryCost): its stdin and 128 bytes.
	req := func(n int) *enqueueReq { return &enqueueReq{call: &fsm.Call{Stdin: make([]byte, max(n-128, 0))}} }
	const half = fsm.MaxEntryPayload / 2
	for _, tc := range []struct {
		name  string
		sizes []int
		batch int // requests in the first batch
		held  bool
	}{
		{"at the bound", []int{half, half}, 2, false},
		{"one byte past", []int{half, half + 1, 1}, 1, true},
		{"larger than the bound, alone", []int{fsm.MaxEntryPayload + 1, 0}, 1, true},
		{"many small calls", []int{128, 128, 128}, 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := make(chan *enqueueReq, len(tc.sizes))
			rs := make([]*enqueueReq, len(tc.sizes))
			for i, n := range tc.sizes {
				rs[i] = req(n)
				if i > 0 {
					ch <- rs[i]
				}
			}
			batch, held := fillBatch(rs[0], ch)
			if len(batch) != tc.batch || (held != nil) != tc.held {
				t.Fatalf("batch of %d, held %v; want %d, %v", len(batch), held != nil, tc.batch, tc.held)
			}
			if held != nil && held != rs[tc.batch] {
				t.Fatal("the held request is not the next in order")
			}
		})
	}
	// The environment (request headers) counts too: one byte of it past
	// the bound holds the call back.
	ch := make(chan *enqueueReq, 1)
	next := &enqueueReq{call: &fsm.Call{Env: map[string]string{"H": ""}}}
	ch <- next
	if batch, held := fillBatch(req(fsm.MaxEntryPayload-128), ch); len(batch) != 1 || held != next {
		t.Fatalf("a header past the bound: batch of %d, held %v", len(batch), held != nil)
	}
}
