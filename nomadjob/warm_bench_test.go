package nomadjob_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
)

// BenchmarkNomadWarm puts a sync call through the frontend to a function
// with `--warm 2` side by side with a raw dispatch of the same job (as
// BenchmarkNomadLatency dispatches it), interleaved, and reports both p50s
// and their ratio (issue 13's goal: <= 0.3 on a real Nomad). Each warm
// call waits for a ready sandbox first (the raw call between them leaves
// the pool time to refill; hits and misses are reported). Then it splits
// a warm call, on an executor of its own: claim (Start: allocation check
// and the variable's check-and-set write), delivery (the variable to the
// command's start: template render, SIGUSR1, the shim's wake), the
// command, and collection (the command's end to the event: result.json
// polled and read through Nomad's fs endpoints), each with a full pool.
func BenchmarkNomadWarm(b *testing.B) {
	if os.Getenv("NOMAD_ADDR") == "" {
		b.Skip("NOMAD_ADDR is not set: the warm benchmark needs a real Nomad (scripts/nomad-dev.sh start)")
	}
	e := setupBench(b, shimModes()[0])
	two := 2
	if _, err := e.client.Functions().Update(context.Background(), e.fn.Name, &api.FunctionUpdate{Warm: &two}); err != nil {
		b.Fatal(err)
	}
	ready := func(ex *nomadjob.Executor, id string) {
		deadline := time.Now().Add(5 * time.Minute)
		for ex.Warm().Ready[id] < 1 {
			if time.Now().After(deadline) {
				b.Fatalf("no warm sandbox of %s within 5 minutes", id)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	ready(e.exec, e.fn.ID)
	var raw, warm []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := e.rawCall(i); err != nil {
			b.Fatal(err)
		}
		raw = append(raw, time.Since(t0))
		b.StopTimer()
		ready(e.exec, e.fn.ID)
		b.StartTimer()
		t0 = time.Now()
		if err := e.frontendCall(); err != nil {
			b.Fatal(err)
		}
		warm = append(warm, time.Since(t0))
	}
	b.StopTimer()
	r, w := median(raw), median(warm)
	st := e.exec.Warm()
	b.ReportMetric(float64(r.Microseconds())/1000, "raw-p50-ms")
	b.ReportMetric(float64(w.Microseconds())/1000, "warm-p50-ms")
	b.ReportMetric(float64(w)/float64(r), "ratio")
	b.ReportMetric(float64(st.Hits), "hits")
	b.ReportMetric(float64(st.Misses), "misses")

	claim, deliver, command, collect := warmBreakdown(b, e, b.N)
	b.ReportMetric(ms(claim), "claim-p50-ms")
	b.ReportMetric(ms(deliver), "deliver-p50-ms")
	b.ReportMetric(ms(command), "command-p50-ms")
	b.ReportMetric(ms(collect), "collect-p50-ms")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// warmBreakdown runs n warm calls on an executor of its own and returns
// the p50 of each step.
func warmBreakdown(b *testing.B, e *benchEnv, n int) (claim, deliver, command, collect time.Duration) {
	cfg := e.cfg
	cfg.ClusterID = "warm-breakdown"
	ex, err := nomadjob.New(cfg, nomadjob.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		b.Fatal(err)
	}
	defer ex.Close()
	f := executor.Function{ID: "bench/warm", Owner: "bench", Name: "warm", Image: e.image, Command: []string{"echo", "hi"}, CPU: 100, MemoryMB: 64}
	bg := context.Background()
	if err := ex.Register(bg, f); err != nil {
		b.Fatal(err)
	}
	defer func() { ex.SetWarm(nil); _ = ex.Deregister(bg, f) }()
	ex.SetWarm([]executor.WarmTarget{{Function: f, N: 2}})
	var cl, de, co, cs []time.Duration
	for i := 0; i < n; i++ {
		// A full pool: no refill boot in flight competes with the call
		// for the two cores (the interleaved run gets that from the raw
		// call between two warm ones).
		deadline := time.Now().Add(5 * time.Minute)
		for ex.Warm().Ready[f.ID] < 2 {
			if time.Now().After(deadline) {
				b.Fatal("no warm sandbox for the breakdown within 5 minutes")
			}
			time.Sleep(10 * time.Millisecond)
		}
		id := fmt.Sprintf("breakdown-%d", time.Now().UnixNano())
		t0 := time.Now()
		h, err := ex.Start(bg, executor.Spec{CallID: id, Function: f, StdoutLimit: 1 << 20})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		var ev executor.Event
		for ev.Kind != executor.Finished && ev.Kind != executor.Failed {
			select {
			case ev = <-ex.Events():
			case <-time.After(5 * time.Minute):
				b.Fatal("no event within 5 minutes")
			}
		}
		t3 := time.Now()
		if ev.Kind != executor.Finished || string(ev.Stdout) != "hi\n" || !strings.Contains(h.Ref, nomadjob.WarmSuffix+"/") {
			b.Fatalf("breakdown call: %+v", ev)
		}
		cl = append(cl, t1.Sub(t0))
		de = append(de, ev.StartedAt.Sub(t1))
		co = append(co, ev.EndedAt.Sub(ev.StartedAt))
		cs = append(cs, t3.Sub(ev.EndedAt))
		_ = ex.Release(bg, []executor.Handle{h})
	}
	return median(cl), median(de), median(co), median(cs)
}
