package nomadjob

import (
	"testing"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/shim"
)

// A task Nomad stopped (its command got a signal the shim forwarded) is
// lost, not a failure of the function; a command that dies of a signal it
// raised itself is the function's exit.
func TestOutcomeExternalSignal(t *testing.T) {
	a := &nomad.Allocation{ClientStatus: "failed"}
	ev := Outcome(a, &shim.Result{ExitCode: 143, Signal: "SIGTERM", ExternalSignal: "SIGTERM"}, nil, 1<<20)
	if ev.Reason != api.ReasonLost {
		t.Fatalf("stopped from outside: %+v", ev)
	}
	ev = Outcome(a, &shim.Result{ExitCode: 143, Signal: "SIGTERM"}, nil, 1<<20)
	if ev.Reason != api.ReasonExit {
		t.Fatalf("killed itself: %+v", ev)
	}
}
