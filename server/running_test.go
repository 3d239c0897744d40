package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/server/servertest"
)

// TestRefusedCallNeverRunning: a call the executor refuses after the
// fact (Start answers a handle without a Ref, the end comes as an event:
// a missing image on the local executor) never ran, and its log does not
// say RUNNING; a call that ran does, before its end.
func TestRefusedCallNeverRunning(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{})
	createFn(t, c.Client(0), "refused", "refuse-start")
	createFn(t, c.Client(0), "ran", "echo", "hi")
	for range 3 {
		waitState(t, c.Client(0), call(t, c.Client(0), "refused", ""), api.StateFailed)
		waitState(t, c.Client(0), call(t, c.Client(0), "ran", ""), api.StateFinished)
	}
	for name, want := range map[string]int{"refused": 0, "ran": 3} {
		body := string(do(t, http.MethodGet, c.URL(0)+"/v1/functions/"+name+"/logs?format=text", "", nil).want(t, 200).Body)
		if n := strings.Count(body, "[RUNNING]"); n != want {
			t.Fatalf("%s: %d RUNNING events, want %d:\n%s", name, n, want, body)
		}
	}
}
