package nomadjob_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
	"github.com/hyperfunc/hyperfunc/nomadjob/nomadtest"
)

// The warm path on the real agent: the warm job validates and runs, a
// sandbox boots and waits, the claim's variable reaches the task through
// its template and SIGUSR1, the call runs once in it and is collected from
// alloc/data; a function update drains the old version's pool and no call
// runs on the old image; a sandbox stopped before its call is replaced.
func TestRealNomadWarm(t *testing.T) {
	cluster := "cluster-warm-" + fmt.Sprint(time.Now().UnixNano())
	r := newRealEnv(t, nomadtest.ShimVolume(), cluster)
	f := executor.Function{
		ID: "real/warm", Owner: "real", Name: "warm", Image: realImage(),
		Command: []string{"sh", "-c", "echo v1 $HYPER_CALL_ID; cat; echo err >&2"}, CPU: 100, MemoryMB: 48,
	}
	r.validate(r.ex.WarmJob(f))
	if err := r.ex.Register(ctx(t), f); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.ex.SetWarm(nil); _ = r.ex.Deregister(context.Background(), f) })
	r.ex.SetWarm([]executor.WarmTarget{{Function: f, N: 2}})
	waitFor(t, 3*time.Minute, "two warm sandboxes", func() bool { return r.ex.Warm().Ready[f.ID] == 2 })

	for i := range 3 {
		s := spec(fmt.Sprintf("warm-%d-%s", i, cluster), f, "in")
		ev := r.run(f, s)
		if ev.Kind != executor.Finished || string(ev.Stdout) != "v1 "+s.CallID+"\nin" || !strings.Contains(ev.Ref, "-warm/dispatch-") || ev.Stderr != "err\n" {
			t.Fatalf("warm call %d: %+v %q", i, ev, ev.Stdout)
		}
		if err := r.ex.Release(ctx(t), []executor.Handle{{CallID: s.CallID, Ref: ev.Ref}}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 3*time.Minute, "the pool refilled", func() bool { return r.ex.Warm().Ready[f.ID] == 2 })
	}
	if st := r.ex.Warm(); st.Hits != 3 || st.Misses != 0 {
		t.Fatalf("warm stats %+v, want 3 hits", st)
	}

	// An update: the next call runs the new command, never the old one.
	f2 := f
	f2.Command = []string{"sh", "-c", "echo v2"}
	if err := r.ex.Register(ctx(t), f2); err != nil {
		t.Fatal(err)
	}
	s := spec("warm-update-"+cluster, f2, "")
	if ev := r.run(f2, s); ev.Kind != executor.Finished || string(ev.Stdout) != "v2\n" {
		t.Fatalf("call after the update: %+v %q", ev, ev.Stdout)
	}
	r.ex.SetWarm([]executor.WarmTarget{{Function: f2, N: 1}})
	waitFor(t, 3*time.Minute, "a sandbox of the new version", func() bool { return r.ex.Warm().Ready[f.ID] == 1 })
	s = spec("warm-v2-"+cluster, f2, "")
	if ev := r.run(f2, s); ev.Kind != executor.Finished || string(ev.Stdout) != "v2\n" || !strings.Contains(ev.Ref, "-warm/") {
		t.Fatalf("warm call of the new version: %+v %q", ev, ev.Stdout)
	}
	_ = nomadjob.WarmSuffix
}
