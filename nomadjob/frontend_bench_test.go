package nomadjob_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	nomad "github.com/hashicorp/nomad/api"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
	"github.com/hyperfunc/hyperfunc/nomadjob/nomadtest"
	"github.com/hyperfunc/hyperfunc/server"
)

// These benchmarks put the frontend (HTTP, Raft, dispatcher, executor)
// side by side with raw dispatches of the same parameterized job, in one
// run: against a real Nomad when NOMAD_ADDR is set, else against the
// double (where a task takes milliseconds, so the frontend's own cost is
// what the numbers show).

type benchEnv struct {
	nomadAddr string
	client    *api.Client
	nc        *nomad.Client
	fn        executor.Function
	exec      *nomadjob.Executor
}

func buildShim(b *testing.B) []byte {
	out := filepath.Join(b.TempDir(), "hf-shim")
	cmd := exec.Command("go", "build", "-o", out, "github.com/hyperfunc/hyperfunc/cmd/hf-shim")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("building the shim: %v\n%s", err, msg)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		b.Fatal(err)
	}
	return bin
}

func setupBench(b *testing.B) *benchEnv {
	b.Helper()
	addr := os.Getenv("NOMAD_ADDR")
	if addr == "" {
		addr = nomadtest.New(b).URL
		b.Logf("NOMAD_ADDR not set: measuring against the Nomad double")
	}
	archive, sum, err := nomadjob.ShimArchive(buildShim(b))
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	httpAddr := ln.Addr().String()
	ln.Close()
	cfg := nomadjob.ConfigFromEnv()
	cfg.Address = addr
	cfg.ArtifactBaseURL = "http://" + httpAddr
	cfg.ShimSHA256 = sum
	// Quiet: log lines would interleave with the benchmark result lines.
	ex, err := nomadjob.New(cfg, nomadjob.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ex.Close() })
	srv, err := server.New(server.Config{
		DataDir: b.TempDir(), HTTPAddr: httpAddr, RaftAddr: "127.0.0.1:0", ClusterKey: "frontend-bench-cluster-key",
		ShimArchive: archive, Executor: ex, DefaultQuota: 64,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Error, Output: io.Discard}),
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Shutdown(false) })
	client, _ := api.NewClient(&api.Config{Address: httpAddr})
	deadline := time.Now().Add(10 * time.Second)
	for !srv.IsLeader() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	name := fmt.Sprintf("bench%d", time.Now().UnixNano()%100000)
	f, err := client.Functions().Create(context.Background(), &api.FunctionSpec{Name: name, Image: "busybox:1.36", Command: []string{"echo", "hi"}, Size: "s1"})
	if err != nil {
		b.Fatal(err)
	}
	nc, err := nomad.NewClient(cfg.APIConfig())
	if err != nil {
		b.Fatal(err)
	}
	return &benchEnv{nomadAddr: addr, client: client, nc: nc, exec: ex,
		fn: executor.Function{ID: server.DefaultUser + "/" + f.Name, Owner: server.DefaultUser, Name: f.Name}}
}

// rawCall dispatches the function's job directly and reads stdout from the
// allocation as the executor does, without the frontend.
func (e *benchEnv) rawCall(b *testing.B, i int) {
	id := fmt.Sprintf("raw-%d-%d", time.Now().UnixNano(), i)
	env := nomadjob.BuildEnvelope(executor.Spec{CallID: id, Stdin: nil}, 1<<20, true)
	env.Argv = []string{"echo", "hi"}
	payload, err := jsonMarshal(env)
	if err != nil {
		b.Fatal(err)
	}
	jobID := nomadjob.JobID(e.fn)
	resp, _, err := e.nc.Jobs().Dispatch(jobID, map[string]string{"call_id": id}, payload, id, nil)
	if err != nil {
		b.Fatal(err)
	}
	var index uint64
	for {
		allocs, meta, err := e.nc.Jobs().Allocations(resp.DispatchedJobID, false, &nomad.QueryOptions{WaitIndex: index, WaitTime: 10 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		index = meta.LastIndex
		if len(allocs) > 0 && (allocs[0].ClientStatus == "complete" || allocs[0].ClientStatus == "failed") {
			alloc, _, err := e.nc.Allocations().Info(allocs[0].ID, nil)
			if err != nil {
				b.Fatal(err)
			}
			rc, err := e.nc.AllocFS().Cat(alloc, "alloc/data/stdout", nil)
			if err != nil {
				b.Fatal(err)
			}
			out, _ := io.ReadAll(rc)
			rc.Close()
			if strings.TrimSpace(string(out)) != "hi" {
				b.Fatalf("raw call answered %q", out)
			}
			e.nc.Jobs().Deregister(resp.DispatchedJobID, true, nil)
			return
		}
	}
}

func (e *benchEnv) frontendCall(b *testing.B) {
	body, _, err := e.client.Calls().CallSync(context.Background(), e.fn.Name, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	out, _ := io.ReadAll(body)
	body.Close()
	if strings.TrimSpace(string(out)) != "hi" {
		b.Fatalf("frontend call answered %q", out)
	}
}

// BenchmarkNomadLatency alternates raw and frontend calls so both see the
// same Nomad at the same moment, and reports both and their ratio.
func BenchmarkNomadLatency(b *testing.B) {
	e := setupBench(b)
	var raw, front []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		e.rawCall(b, i)
		raw = append(raw, time.Since(t0))
		t0 = time.Now()
		e.frontendCall(b)
		front = append(front, time.Since(t0))
	}
	r, f := median(raw), median(front)
	b.ReportMetric(float64(r.Microseconds())/1000, "raw-p50-ms")
	b.ReportMetric(float64(f.Microseconds())/1000, "frontend-p50-ms")
	b.ReportMetric(float64(f)/float64(r), "ratio")
}

// BenchmarkNomadThroughput runs b.N calls at concurrency 10 raw, then
// through the frontend, and reports calls per second of each.
func BenchmarkNomadThroughput(b *testing.B) {
	e := setupBench(b)
	const conc = 10
	run := func(call func(i int)) float64 {
		var wg sync.WaitGroup
		next := make(chan int)
		t0 := time.Now()
		for w := 0; w < conc; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					call(i)
				}
			}()
		}
		for i := 0; i < b.N; i++ {
			next <- i
		}
		close(next)
		wg.Wait()
		return float64(b.N) / time.Since(t0).Seconds()
	}
	b.ResetTimer()
	rawRate := run(func(i int) { e.rawCall(b, i) })
	frontRate := run(func(int) { e.frontendCall(b) })
	b.ReportMetric(rawRate, "raw-calls/s")
	b.ReportMetric(frontRate, "frontend-calls/s")
	b.ReportMetric(frontRate/rawRate, "ratio")
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
