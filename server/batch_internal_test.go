package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
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

// TestForwardError: a forward that never reached the leader queued nothing
// (503, retried); one the leader answered with an error likewise; one that
// reached it and got no answer may have queued its calls (504, not
// retried), and the message says so.
func TestForwardError(t *testing.T) {
	dial := &url.Error{Op: "Post", URL: "http://x", Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}
	answered := &internalStatusError{msg: "POST x: HTTP 503: not the leader"}
	cut := &url.Error{Op: "Post", URL: "http://x", Err: context.DeadlineExceeded}
	for _, tc := range []struct {
		err  error
		want int
	}{{dial, 503}, {answered, 503}, {cut, 504}, {io.ErrUnexpectedEOF, 504}} {
		got := forwardError("x", tc.err)
		if statusOf(got) != tc.want {
			t.Errorf("%v: %d (%v), want %d", tc.err, statusOf(got), got, tc.want)
		}
		if tc.want == 504 && !strings.Contains(got.Error(), "may be queued") {
			t.Errorf("%v: the message does not say the call may be queued: %v", tc.err, got)
		}
	}
}
