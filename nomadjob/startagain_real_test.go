package nomadjob_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
)

// TestRealNomadDispatchedAgain: on the real agent, a call whose shim
// download (or big stdin download) answered 502 is dispatched again (the
// idempotency token "<call>~2" taken by a new child), runs once and ends
// with its output; failing MaxStartAttempts downloads end it FAILED with
// the download's error after that many children, the command never run.
// (Nomad's forced reschedule was tried first and does nothing for a group
// whose reschedule policy is off: this test is where that showed.)
func TestRealNomadDispatchedAgain(t *testing.T) {
	cluster := "cluster-again-" + fmt.Sprint(time.Now().UnixNano())
	r := newRealEnv(t, "", cluster)
	f := executor.Function{
		ID: "real/again", Owner: "real", Name: "again", Image: realImage(),
		Command: []string{"wc", "-c"}, CPU: 100, MemoryMB: 48,
	}
	if err := r.ex.Register(ctx(t), f); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Every child goes with the test (the parent's deregister leaves
		// them), then the function.
		if ids, err := r.ex.ChildrenOf(context.Background(), f); err == nil {
			for _, id := range ids {
				_, _, _ = r.nc.Jobs().Deregister(id, true, nil)
			}
		}
		_ = r.ex.Deregister(context.Background(), f)
	})
	children := func(callID string) []string {
		ids, err := r.ex.ChildrenOf(ctx(t), f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, id := range ids {
			j, _, err := r.nc.Jobs().Info(id, nil)
			if err != nil {
				t.Fatalf("job %s: %v", id, err)
			}
			if j.Meta[nomadjob.MetaCallID] == callID {
				out = append(out, id+" ("+deref(j.DispatchIdempotencyToken)+")")
			}
		}
		return out
	}

	s := spec("shim-"+cluster, f, "four")
	r.fe.FailNext(nomadjob.DefaultShimArtifactPath, 1)
	ev := r.run(f, s)
	if ev.Kind != executor.Finished || string(ev.Stdout) != "4\n" {
		t.Fatalf("shim download failed once: %v %s %s %q", ev.Kind, ev.Reason, ev.Message, ev.Stdout)
	}
	if got := children(s.CallID); len(got) != 2 {
		t.Errorf("shim download failed once: children %v, want 2", got)
	}

	big := spec("big-"+cluster, f, strings.Repeat("x", 20000))
	r.fe.FailNext("/v1/artifacts/stdin/"+big.CallID, 1)
	ev = r.run(f, big)
	if ev.Kind != executor.Finished || string(ev.Stdout) != "20000\n" {
		t.Fatalf("stdin download failed once: %v %s %s %q", ev.Kind, ev.Reason, ev.Message, ev.Stdout)
	}
	if got := children(big.CallID); len(got) != 2 {
		t.Errorf("stdin download failed once: children %v, want 2", got)
	}

	past := spec("past-"+cluster, f, "four")
	r.fe.FailNext(nomadjob.DefaultShimArtifactPath, nomadjob.MaxStartAttempts)
	ev = r.run(f, past)
	if ev.Kind != executor.Failed || ev.Reason != api.ReasonExecutor || !strings.Contains(ev.Message, "Failed Artifact Download") {
		t.Fatalf("shim download failed %d times: %v %s %s", nomadjob.MaxStartAttempts, ev.Kind, ev.Reason, ev.Message)
	}
	if got := children(past.CallID); len(got) != nomadjob.MaxStartAttempts {
		t.Errorf("past the limit: children %v, want %d", got, nomadjob.MaxStartAttempts)
	}
}
