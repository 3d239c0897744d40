package server

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/hyperfunc/hyperfunc/fsm"
)

func TestFirstBytes(t *testing.T) {
	r := func(n int) *fsm.CallResult { return &fsm.CallResult{Stdout: bytes.Repeat([]byte("x"), n)} }
	for _, tc := range []struct {
		sizes []int
		max   int
		want  int
	}{
		{[]int{1, 2, 3}, 6, 3},                   // all fit exactly: at the bound
		{[]int{1, 2, 4}, 6, 2},                   // one byte past: the last waits
		{[]int{10, 1}, 6, 1},                     // a result larger than the bound goes alone
		{[]int{0, 0, 0}, 0, 3},                   // empty outputs cost nothing
		{[]int{512 << 10, 1}, maxFinishBytes, 1}, // a full entry; the next result waits
	} {
		var rs []*fsm.CallResult
		for _, n := range tc.sizes {
			rs = append(rs, r(n))
		}
		if got := len(firstBytes(rs, tc.max)); got != tc.want {
			t.Errorf("firstBytes(%v, %d) = %d results, want %d", tc.sizes, tc.max, got, tc.want)
		}
	}
}

func TestSafeMessage(t *testing.T) {
	in := "exit code 4: \x1b]0;pwn\x07\x1b[31mRED\x1b[0m\x01\x7f end\xff \u00e9t\u00e9\ttab"
	got := safeMessage(in)
	if got != "exit code 4: ?]0;pwn??[31mRED?[0m?? end? \u00e9t\u00e9\ttab" {
		t.Fatalf("safeMessage = %q", got)
	}
}

// A follower forwards the headers a function may see, not the client's
// credentials.
func TestCallHeaders(t *testing.T) {
	h := http.Header{"Authorization": {"Bearer secret"}, "X-Hyper-Token": {"t"}, "Cookie": {"c"}, "X-Ok": {"1"}, "Content-Type": {"text/plain"}}
	got := callHeaders(h)
	if len(got) != 2 || got.Get("X-Ok") != "1" || got.Get("Content-Type") != "text/plain" {
		t.Fatalf("callHeaders = %v", got)
	}
}
